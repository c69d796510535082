"""A real node process, real Podman, real SQLite: the single-node contract end to end."""

from __future__ import annotations

import json
import os
import stat
import subprocess

import pytest
from node_harness import NodeProcess, podman, running_node, wait_for, workload_yaml

pytestmark = [pytest.mark.podman, pytest.mark.usefixtures("busybox_image")]


def test_init_creates_private_identity_and_refuses_to_run_twice() -> None:
    node = NodeProcess()
    try:
        node.init()
        key = node.data_dir / "identity.key"
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        again = node.cli("init", "--node-id", node.node_id, "--site", "x")
        assert again.returncode == 1
        assert "refusing to overwrite" in again.stderr
        assert (
            node.cli("init", "--node-id", node.node_id, "--site", "x", "--exist-ok").returncode == 0
        )
        bad = NodeProcess()
        r = bad.cli("init", "--node-id", "Bad_ID", "--site", "x")
        assert r.returncode == 2 and "invalid node id" in r.stderr
        bad.cleanup()
    finally:
        node.cleanup()


def test_commands_say_plainly_when_the_node_is_not_running() -> None:
    node = NodeProcess()
    try:
        node.init()
        for args in (["status"], ["get", "workloads"], ["logs", "x"], ["delete", "workload", "x"]):
            r = node.cli(*args)
            assert r.returncode == 3, args
            assert "the node is not running" in r.stderr
            assert "Traceback" not in r.stderr
        uninit = NodeProcess()
        r = uninit.cli("status")
        assert r.returncode == 1 and "noderuntime init" in r.stderr
        uninit.cleanup()
    finally:
        node.cleanup()


def test_apply_runs_workload_and_reports_it() -> None:
    with running_node() as node:
        sock = node.data_dir / "api.sock"
        assert stat.S_IMODE(sock.stat().st_mode) == 0o600
        spec = (
            "apiVersion: noderuntime/v1\nkind: Workload\n"
            "metadata: {name: web, labels: {tier: edge}}\n"
            "spec:\n"
            "  image: localhost/busybox:1\n"
            '  command: ["sh", "-c", "echo hello $GREETING; exec httpd -f -p 8080"]\n'
            "  env: {GREETING: world}\n"
            "  restartPolicy: always\n"
        )
        out = node.apply(spec)
        assert "workload/web created" in out.stdout
        w = node.wait_phase("web", "Running")
        for key in ("name", "phase", "container_id", "restarts", "health", "spec"):
            assert key in w
        assert w["restarts"] == 0 and w["spec"]["spec"]["env"] == {"GREETING": "world"}
        (c,) = node.containers()
        assert c["Id"].startswith(w["container_id"][:12]) or w["container_id"].startswith(
            c["Id"][:12]
        )
        assert c["Labels"]["io.noderuntime.workload"] == "web"
        assert c["Labels"]["tier"] == "edge"

        logs = wait_for(
            lambda: (
                (r := node.cli("logs", "web")).returncode == 0 and "hello world" in r.stdout and r
            ),
            what="logs",
        )
        assert "hello world" in logs.stdout
        table = node.cli("get", "workloads").stdout
        assert "web" in table and "Running" in table
        st = node.status()
        assert st["node"]["id"] == node.node_id
        assert st["podman"]["connected"] is True
        assert st["workloads"]["phases"]["Running"] == 1
        assert st["store"]["updates"] >= 1

        # Applying the same spec changes nothing, not even the container.
        assert "workload/web unchanged" in node.apply(spec).stdout
        assert node.workloads()["web"]["container_id"] == w["container_id"]


HTTP_PROBE = "  healthCheck: {http: {port: 8080}, interval: 1s, timeout: 1s, retries: 2}\n"
SERVE_INDEX = "mkdir -p /www; echo ok > /www/index.html; exec httpd -f -p 8080 -h /www"


