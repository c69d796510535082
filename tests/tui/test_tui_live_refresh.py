"""The workloads table across a live refresh (fake API, frozen clock, refresh driven by the test).

A refresh updates the table in place: the cursor stays on the selected workload at the same
height on the screen while one row changes phase and another appears above it; the table is
not cleared and only the new row is added. And a filter stays applied to what a refresh brings.
"""

from __future__ import annotations

from typing import Any

from fake_api import FakeApi, _workload, clock
from textual.widgets import DataTable
from tui_helpers import screen_text, settle, wait_until

from tui.app import NodeRuntimeApp
from tui.widgets.table_sync import cursor_key


def table_names(table: DataTable[Any]) -> list[str]:
    return [str(r.key.value) for r in table.ordered_rows]


def phase_of(table: DataTable[Any], name: str) -> str:
    return str(table.get_cell(name, "PHASE"))


async def test_refresh_keeps_cursor_on_the_selected_workload() -> None:
    api = FakeApi(workloads=[_workload(f"svc-{i:02d}", "Running") for i in range(0, 80, 2)])
    app = NodeRuntimeApp(api, clock=clock, refresh_interval_s=3600, initial_view="workloads")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        table = app.screen.query_one("#workloads-table", DataTable)
        for _ in range(25):  # past the first screenful: the table has scrolled...
            await pilot.press("down")
        for _ in range(8):  # ...then back up to mid-screen
            await pilot.press("up")
        await pilot.pause()
        assert cursor_key(table) == "svc-34" and table.scroll_y > 0
        row, offset = table.cursor_row, table.cursor_row - table.scroll_y
        before = screen_text(pilot)

        calls: dict[str, int] = {"clear": 0, "add_row": 0}
        real_clear, real_add_row = table.clear, table.add_row

        def clear(*args: Any, **kwargs: Any) -> Any:
            calls["clear"] += 1
            return real_clear(*args, **kwargs)

        def add_row(*args: Any, **kwargs: Any) -> Any:
            calls["add_row"] += 1
            return real_add_row(*args, **kwargs)

        table.clear = clear  # type: ignore[method-assign]
        table.add_row = add_row  # type: ignore[method-assign]

        # One visible row above the cursor changes phase; a new workload sorts above it.
        api.workloads[16] = _workload("svc-32", "Failed")
        api.workloads.append(_workload("svc-33", "Starting"))
        app.poll()
        await wait_until(pilot, lambda: "svc-33" in table_names(table), what="the new row")
        await pilot.pause()

        names = table_names(table)
        # Problems first: the failed and the starting one move to the top.
        assert names[:2] == ["svc-32", "svc-33"] and names[2:] == sorted(names[2:])
        assert len(names) == 41
        assert cursor_key(table) == "svc-34"  # same workload selected...
        assert table.cursor_row == row + 1  # ...one row further down the table...
        assert table.cursor_row - table.scroll_y == offset  # ...at the same place on screen
        assert phase_of(table, "svc-32") == "Failed"
        assert phase_of(table, "svc-33") == "Starting"
        assert calls == {"clear": 0, "add_row": 1}  # in place: only the new row was added
        after = screen_text(pilot)
        assert after != before and "Failed" in after and "41 of 41" in after

        # The next refresh brings nothing new: the table is left alone.
        app.poll()
        await pilot.pause(0.1)
        assert table_names(table) == names and cursor_key(table) == "svc-34"
        assert calls == {"clear": 0, "add_row": 1}


async def test_filter_stays_applied_across_a_refresh() -> None:
    api = FakeApi(workloads=[_workload(f"svc-{i:02d}", "Running") for i in range(20)])
    app = NodeRuntimeApp(api, clock=clock, refresh_interval_s=3600, initial_view="workloads")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        table = app.screen.query_one("#workloads-table", DataTable)
        await pilot.press("slash", *"phase=failed", "enter")
        await wait_until(pilot, lambda: table.row_count == 0, what="nothing failed")

        api.workloads[3] = _workload("svc-03", "Failed")
        api.workloads.append(_workload("new-one", "Failed"))
        app.poll()
        await wait_until(pilot, lambda: table.row_count == 2, what="the failed ones")
        assert table_names(table) == ["new-one", "svc-03"]

        api.workloads[3] = _workload("svc-03", "Running")
        app.poll()
        await wait_until(pilot, lambda: table.row_count == 1, what="svc-03 recovered")
        assert table_names(table) == ["new-one"] and cursor_key(table) == "new-one"

        await pilot.press("escape")  # clears the filter: every workload, in order
        await wait_until(pilot, lambda: table.row_count == 21, what="unfiltered")
        assert table_names(table) == sorted(table_names(table))
        assert cursor_key(table) == "new-one"
