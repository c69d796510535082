"""Peers and sync: each link and peer, last contact, bytes, rejected updates and why."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.widgets import DataTable, Static

from noderuntime.errors import NodeRuntimeError
from tui.api import is_unknown_method
from tui.model import (
    PEER_COLUMNS,
    fmt_age,
    fmt_bytes,
    link_rows,
    peer_rows,
    rejection_rows,
)
from tui.screens.base import BaseView
from tui.widgets.row_table import RowTable
from tui.widgets.table_sync import sync_table

NOT_CONFIGURED = "sync not configured on this node"


def sync_text(info: Mapping[str, Any], now: float) -> Text:
    sync = info.get("sync") or {}
    c = sync.get("counters") or {}
    t = Text()
    connected = bool(sync.get("connected"))
    t.append("Sync ", style="bold")
    t.append("connected" if connected else "OFFLINE", style="green" if connected else "bold red")
    if sync.get("connected_since"):
        t.append(f" for {fmt_age(sync.get('connected_since'), now)}")
    t.append(f"  fleet {sync.get('fleet', '?')}  via {sync.get('nats_url', '?')}")
    if sync.get("sovereign"):
        t.append("  sovereign site", style="bold")
    t.append(
        f"\nPeers {sync.get('peers_up', 0)}/{sync.get('peers_known', 0)} up"
        f"  in {fmt_bytes(c.get('bytes_in'))} ({c.get('messages_in', 0)} msgs)"
        f"  out {fmt_bytes(c.get('bytes_out'))} ({c.get('messages_out', 0)} msgs)"
        f"  applied {c.get('updates_applied', 0)}"
        f"  last anti-entropy {fmt_age(sync.get('last_anti_entropy'), now)} ago"
    )
    rejected = int(sync.get("rejected_total") or 0)
    t.append("\nRejected updates: ", style="bold")
    if not rejected:
        t.append("none")
    else:
        t.append(", ".join(f"{cause} {n}" for cause, n in rejection_rows(sync)), style="bold red")
    for line in link_rows(info.get("links") or []):
        t.append(f"\nLink {line}")
    return t


class PeersScreen(BaseView):
    VIEW_NAME = "Peers and sync"

    def compose(self) -> ComposeResult:
        yield from self.compose_header()
        yield Static("loading...", id="sync-summary")
        table: DataTable[str | Text] = RowTable(id="peers-table")
        yield table
        yield from self.compose_footer()

    def on_mount(self) -> None:
        super().on_mount()
        table = self.query_one("#peers-table", DataTable)
        for col in PEER_COLUMNS:
            table.add_column(col, key=col)
        table.focus()

    def load(self) -> None:
        self.fetch()

    @work(exclusive=True, group="peers", exit_on_error=False)
    async def fetch(self) -> None:
        summary = self.query_one("#sync-summary", Static)
        table: DataTable[str | Text] = self.query_one("#peers-table", DataTable)
        try:
            info = await self.ctx.api.call("sync.peers")
        except NodeRuntimeError as exc:
            if is_unknown_method(exc):
                self.not_configured("this node's API has no sync")
            else:
                summary.update(Text(str(exc), style="bold red"))
            return
        if not info or not info.get("enabled"):
            self.not_configured("the node is not enrolled in a fleet")
            return
        table.display = True
        summary.update(sync_text(info, self.ctx.clock()))
        rows: dict[str, list[Text]] = {}  # by peer id (a repeated id shows once, first)
        for cells in peer_rows(info.get("peers") or [], self.ctx.clock()):
            styled = [Text(cell) for cell in cells]  # Text: no markup parsing of peer data
            styled[3] = Text(cells[3], style="green" if cells[3] == "up" else "bold red")
            rows.setdefault(cells[0], styled)
        # In place, like the workloads table: last-contact ages change every refresh.
        sync_table(table, list(rows.items()), key_column=PEER_COLUMNS[0])
        self.add_class("-loaded")

    def not_configured(self, why: str) -> None:
        self.query_one("#sync-summary", Static).update(
            f"{NOT_CONFIGURED} ({why}).\n\nThis node runs on its own: every change made here is "
            "kept and will sync once it is enrolled and a link is up."
        )
        self.query_one("#peers-table", DataTable).display = False
        self.add_class("-loaded")