def test_health_probe_results_are_reported_and_an_unhealthy_container_is_restarted() -> None:
    with running_node() as node:
        node.apply(
            workload_yaml(
                "probed",
                command=["sh", "-c", SERVE_INDEX],
                extra=HTTP_PROBE,
            )
        )
        node.wait_phase("probed", "Running", health="healthy")
        d = json.loads(node.cli("describe", "workload", "probed", "-o", "json", check=True).stdout)
        assert d["probes"] and d["probes"][-1]["ok"] is True
        # Break the service inside the container: the probe fails, the node restarts it.
        cid = d["container_id"]
        podman("exec", cid, "rm", "/www/index.html")
        w = wait_for(
            lambda: (w := node.workloads()["probed"])["restarts"] >= 1 and w["health"] and w,
            timeout=60,
            what="restart after unhealthy",
        )
        assert w["restarts"] >= 1
        events = json.loads(node.cli("events", "-o", "json").stdout)
        assert any("unhealthy" in e["message"] for e in events)


def test_bad_spec_names_field_and_line_and_changes_nothing() -> None:
    with running_node() as node:
        node.apply(workload_yaml("keep"))
        # Once its status has settled (the reconciler writes Running): the count is then still.
        node.wait_phase("keep", "Running")
        before = node.status()["store"]["updates"]
        bad = (
            "apiVersion: noderuntime/v1\nkind: Workload\nmetadata: {name: bad}\n"
            "spec:\n  image: localhost/busybox:1\n  ports:\n    - containerPort: 99999\n"
        )
        path = node.data_dir / "bad.yaml"
        path.write_text(bad)
        r = node.cli("apply", "-f", str(path))
        assert r.returncode == 2  # invalid input, nothing changed (docs/json-output.md)
        assert "containerPort" in r.stderr and f"{path}:7" in r.stderr, r.stderr
        assert "bad" not in node.workloads()
        assert node.status()["store"]["updates"] == before


def test_changed_spec_replaces_container_and_delete_removes_it() -> None:
    with running_node() as node:
        node.apply(workload_yaml("app", command=["sleep", "1000"]))
        first = node.wait_phase("app", "Running")
        out = node.apply(workload_yaml("app", command=["sleep", "2000"]))
        assert "configured" in out.stdout
        second = wait_for(
            lambda: (
                (w := node.workloads()["app"])["phase"] == "Running"
                and w["container_id"] != first["container_id"]
                and w
            ),
            what="replacement container",
        )
        assert second["spec_hash"] != first["spec_hash"]
        assert len(node.containers()) == 1
        node.cli("delete", "workload", "app", check=True)
        wait_for(lambda: not node.containers(), what="container removed")
        assert "app" not in node.workloads()
        r = node.cli("delete", "workload", "app")
        assert r.returncode == 1 and "no workload" in r.stderr


def test_restarted_node_adopts_running_containers() -> None:
    with running_node() as node:
        node.apply(workload_yaml("steady"))
        w = node.wait_phase("steady", "Running")
        assert node.stop() == 0
        # Workloads keep running without the node.
        (c,) = node.containers()
        assert c["State"] == "running"
        node.start()
        again = node.wait_phase("steady", "Running")
        assert again["container_id"] == w["container_id"]
        assert again["restarts"] == 0
        (c2,) = node.containers()
        assert c2["StartedAt"] == c["StartedAt"]


def test_crash_loop_backs_off_and_counts_restarts() -> None:
    with running_node() as node:
        node.apply(workload_yaml("crashy", command=["sh", "-c", "echo boom; exit 3"]))
        w = wait_for(
            lambda: (w := node.workloads()["crashy"])["restarts"] >= 3 and w,
            timeout=90,
            what="three restarts",
        )
        assert w["restarts"] >= 3
        seen_backoff = wait_for(
            lambda: (
                (w := node.workloads()["crashy"])["phase"] == "Failed"
                and "CrashLoopBackOff" in w["message"]
                and w
            ),
            timeout=60,
            what="CrashLoopBackOff phase",
        )
        assert seen_backoff["exit_code"] == 3
        events = json.loads(
            node.cli("events", "--workload", "crashy", "-o", "json", check=True).stdout
        )
        assert any(e["kind"] == "restarted" for e in events)


