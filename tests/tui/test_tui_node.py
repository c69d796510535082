"""The TUI driven by Pilot against a real running node (real daemon, Podman, SQLite).

Every screen and every action: overview, workloads (filter, describe), logs (follow, pause,
search), peers, events, help, jump; restart, stop, start, override set/remove with technician
PINs (wrong PIN, lock-out); a lost daemon and the automatic reconnect.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, Input

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "integration"))

from node_harness import NodeProcess, running_node, wait_for, workload_yaml
from tui_helpers import screen_text, settle, wait_until

from noderuntime.api.client import ApiClient
from noderuntime.config.model import NodePaths, load_config
from tui.app import NodeRuntimeApp
from tui.screens.confirm import ConfirmActionScreen
from tui.screens.detail import WorkloadDetailScreen
from tui.screens.logs import LogsScreen
from tui.screens.override import OverrideScreen
from tui.screens.overview import health_panel

pytestmark = [pytest.mark.podman, pytest.mark.slow, pytest.mark.usefixtures("busybox_image")]

TECH = "alice"
PIN = "2468"
LOGGER_CMD = [
    "sh",
    "-c",
    'i=0; while [ $i -lt 3000 ]; do echo "tick $i"; i=$((i+1)); done; '
    'while true; do echo "live $i"; i=$((i+1)); sleep 0.2; done',
]


@pytest.fixture(scope="module")
def node() -> Iterator[NodeProcess]:
    with running_node() as n:
        n.cli("technician", "add", TECH, "--pin-stdin", input=PIN + "\n", check=True)
        n.cli("technician", "add", "bob", "--pin-stdin", input="1357\n", check=True)
        n.apply(workload_yaml("web", extra="  env:\n    MODE: fleet\n"))
        n.apply(workload_yaml("logger", command=LOGGER_CMD))
        n.wait_phase("web", "Running")
        n.wait_phase("logger", "Running")
        yield n


def socket_of(node: NodeProcess) -> Path:
    return NodePaths(node.data_dir, load_config(node.data_dir)).api_socket


def make_app(node: NodeProcess, view: str = "overview") -> NodeRuntimeApp:
    return NodeRuntimeApp(
        ApiClient(socket_of(node), timeout_s=10),
        write_api=ApiClient(socket_of(node), timeout_s=120),
        refresh_interval_s=0.5,
        initial_view=view,
    )


async def type_text(pilot: Pilot[Any], text: str) -> None:
    for ch in text:
        await pilot.press(ch)


async def authorise(pilot: Pilot[Any], pin: str, technician: str = TECH) -> None:
    app = pilot.app
    await wait_until(pilot, lambda: isinstance(app.screen, ConfirmActionScreen), what="dialog")
    name = app.screen.query_one("#technician", Input)
    if name.value != technician:
        name.value = ""
        name.focus()
        await type_text(pilot, technician)
        await pilot.press("enter")
    else:
        app.screen.query_one("#pin", Input).focus()
    await type_text(pilot, pin)
    await pilot.press("enter")


def dialog_error(app: NodeRuntimeApp) -> str:
    return str(app.screen.query_one("#confirm-error").render())


async def select_workload(pilot: Pilot[Any], name: str) -> None:
    app = pilot.app
    await settle(pilot)
    table = app.screen.query_one("#workloads-table", DataTable)
    await wait_until(pilot, lambda: name in [str(k.value) for k in table.rows], what=name)
    names = [str(r.key.value) for r in table.ordered_rows]  # display order
    table.move_cursor(row=names.index(name))
    await pilot.pause()


async def test_overview_shows_the_real_node(node: NodeProcess) -> None:
    app = make_app(node)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        text = screen_text(pilot)
        assert node.node_id in text and "test" in text
        assert "Podman    connected" in text
        assert "2 desired" in text and "Running" in text
        assert "Sync      not configured" in text
        assert "Peers and hubs" not in text  # no empty peers box on a node not enrolled
        assert "No problems" in text and "run as wanted" in text
        assert "Memory" in text and "Disk" in text


async def test_workloads_filter_describe_and_jump(node: NodeProcess) -> None:
    app = make_app(node, "workloads")
    async with app.run_test(size=(80, 24)) as pilot:
        await select_workload(pilot, "web")
        assert "logger" in screen_text(pilot) and "Running" in screen_text(pilot)
        await pilot.press("slash")
        await type_text(pilot, "logg")
        await pilot.press("enter")
        table = app.screen.query_one("#workloads-table", DataTable)
        await wait_until(pilot, lambda: table.row_count == 1, what="filtered")
        await pilot.press("escape")  # clears the filter
        await wait_until(pilot, lambda: table.row_count == 2, what="unfiltered")
        await select_workload(pilot, "web")
        await pilot.press("d")
        await wait_until(pilot, lambda: isinstance(app.screen, WorkloadDetailScreen))
        await settle(pilot)
        text = screen_text(pilot)
        assert "env.MODE" in text and "fleet" in text and "localhost/busybox:1" in text
        assert "container" in text
        await pilot.press("escape")
        await pilot.press("colon")
        await type_text(pilot, "events")
        await pilot.press("enter")
        await wait_until(pilot, lambda: app.current_mode == "events", what="events view")
        await pilot.press("question_mark")
        await pilot.pause()
        assert "Views" in screen_text(pilot) and "filter" in screen_text(pilot)
        await pilot.press("escape")
        await pilot.press("3")
        await settle(pilot)
        assert "sync not configured on this node" in screen_text(pilot)


async def test_logs_follow_pause_search(node: NodeProcess) -> None:
    app = make_app(node, "workloads")
    async with app.run_test(size=(80, 24)) as pilot:
        await select_workload(pilot, "logger")
        await pilot.press("l")
        await wait_until(pilot, lambda: isinstance(app.screen, LogsScreen))
        logs = app.screen
        assert isinstance(logs, LogsScreen)
        await wait_until(pilot, lambda: len(logs.buffer) > 3000, what="tail of the log")
        await wait_until(pilot, lambda: "live" in screen_text(pilot), what="following")
        await pilot.press("p")
        frozen = len(logs.buffer)
        await wait_until(pilot, lambda: len(logs.pending) > 0, what="lines arrive while paused")
        assert len(logs.buffer) == frozen
        assert "PAUSED" in screen_text(pilot)
        await pilot.press("p")
        await wait_until(pilot, lambda: len(logs.buffer) > frozen, what="resumed")
        await pilot.press("slash")
        await type_text(pilot, "tick 1234")
        await pilot.press("enter")
        await wait_until(pilot, lambda: "tick 1234" in screen_text(pilot), what="match in view")
        assert not logs.log_view.follow
        await pilot.press("G")
        assert logs.log_view.follow
        await pilot.press("escape")
        await wait_until(pilot, lambda: app.screen.__class__.__name__ == "WorkloadsScreen")


async def test_restart_needs_a_valid_pin(node: NodeProcess) -> None:
    app = make_app(node, "workloads")
    async with app.run_test(size=(80, 24)) as pilot:
        await select_workload(pilot, "web")
        before = node.workloads()["web"]["container_id"]
        await pilot.press("r")
        await authorise(pilot, "0000")
        await wait_until(pilot, lambda: "wrong PIN" in dialog_error(app), what="refusal")
        assert isinstance(app.screen, ConfirmActionScreen)
        await type_text(pilot, PIN)
        await pilot.press("enter")
        # The container ignores SIGTERM (sleep as PID 1): a restart waits out the stop timeout.
        await wait_until(
            pilot,
            lambda: not isinstance(app.screen, ConfirmActionScreen),
            what="restart done",
            limit_s=40,
        )
        events = node.cli("events", "-o", "json").stdout
        assert "restarted by technician:alice" in events
        assert node.workloads()["web"]["container_id"] == before  # restarted, not replaced


async def test_stop_and_start_are_signed_for_the_technician(node: NodeProcess) -> None:
    app = make_app(node, "workloads")
    async with app.run_test(size=(80, 24)) as pilot:
        await select_workload(pilot, "web")
        await pilot.press("s")
        await authorise(pilot, PIN)
        await wait_until(pilot, lambda: not isinstance(app.screen, ConfirmActionScreen))
        node.wait_phase("web", "Stopped", enabled=False)
        table = app.screen.query_one("#workloads-table", DataTable)
        await wait_until(
            pilot, lambda: "stop" in screen_text(pilot) and "Stopped" in screen_text(pilot)
        )
        await select_workload(pilot, "web")
        await pilot.press("t")
        await authorise(pilot, PIN)
        await wait_until(pilot, lambda: not isinstance(app.screen, ConfirmActionScreen))
        node.wait_phase("web", "Running", enabled=True)
        assert table.row_count == 2
        # The events view shows who did it: the technician, signed here (local).
        await pilot.press("4")
        await settle(pilot)
        await wait_until(
            pilot,
            lambda: (
                "technician:alice" in screen_text(pilot) and "enabled=false" in screen_text(pilot)
            ),
            what="history",
        )


async def test_override_set_and_remove(node: NodeProcess) -> None:
    app = make_app(node, "workloads")
    async with app.run_test(size=(100, 30)) as pilot:
        await select_workload(pilot, "web")
        await pilot.press("d")
        await wait_until(pilot, lambda: isinstance(app.screen, WorkloadDetailScreen))
        await settle(pilot)
        await pilot.press("o")
        await wait_until(pilot, lambda: isinstance(app.screen, OverrideScreen))
        field = app.screen.query_one("#field", Input)
        field.value = ""
        field.focus()
        await type_text(pilot, "env.MODE")
        await pilot.press("enter")
        await type_text(pilot, "field")
        await pilot.press("enter")
        await authorise(pilot, PIN)
        await wait_until(pilot, lambda: not isinstance(app.screen, ConfirmActionScreen))
        wait_for(
            lambda: node.workloads()["web"]["provenance"].get("env.MODE") == "node",
            what="override recorded",
        )
        detail = app.screen
        assert isinstance(detail, WorkloadDetailScreen)
        spec = detail.query_one("#detail-spec", DataTable)
        await wait_until(
            pilot,
            lambda: detail.view is not None and detail.view["provenance"].get("env.MODE") == "node",
            what="detail refreshed",
        )
        rows = [str(k.value) for k in spec.rows]
        spec.move_cursor(row=rows.index("env.MODE"))
        await pilot.pause()
        await pilot.press("x")
        await authorise(pilot, PIN)
        await wait_until(pilot, lambda: not isinstance(app.screen, ConfirmActionScreen))
        wait_for(
            lambda: "env.MODE" not in node.workloads()["web"]["provenance"],
            what="override removed",
        )
        # A field that does not come from this node cannot be removed here.
        spec.move_cursor(row=0)
        await wait_until(pilot, lambda: "env.MODE" in [str(k.value) for k in spec.rows])
        rows = [str(k.value) for k in spec.rows]
        spec.move_cursor(row=rows.index("image"))
        await pilot.press("x")
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmActionScreen)
        # History says who made and removed this override, not merely that alice did something.
        entries = json.loads(node.cli("history", "-o", "json", check=True).stdout)
        for change in ('override web env.MODE="field"', "remove override web env.MODE"):
            mine = [e for e in entries if (e.get("summary") or "").startswith(change)]
            assert mine, f"no history entry for {change!r}: {entries}"
            assert mine[0]["on_behalf"] == f"technician:{TECH}", mine[0]
            assert mine[0]["author"] == f"node:{node.node_id}", mine[0]


async def test_invalid_override_is_explained(node: NodeProcess) -> None:
    app = make_app(node, "workloads")
    async with app.run_test(size=(80, 24)) as pilot:
        await select_workload(pilot, "web")
        await pilot.press("o")
        await wait_until(pilot, lambda: isinstance(app.screen, OverrideScreen))
        await type_text(pilot, "resources.memory")
        await pilot.press("enter")
        await type_text(pilot, "lots")
        await pilot.press("enter")
        await authorise(pilot, PIN)
        await wait_until(pilot, lambda: "Invalid change" in dialog_error(app), what="refusal")
        await pilot.press("escape")
        assert "resources.memory" not in node.workloads()["web"]["provenance"]


async def test_fleet_policy_refusal_is_explained(node: NodeProcess) -> None:
    node.cli("lock", "web", "image", check=True)
    try:
        app = make_app(node, "workloads")
        async with app.run_test(size=(80, 24)) as pilot:
            await select_workload(pilot, "web")
            await pilot.press("o")
            await wait_until(pilot, lambda: isinstance(app.screen, OverrideScreen))
            await type_text(pilot, "image")
            await pilot.press("enter")
            await type_text(pilot, "localhost/other:2")
            await pilot.press("enter")
            await authorise(pilot, PIN)
            await wait_until(
                pilot, lambda: "fleet policy" in dialog_error(app).lower(), what="policy refusal"
            )
            await pilot.press("escape")
        assert "image" not in node.workloads()["web"]["provenance"]
    finally:
        node.cli("lock", "web", "image", "--unlock", check=True)


async def test_lockout_after_repeated_wrong_pins(node: NodeProcess) -> None:
    app = make_app(node, "workloads")
    async with app.run_test(size=(80, 24)) as pilot:
        await select_workload(pilot, "web")
        await pilot.press("r")
        await authorise(pilot, "0000", technician="bob")

        def answered() -> str:
            # The dialog's answer once the PIN check is over ("Checking PIN..." is not one,
            # and Enter is ignored while it shows).
            screen = app.screen
            busy = isinstance(screen, ConfirmActionScreen) and screen.busy
            return "" if busy else dialog_error(app)

        def says(text: str) -> Callable[[], bool]:
            return lambda: text in answered()

        for left in (4, 3, 2, 1):
            await wait_until(pilot, says(f"({left} tries left)"), what=f"{left} tries left")
            await type_text(pilot, "0000")
            await pilot.press("enter")
        await wait_until(pilot, says("is now locked out"), what="lock-out")
        await type_text(pilot, "1357")  # the right PIN no longer helps
        await pilot.press("enter")
        await wait_until(pilot, says("more after"), what="still locked")
        assert isinstance(app.screen, ConfirmActionScreen)


async def test_lost_daemon_is_shown_and_reconnected(node: NodeProcess) -> None:
    app = make_app(node)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        node.stop()
        await wait_until(
            pilot, lambda: "NODE UNREACHABLE" in screen_text(pilot), what="lost", limit_s=30
        )
        assert any(w in screen_text(pilot) for w in ("nothing answers", "closed", "lost the"))
        await pilot.press("2")  # still usable while disconnected
        await pilot.press("1")
        node.start()
        await wait_until(
            pilot, lambda: "| connected" in screen_text(pilot), what="reconnected", limit_s=60
        )


async def test_escape_goes_back_to_the_previous_view(node: NodeProcess) -> None:
    app = make_app(node)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("escape")  # the first view: nothing to go back to, nothing breaks
        await pilot.pause()
        assert app.current_mode == "overview" and len(app.screen_stack) == 1
        await pilot.press("colon")
        await type_text(pilot, "peers")
        await pilot.press("enter")
        await wait_until(pilot, lambda: app.current_mode == "peers", what="peers view")
        await settle(pilot)
        await pilot.press("2")
        await wait_until(pilot, lambda: app.current_mode == "workloads", what="workloads view")
        await settle(pilot)
        await pilot.press("escape")
        await wait_until(pilot, lambda: app.current_mode == "peers", what="back to peers")
        await settle(pilot)
        await pilot.press("escape")  # from Peers (its table has the focus)
        await wait_until(pilot, lambda: app.current_mode == "overview", what="back to overview")
        await settle(pilot)
        assert node.node_id in screen_text(pilot)
        await pilot.press("escape")
        await pilot.pause()
        assert app.current_mode == "overview"


async def test_store_that_cannot_commit_is_shown_unhealthy(node: NodeProcess) -> None:
    db = NodePaths(node.data_dir, load_config(node.data_dir)).state_db
    app = make_app(node)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert "Store     ok" in screen_text(pilot)
        # Another writer holds the database: the node's next commit fails ("database is
        # locked" after its busy timeout), as it would on a full or failing disk.
        blocker = sqlite3.connect(db, timeout=0, isolation_level=None)
        try:
            blocker.execute("BEGIN IMMEDIATE")
            refused = await asyncio.to_thread(node.cli, "lock", "web", "image")
            assert refused.returncode != 0
            await wait_until(
                pilot, lambda: "UNHEALTHY" in screen_text(pilot), what="unhealthy store"
            )
            assert "commit failed: database is locked" in screen_text(pilot)
            # The reason is painted red (health_panel is what the panel shows).
            text = health_panel(app.ctx.status or {})
            start = text.plain.index("commit failed")
            assert any(
                "red" in str(span.style) and span.start <= start < span.end for span in text.spans
            )
            status = node.status()["store"]
            assert status["healthy"] is False and "locked" in status["error"]
        finally:
            blocker.rollback()
            blocker.close()
        # The next commit succeeds: healthy again.
        await asyncio.to_thread(node.cli, "lock", "web", "image", check=True)
        await asyncio.to_thread(node.cli, "lock", "web", "image", "--unlock", check=True)
        await wait_until(pilot, lambda: "Store     ok" in screen_text(pilot), what="healthy")
        assert node.status()["store"]["error"] is None
