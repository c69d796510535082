"""One node per data dir; a node whose Podman cannot start keeps serving and recovers."""

from __future__ import annotations

import subprocess

import pytest
from node_harness import CLI, running_node, workload_yaml

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
