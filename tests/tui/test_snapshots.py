"""Snapshot tests (pytest-textual-snapshot) at 80x24 and 160x48 against a fake API.

The fake answers with canned data and the app's clock is frozen, so every picture is the same on
every run. Update the pictures with ``pytest tests/tui --snapshot-update`` after a deliberate
change and review the SVGs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from fake_api import PIN, TECHNICIAN, FakeApi, clock
from textual.pilot import Pilot
from textual.widgets import Input
from tui_helpers import settle, wait_until

from tui.app import NodeRuntimeApp

SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((160, 48), id="160x48")]
# No live refresh during a snapshot: the picture must not depend on timing.
FROZEN_REFRESH_S = 3600.0


def make_app(
    api: FakeApi | None = None, view: str = "overview", *, linux_console: bool = False
) -> NodeRuntimeApp:
    return NodeRuntimeApp(
        api or FakeApi(),
        clock=clock,
        refresh_interval_s=FROZEN_REFRESH_S,
        initial_view=view,
        linux_console=linux_console,
    )


def keys(*pressed: str) -> Callable[[Pilot[Any]], Awaitable[None]]:
    async def run(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        for k in pressed:
            await pilot.press(k)
            await pilot.pause(0.05)
        await settle(pilot)
        # A blinking text cursor would make the picture depend on timing.
        for box in pilot.app.screen.query(Input):
            box.cursor_blink = False
        await pilot.pause(0.05)

    return run


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize(
    ("view", "pressed"),
    [
        ("overview", ()),
        ("workloads", ()),
        ("workloads", ("down", "down", "down", "down", "d")),
        ("workloads", ("down", "down", "down", "down", "l")),
        ("peers", ()),
        ("events", ()),
        ("overview", ("question_mark",)),
    ],
    ids=["overview", "workloads", "detail", "logs", "peers", "events", "help"],
)
def test_views(
    snap_compare: Any, size: tuple[int, int], view: str, pressed: tuple[str, ...]
) -> None:
    assert snap_compare(make_app(view=view), terminal_size=size, run_before=keys(*pressed))


def test_workloads_filtered(snap_compare: Any) -> None:
    assert snap_compare(
        make_app(view="workloads"),
        terminal_size=(80, 24),
        run_before=keys("slash", *"phase=r", "enter"),
    )


def test_logs_search(snap_compare: Any) -> None:
    async def run(pilot: Pilot[Any]) -> None:
        await keys("down", "down", "down", "down", "l")(pilot)
        await wait_until(pilot, lambda: len(pilot.app.screen.buffer) == 200, what="log lines")
        for k in ("slash", *"in 7 ms", "enter"):
            await pilot.press(k)
        await pilot.pause(0.2)

    assert snap_compare(make_app(view="workloads"), terminal_size=(80, 24), run_before=run)


def test_confirm_dialog(snap_compare: Any) -> None:
    assert snap_compare(make_app(view="workloads"), terminal_size=(80, 24), run_before=keys("r"))


def test_policy_refusal_is_explained(snap_compare: Any) -> None:
    # image is locked by fleet policy in the fake: the dialog says so.
    async def run(pilot: Pilot[Any]) -> None:
        await keys("down", "down", "down", "down", "o")(pilot)
        for k in (*"image", "enter", *"localhost/other:2", "enter"):
            await pilot.press(k)
        await pilot.pause(0.1)
        for k in (*TECHNICIAN, "enter", *PIN, "enter"):
            await pilot.press(k)
        await wait_until(
            pilot,
            lambda: "policy" in str(pilot.app.screen.query_one("#confirm-error").render()),
            what="policy message",
        )
        await pilot.pause(0.1)

    assert snap_compare(make_app(view="workloads"), terminal_size=(80, 24), run_before=run)


def test_daemon_lost(snap_compare: Any) -> None:
    api = FakeApi()
    app = make_app(api)

    async def run(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        api.down = True
        app.poll()
        await wait_until(pilot, lambda: not app.ctx.connected, what="disconnected")
        app.clear_notifications()
        await pilot.pause(0.1)

    assert snap_compare(app, terminal_size=(80, 24), run_before=run)


def test_sync_not_configured(snap_compare: Any) -> None:
    assert snap_compare(
        make_app(FakeApi(sync=False, sync_method=False), view="peers"),
        terminal_size=(80, 24),
        run_before=keys(),
    )


def test_fleet_view(snap_compare: Any) -> None:
    assert snap_compare(make_app(view="fleet"), terminal_size=(80, 24), run_before=keys())


def test_jump_prompt(snap_compare: Any) -> None:
    assert snap_compare(make_app(), terminal_size=(80, 24), run_before=keys("colon", *"wor"))


class FailingStoreApi(FakeApi):
    """The fake, with a store whose latest commit failed."""

    async def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        result = await super().call(method, params)
        if method == "node.status":
            result["store"].update(healthy=False, error="commit failed: database is locked")
        return result


def test_store_unhealthy(snap_compare: Any) -> None:
    assert snap_compare(make_app(FailingStoreApi()), terminal_size=(80, 24), run_before=keys())


@pytest.mark.parametrize(
    ("view", "pressed"),
    [("overview", ()), ("workloads", ()), ("workloads", ("r",)), ("workloads", ("slash",))],
    ids=["overview", "workloads", "confirm", "filter"],
)
def test_linux_console(snap_compare: Any, view: str, pressed: tuple[str, ...]) -> None:
    """TERM=linux: 16 ANSI colours (red failed, yellow waiting or unhealthy, green running)
    and box drawing the console's font has: no rounded corners, no thin block glyphs."""
    app = make_app(view=view, linux_console=True)

    assert snap_compare(app, terminal_size=(80, 24), run_before=keys(*pressed))


def test_overview_of_a_node_not_enrolled(snap_compare: Any) -> None:
    # Problems first, and no empty peers box.
    assert snap_compare(
        make_app(FakeApi(sync=False, sync_method=False)),
        terminal_size=(80, 24),
        run_before=keys(),
    )


def test_missing_image_detail(snap_compare: Any) -> None:
    """The fix ("load it ... or fix the image name") shows at 80x24, before Podman's error."""
    app = make_app(view="workloads")
    assert snap_compare(app, terminal_size=(80, 24), run_before=keys("down", "down", "d"))


def test_logs_of_a_crash_loop(snap_compare: Any) -> None:
    """Each line's time, and a divider per container start with the exit code before it."""

    async def run(pilot: Pilot[Any]) -> None:
        await keys("l")(pilot)  # modbus-poller, failed, sorts first
        await wait_until(pilot, lambda: len(pilot.app.screen.buffer) == 12, what="log lines")
        await pilot.pause(0.2)

    assert snap_compare(make_app(view="workloads"), terminal_size=(80, 24), run_before=run)
