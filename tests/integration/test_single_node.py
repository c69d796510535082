"""One node per data dir; a node whose Podman cannot start keeps serving and recovers."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from node_harness import CLI, NodeProcess, running_node, wait_for, workload_yaml

pytestmark = [pytest.mark.podman, pytest.mark.usefixtures("busybox_image")]


def test_second_run_on_the_same_data_dir_refuses_and_leaves_the_node_alone() -> None:
    with running_node() as node:
        node.apply(workload_yaml("web"))
        node.wait_phase("web", "Running")
        assert node.proc is not None
        podman_sock = node.data_dir / "podman.sock"
        sock_inode = podman_sock.stat().st_ino

        second = subprocess.run(
            [*CLI, "--data-dir", str(node.data_dir), "run"],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=60,
        )
        assert second.returncode != 0
        assert f"a node is already running in {node.data_dir} (pid {node.proc.pid})" in (
            second.stderr
        )
        assert podman_sock.stat().st_ino == sock_inode  # not deleted and recreated

        assert node.proc.poll() is None
        assert node.status()["podman"]["connected"]
        running = node.wait_phase("web", "Running")
        node.cli("stop", "web", check=True)
        node.wait_phase("web", "Stopped")
        node.cli("start", "web", check=True)
        node.wait_phase("web", "Running", container_id=running["container_id"])


def test_node_whose_podman_cannot_start_keeps_serving_and_recovers() -> None:
    node = NodeProcess()
    flag = node.data_dir / "podman-may-start"
    wrapper = node.data_dir / "podman-wrapper"
    # Fails the way a broken Podman does (exits at once, saying why) until the flag exists.
    wrapper.write_text(
        "#!/bin/sh\n"
        f'[ -e "{flag}" ] || {{ echo "Error: podman is broken (test)" >&2; exit 125; }}\n'
        'exec podman "$@"\n'
    )
    wrapper.chmod(0o755)
    node.extra_config = {**node.extra_config, "podmanBin": str(wrapper)}
    try:
        node.init()
        node.start(wait=False)

        def reports_problem() -> dict[str, object] | None:
            assert node.proc is not None and node.proc.poll() is None, node.log()
            r = node.cli("status", "-o", "json")
            if r.returncode != 0:
                return None
            podman = json.loads(r.stdout)["podman"]
            error = podman["error"] or ""
            return podman if not podman["connected"] and "podman is broken" in error else None

        wait_for(reports_problem, timeout=60, what="status reporting the broken Podman")
        node.apply(workload_yaml("web"))
        node.wait_phase("web", "Unknown")

        flag.touch()
        node.wait_phase("web", "Running", timeout=90)
        assert node.proc is not None and node.proc.poll() is None
        assert node.status()["podman"]["connected"]
    except BaseException:
        sys.stderr.write(f"--- log of node {node.node_id} ---\n{node.log()[-6000:]}\n")
        raise
    finally:
        node.cleanup()


def test_start_after_stop_runs_the_workload_whatever_its_policy_across_a_node_restart() -> None:
    with running_node() as node:
        # A job that completed (exit 0) and one that runs; neither policy would start them.
        node.apply(workload_yaml("job", command=["true"], restart="never"))
        node.apply(workload_yaml("svc", restart="on-failure"))
        done = node.wait_phase("job", "Stopped", exit_code=0)
        node.wait_phase("svc", "Running")
        node.cli("stop", "job", check=True)
        node.cli("stop", "svc", check=True)
        node.wait_phase("job", "Stopped", message="disabled by override")
        node.wait_phase("svc", "Stopped", message="disabled by override")
        # What the node stopped itself is forgotten with the process; the records remember.
        node.stop()
        node.start()
        node.cli("start", "job", check=True)
        node.cli("start", "svc", check=True)
        node.wait_phase("svc", "Running")

        def job_ran_again() -> bool:
            # Events live in memory: any "started" of job is from after the restart.
            events = json.loads(node.cli("events", "-o", "json", check=True).stdout)
            return any(e["workload"] == "job" and e["kind"] == "started" for e in events)

        wait_for(job_ran_again, what="completed job started again")
        node.wait_phase("job", "Stopped", exit_code=0, container_id=done["container_id"])