def test_on_failure_and_never_policies() -> None:
    with running_node() as node:
        node.apply(workload_yaml("done", command=["true"], restart="on-failure"))
        node.apply(workload_yaml("once", command=["sh", "-c", "exit 4"], restart="never"))
        d = node.wait_phase("done", "Stopped")
        assert d["restarts"] == 0 and d["exit_code"] == 0
        o = node.wait_phase("once", "Failed")
        assert o["restarts"] == 0 and o["exit_code"] == 4


def test_stop_and_start_through_node_override() -> None:
    with running_node() as node:
        node.apply(workload_yaml("svc"))
        w = node.wait_phase("svc", "Running")
        node.cli("stop", "svc", check=True)
        s = node.wait_phase("svc", "Stopped")
        assert s["container_id"] == w["container_id"]
        assert node.containers()[0]["State"] in ("exited", "stopped")
        node.cli("start", "svc", check=True)
        again = node.wait_phase("svc", "Running")
        assert again["container_id"] == w["container_id"]


def test_site_and_node_overrides_merge_with_precedence_and_provenance() -> None:
    with running_node() as node:
        node.apply(workload_yaml("cfg", extra="  env: {A: fleet, B: fleet}\n"))
        node.wait_phase("cfg", "Running")
        node.cli("override", "set", "cfg", "env.A", "site", "--scope", "site", check=True)
        node.cli("override", "set", "cfg", "env.B", "site", "--scope", "site", check=True)
        node.cli("override", "set", "cfg", "env.B", "node", check=True)

        def merged() -> dict[str, object] | None:
            w = node.workloads()["cfg"]
            env = w["spec"]["spec"]["env"]
            current = w["observed_spec_hash"] == w["spec_hash"] and w["phase"] == "Running"
            return w if env == {"A": "site", "B": "node"} and current else None

        w = wait_for(merged, what="site and node overrides applied")
        assert w["provenance"]["env.A"] == "site"
        assert w["provenance"]["env.B"] == "node"
        inspect = podman("inspect", w["container_id"]).stdout
        assert "A=site" in inspect and "B=node" in inspect
        # Removing the node override lets the site's value through; history says who did what.
        node.cli("override", "rm", "cfg", "env.B", check=True)
        wait_for(
            lambda: node.workloads()["cfg"]["spec"]["spec"]["env"]["B"] == "site",
            what="site value after node override removed",
        )
        bad = node.cli("override", "rm", "cfg", "env.B", "--scope", "site", "--scope", "bogus")
        assert bad.returncode == 2
        summaries = [e["summary"] for e in json.loads(node.cli("history", "-o", "json").stdout)]
        assert any("(site)" in s for s in summaries)


def test_fleet_lock_refuses_overrides_clearly_and_changes_nothing() -> None:
    with running_node() as node:
        node.apply(workload_yaml("locked", extra="  env: {MODE: safe}\n"))
        node.wait_phase("locked", "Running")
        out = node.cli("lock", "locked", "image", "env", check=True).stdout
        assert "image, env" in out or "env, image" in out
        before = node.cli("history", "-o", "json", check=True).stdout
        r = node.cli("override", "set", "locked", "env.MODE", "unsafe")
        assert r.returncode != 0
        assert "fleet policy locks 'env.MODE'" in r.stderr
        assert node.cli("history", "-o", "json", check=True).stdout == before
        # Other fields stay open; unlocking opens the locked ones again.
        node.cli("override", "set", "locked", "enabled", "false", check=True)
        node.cli("lock", "locked", "env", "--unlock", check=True)
        node.cli("override", "set", "locked", "env.MODE", "unsafe", check=True)
        bad = node.cli("lock", "locked", "nonsense")
        assert bad.returncode != 0 and "cannot lock 'nonsense'" in bad.stderr


def test_missing_image_is_reported_and_recovers_when_image_arrives() -> None:
    image = f"localhost/nr-missing-{os.getpid()}:1"
    with running_node() as node:
        node.apply(workload_yaml("late", image=image))
        w = node.wait_phase("late", "Pending")
        wait_for(
            lambda: "not on this host" in node.workloads()["late"]["message"], what="image message"
        )
        assert node.status()["podman"]["connected"]
        podman("tag", "localhost/busybox:1", image)
        try:
            w = node.wait_phase("late", "Running", timeout=90)
            assert w["container_id"]
        finally:
            node.cli("delete", "workload", "late")
            wait_for(lambda: not node.containers(), what="removed")
            podman("rmi", image, check=False)


