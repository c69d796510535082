"""The Peers view against real enrolled nodes: a hub and a node that dials it over a leaf link.

Real daemons, real nats-servers, real enrolment; the TUI runs on the node and is driven by Pilot.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from textual.widgets import DataTable
from tui_helpers import screen_text, settle, wait_until

from noderuntime.api.client import ApiClient
from tests.sync.fleet_harness import FleetNode, hub_and_node
from tui.app import NodeRuntimeApp

pytestmark = [pytest.mark.podman, pytest.mark.slow, pytest.mark.usefixtures("busybox_image")]

CONVERGE_S = 60.0


@pytest.fixture(scope="module")
def fleet() -> Iterator[tuple[FleetNode, FleetNode]]:
    with hub_and_node() as pair:
        yield pair


def peer_cells(app: NodeRuntimeApp, peer: str) -> list[str]:
    table = app.screen.query_one("#peers-table", DataTable)
    for index in range(table.row_count):
        row = [str(c) for c in table.get_row_at(index)]
        if row[0] == peer:
            return row
    return []


async def test_peers_view_shows_the_hub_of_an_enrolled_node(
    fleet: tuple[FleetNode, FleetNode],
) -> None:
    hub, node = fleet
    app = NodeRuntimeApp(
        ApiClient(node.data_dir / "api.sock", timeout_s=10),
        refresh_interval_s=0.5,
        initial_view="peers",
    )
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        await wait_until(
            pilot,
            lambda: peer_cells(app, hub.node_id)[3:4] == ["up"],
            what="hub up in the peers table",
            limit_s=CONVERGE_S,
        )
        cells = peer_cells(app, hub.node_id)
        assert cells[1:3] == ["hq", "hub"], cells
        await wait_until(
            pilot, lambda: "Sync connected" in screen_text(pilot), what="sync connected"
        )
        text = screen_text(pilot)
        assert "sync not configured" not in text
        assert "Rejected updates: none" in text
        # The overview's peers panel agrees.
        await pilot.press("1")
        await settle(pilot)
        await wait_until(
            pilot,
            lambda: any(
                hub.node_id in line and "up" in line for line in screen_text(pilot).splitlines()
            ),
            what="hub on the overview",
        )
        # The hub goes away: the node's view says so without a restart of the console.
        await asyncio.to_thread(hub.stop)
        await pilot.press("3")
        await wait_until(
            pilot,
            lambda: peer_cells(app, hub.node_id)[3:4] == ["DOWN"],
            what="hub down in the peers table",
            limit_s=CONVERGE_S,
        )
