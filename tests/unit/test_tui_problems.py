"""Reasons split fix-first, problems sorted worst-first, the node's own problems."""

from __future__ import annotations

from typing import Any

from tui import model
from tui.problems import node_problems, reason_line, split_reason, workload_problems

NOW = 1_790_000_000.0
PODMAN_ERROR = (
    "initializing source docker://localhost/nope:1: pinging container registry localhost: "
    'Get "https://localhost/v2/": dial tcp 127.0.0.1:443: connect: connection refused; '
    "and (nested) parentheses"
)
MISSING_IMAGE = (
    f"image localhost/nope:1 is not on this host and could not be pulled ({PODMAN_ERROR}); "
    "load it with `podman load -i FILE` or fix the image name"
)


def test_a_missing_image_gives_the_fix_first_and_the_raw_error_last() -> None:
    reason = split_reason(MISSING_IMAGE)
    assert reason.hint == "load it with `podman load -i FILE` or fix the image name"
    assert reason.cause == "image localhost/nope:1 is not on this host and could not be pulled"
    assert reason.raw == PODMAN_ERROR  # its own "; " and parentheses kept whole
    assert reason.line().startswith("Load it with `podman load -i FILE`")
    assert [line.split(":")[0] for line in reason.lines()] == ["Fix", "Why", "Error"]


def test_messages_without_a_fix_stay_as_they_are() -> None:
    assert reason_line("exited with code 1; retrying in 8s") == "exited with code 1; retrying in 8s"
    assert split_reason("health is now unhealthy (exit 1)").lines() == [
        "health is now unhealthy (exit 1)"
    ]
    assert reason_line("") == ""


def wl(name: str, phase: str, **kw: Any) -> dict[str, Any]:
    return {"name": name, "phase": phase, "enabled": True, **kw}


def test_workload_problems_worst_first_with_reasons() -> None:
    views = [
        wl("ok", "Running", health="healthy"),
        wl("off", "Stopped", enabled=False),
        wl("probe", "Running", health="unhealthy"),
        wl("wait", "Pending", message="pulling image x"),
        wl("crash", "Failed", restarts=9, message="exited with code 1; retrying in 8s"),
        wl("gone", "Stopped"),
    ]
    problems = workload_problems(views)
    assert [p.name for p in problems] == ["crash", "probe", "wait", "gone"]
    assert problems[0].reason == "9 restarts; exited with code 1; retrying in 8s"
    assert problems[1].what == "Running/unhealthy" and "probe fails" in problems[1].reason
    assert problems[3].reason == "stopped although it should run"


def test_workload_row_has_a_message_with_the_fix_first() -> None:
    row = model.workload_row(wl("x", "Failed", message=MISSING_IMAGE), NOW)
    assert row.message.startswith("Load it with")
    assert row.cells()[-1] == row.message


def healthy_status() -> dict[str, Any]:
    return {
        "node": {"started_at": NOW - 100, "uptime_s": 100.0},
        "podman": {"connected": True},
        "store": {"healthy": True},
        "sync": {"enabled": False},
        "host": {"disk_total_bytes": 100, "disk_free_bytes": 50},
    }


def test_a_healthy_node_has_no_problems() -> None:
    assert node_problems(healthy_status(), NOW) == []


def test_node_problems_podman_store_sync_disk_clock() -> None:
    status = healthy_status()
    status["podman"] = {"connected": False, "error": "cannot connect to Podman"}
    status["store"] = {"healthy": False, "error": "disk I/O error"}
    status["sync"] = {"enabled": True, "connected": False}
    status["host"] = {"disk_total_bytes": 100, "disk_free_bytes": 5}
    status["node"] = {"started_at": NOW, "uptime_s": 3600.0}  # its clock an hour ahead
    what = {p.what: p.reason for p in node_problems(status, NOW)}
    assert list(what) == ["Podman", "Store", "Sync", "Disk", "Clock"]
    assert "cannot connect to Podman" in what["Podman"]
    assert "5% free" in what["Disk"]
    assert "3600s ahead" in what["Clock"]


def test_event_rows_name_their_workload() -> None:
    rows = model.event_rows(
        [{"ts": NOW - 1, "workload": "web", "kind": "crashed", "message": MISSING_IMAGE}],
        [{"ts": NOW - 2, "author": "operator:bob", "summary": "apply db", "doc": "fleet"}],
        "n1",
        workloads=("db", "web"),
    )
    assert [r.workload for r in rows] == ["web", "db"]
    assert rows[0].what.startswith("web: crashed: Load it with")


def test_a_stopped_workload_whose_container_still_runs_shows_stopping() -> None:
    row = model.workload_row(wl("web", "Running", enabled=False), NOW)
    assert row.phase == "Stopping" and row.want == "stop"
    assert model.workload_row(wl("web", "Stopped", enabled=False), NOW).phase == "Stopped"


def test_restart_progress_steps_stopping_countdown_then_starting() -> None:
    from tui.actions import restart, stop_timeout

    view = {"spec": {"spec": {"stopTimeoutSeconds": 12}}}
    assert stop_timeout(view) == 12.0 and stop_timeout(None) == 10.0
    progress = restart("web", view).progress
    assert progress is not None
    assert "Stopping web" in progress(2.0, False) and "10s left" in progress(2.0, False)
    assert progress(3.0, True).startswith("Starting web")  # seen stopped: next step
    assert progress(12.5, False).startswith("Starting web")  # grace over


def test_detail_since_follows_a_recreated_container() -> None:
    from tui.screens.detail import since

    view = {
        "since": NOW - 3600,
        "containers": [{"state": "running", "started_at": NOW - 5}],
    }
    assert since(view) == NOW - 5
    assert since({"since": NOW - 3600, "containers": []}) == NOW - 3600