def test_a_start_refused_by_the_oci_runtime_is_failed_and_retried_with_retry_at() -> None:
    # Issue 9 §3: runc refused to start containers; they stayed "Starting" with no retry shown.
    # A command that does not exist is refused by runc the same way, leaving a created one.
    with running_node() as node:
        node.apply(workload_yaml("noexec", command=["/nonexistent"]))
        w = node.wait_phase("noexec", "Failed")
        assert w["message"].startswith("could not start the container: ")
        assert "OCI runtime" in w["message"] or "runc" in w["message"]
        assert w["retry_at"] is not None
        (c,) = node.containers()
        assert c["State"] == "created"
        first = w["retry_at"]
        again = wait_for(
            lambda: (v := node.workloads()["noexec"])["retry_at"] not in (None, first) and v,
            what="a second attempt with a later retry_at",
        )
        assert again["phase"] == "Failed" and again["retry_at"] > first
        assert [x["Id"] for x in node.containers()] == [c["Id"]]  # retried, not re-created


def test_two_nodes_on_one_podman_never_touch_each_other() -> None:
    with running_node() as a, running_node() as b:
        a.apply(workload_yaml("same"))
        b.apply(workload_yaml("same"))
        wa = a.wait_phase("same", "Running")
        wb = b.wait_phase("same", "Running")
        assert wa["container_id"] != wb["container_id"]
        a.cli("delete", "workload", "same", check=True)
        wait_for(lambda: not a.containers(), what="a's container removed")
        assert b.workloads()["same"]["phase"] == "Running"
        assert [c["Id"][:12] for c in b.containers()] == [wb["container_id"][:12]]


def test_sigint_also_stops_cleanly() -> None:
    import signal

    with running_node() as node:
        assert node.stop(signal.SIGINT) == 0
        assert "Traceback" not in node.log()
        assert not (node.data_dir / "api.sock").exists()


def test_cli_version() -> None:
    r = subprocess.run(
        [*__import__("node_harness").CLI, "--version"], capture_output=True, text=True
    )
    assert r.returncode == 0 and r.stdout.startswith("noderuntime ")


def test_a_huge_log_line_is_clipped_not_fatal_to_the_stream() -> None:
    long_line = "head -c 9437184 /dev/zero | tr '\\0' x; echo; echo after-the-long-line"
    with running_node() as node:
        node.apply(workload_yaml("chatty", command=["sh", "-c", f"{long_line}; exec sleep 3600"]))
        node.wait_phase("chatty", "Running")
        r = wait_for(
            lambda: (
                (r := node.cli("logs", "chatty")).returncode == 0
                and "after-the-long-line" in r.stdout
                and r
            ),
            what="the line after a 9 MiB line",
        )
        lines = r.stdout.splitlines()
        assert max(len(line) for line in lines) < 128 * 1024
        assert any("more characters cut by noderuntime" in line for line in lines)


def test_restart_asked_for_is_not_counted_as_a_crash() -> None:
    # The container takes its time to stop (TERM is trapped), so reconcile passes run while it
    # is down; they must not count a crash or back off.
    slow_stop = "trap 'sleep 2; exit 0' TERM; echo up; while true; do sleep 0.2; done"
    extra = "  stopTimeoutSeconds: 5\n"
    with running_node() as node:
        node.apply(workload_yaml("svc", command=["sh", "-c", slow_stop], extra=extra))
        before = node.wait_phase("svc", "Running")
        r = node.cli("restart", "svc")
        assert r.returncode == 0, r.stderr
        after = node.wait_phase("svc", "Running")
        assert after["container_id"] == before["container_id"]
        assert after["restarts"] == 0 and "CrashLoop" not in after["message"]
        (c,) = node.containers()
        assert c["State"] == "running"
        events = json.loads(node.cli("events", "--workload", "svc", "-o", "json").stdout)
        assert any("restarted by" in e["message"] for e in events)
        assert not any(e["kind"] == "restarted" and "exit code" in e["message"] for e in events)
