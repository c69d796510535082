"""The Fleet view (tui/screens/fleet.py): rows per node and workload, stale nodes marked, and
the filter (site=/node= asked of the node, words matched here). Pilot over the fake API."""

from __future__ import annotations

from typing import Any

from fake_api import FakeApi, clock
from textual.widgets import DataTable, Static
from tui_helpers import settle

from tui.app import NodeRuntimeApp
from tui.screens.fleet import fleet_query


def rows_of(app: NodeRuntimeApp) -> list[list[str]]:
    table: DataTable[Any] = app.screen.query_one("#fleet-table", DataTable)
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


def test_the_filter_splits_into_node_side_selectors_and_words() -> None:
    assert fleet_query("site=lab ring=canary Failed") == (
        {"labels": ["ring=canary"], "site": "lab"},
        ["failed"],
    )


async def test_fleet_view_lists_every_node_and_filters() -> None:
    api = FakeApi()
    app = NodeRuntimeApp(api, clock=clock, refresh_interval_s=3600, initial_view="fleet")
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        rows = rows_of(app)
        assert len(rows) == 6
        assert {r[1] for r in rows} == {"edge-07", "edge-08", "till-01"}
        stale = [r for r in rows if r[1] == "till-01"]
        assert all(r[7].endswith("STALE") for r in stale)
        summary = str(app.screen.query_one("#fleet-summary", Static).render())
        assert "lab 2/2 up" in summary and "shop 0/1 up" in summary
        # A word filters here; site= is asked of the node.
        await pilot.press("slash", *"failed")
        await settle(pilot)
        assert [r[1] for r in rows_of(app)] == ["edge-08"]
        await pilot.press(*["backspace"] * 6, *"site=shop")
        await settle(pilot)
        assert {r[0] for r in rows_of(app)} == {"shop"}
        assert ("fleet.workloads", {"labels": [], "site": "shop"}) in api.calls
