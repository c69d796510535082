"""Keys that used to surprise (issue 14 §3, §5, §6), against the fake API at 80x24."""

from __future__ import annotations

from fake_api import FakeApi, _workload, clock
from textual.widgets import DataTable
from tui_helpers import screen_text, settle, wait_until

from tui.app import NodeRuntimeApp
from tui.screens.detail import WorkloadDetailScreen
from tui.screens.workloads import WorkloadsScreen


def make_app(api: FakeApi | None = None, view: str = "workloads") -> NodeRuntimeApp:
    return NodeRuntimeApp(api or FakeApi(), clock=clock, refresh_interval_s=3600, initial_view=view)


async def test_2_from_another_view_opens_the_list_not_the_last_detail() -> None:
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, WorkloadDetailScreen))
        await pilot.press("1")
        await pilot.press("2")
        await wait_until(pilot, lambda: isinstance(app.screen, WorkloadsScreen), what="the list")
        # 2 in the detail itself goes back to the list too.
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, WorkloadDetailScreen))
        await pilot.press("2")
        await wait_until(pilot, lambda: isinstance(app.screen, WorkloadsScreen), what="the list")


async def test_end_goes_to_the_last_row_not_sideways() -> None:
    app = make_app()
    async with app.run_test(size=(60, 24)) as pilot:
        await settle(pilot)
        table = app.screen.query_one("#workloads-table", DataTable)
        await pilot.press("end")
        await pilot.pause()
        assert table.scroll_x == 0
        assert table.cursor_row == table.row_count - 1
        await pilot.press("home")
        await pilot.pause()
        assert table.cursor_row == 0


async def test_enter_on_an_event_opens_its_workload() -> None:
    app = make_app(view="events")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await wait_until(pilot, lambda: "modbus-poller" in screen_text(pilot), what="events")
        table = app.screen.query_one("#events-table", DataTable)
        await pilot.press("down")  # the newest is plc-bridge's, then modbus-poller's
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, WorkloadDetailScreen))
        assert isinstance(app.screen, WorkloadDetailScreen)
        assert app.screen.workload == "modbus-poller"
        assert table.row_count > 0


async def test_the_list_goes_back_to_the_top_after_the_filter_is_cleared() -> None:
    api = FakeApi(workloads=[_workload(f"svc-{i:02d}", "Running") for i in range(40)])
    api.workloads.append(_workload("zz-broken", "Failed"))
    app = make_app(api)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        table = app.screen.query_one("#workloads-table", DataTable)
        assert table.ordered_rows[0].key.value == "zz-broken"  # problems first
        await pilot.press("slash", *"svc-3", "enter")
        await wait_until(pilot, lambda: table.row_count == 10, what="filtered")
        await pilot.press("end")
        await pilot.press("escape")  # clears the filter
        await wait_until(pilot, lambda: table.row_count == 41, what="all rows back")
        await pilot.pause()
        visible = table.scrollable_content_region.height - table.header_height
        assert table.cursor_row - round(table.scroll_y) < visible  # the cursor row shows...
        assert table.scroll_y == max(0, table.cursor_row - visible + 1)  # ...as high as it can
        assert cursor_key_is(table, "svc-39")


def cursor_key_is(table: DataTable[object], name: str) -> bool:
    return table.ordered_rows[table.cursor_row].key.value == name


async def test_filter_matches_what_the_columns_show() -> None:
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        table = app.screen.query_one("#workloads-table", DataTable)
        await pilot.press("slash", *"health", "enter")
        # Rows whose health shows (healthy, unhealthy), not all six on hidden "health=" text.
        await wait_until(pilot, lambda: table.row_count == 2, what="two rows")
        assert {r.key.value for r in table.ordered_rows} == {"hmi-web", "plc-bridge"}


async def test_log_search_says_when_it_wraps_around() -> None:
    app = make_app()
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await settle(pilot)
        await pilot.press("l")  # modbus-poller: three runs
        await wait_until(pilot, lambda: len(getattr(app.screen, "buffer", ())) == 12, what="lines")
        said: list[str] = []
        real_notify = app.screen.notify

        def notify(message: str, **kw: object) -> None:
            said.append(message)
            real_notify(message, **kw)  # type: ignore[arg-type]

        app.screen.notify = notify  # type: ignore[method-assign]
        await pilot.press("slash", *"starting", "enter")  # the newest match first
        await pilot.pause()
        assert not any("wrapped" in s for s in said)
        await pilot.press("n")  # past the newest: round to the top
        await pilot.pause()
        assert any("wrapped" in s and "top" in s for s in said)
