"""Fleet: what runs where, at a hub (sites -> nodes -> workloads), from ``fleet.workloads`` and
``fleet.sites``; the same rows and filter as ``noderuntime get workloads --fleet``.

The filter box takes ``site=S``, ``node=N`` and ``key=value`` label selectors (sent to the node,
as the CLI's ``--site``/``--node``/``-l``) and plain words (matched here against every cell).
A node that is not a hub answers for its own site; a node's own views keep their local focus.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Input, Static

from noderuntime.errors import NodeRuntimeError
from tui.api import is_unknown_method
from tui.model import PHASE_STYLES, fmt_age
from tui.screens.base import FilterableView
from tui.widgets.row_table import RowTable

FLEET_COLUMNS = ("SITE", "NODE", "WORKLOAD", "PHASE", "HEALTH", "RESTARTS", "REV", "SEEN")


def fleet_query(text: str) -> tuple[dict[str, Any], list[str]]:
    """The ``fleet.workloads`` params a filter text asks for, and its plain words."""
    params: dict[str, Any] = {"labels": []}
    words: list[str] = []
    for token in text.split():
        key, eq, value = token.partition("=")
        if not eq or not key or not value:
            words.append(token.lower())
        elif key in ("site", "node"):
            params[key] = value
        else:
            params["labels"].append(token)
    return params, words


def fleet_cells(row: Mapping[str, Any], now: float) -> list[str]:
    seen = fmt_age(row.get("last_seen"), now)
    return [
        str(row.get("site") or "-"),
        str(row["node"]),
        str(row["name"]),
        str(row["phase"]),
        str(row.get("health") or "-"),
        str(row.get("restarts", 0)),
        str(row["revision"]) if row.get("revision") is not None else "-",
        f"{seen} STALE" if row.get("stale") else seen,
    ]


def site_line(sites: Sequence[Mapping[str, Any]]) -> str:
    parts = []
    for s in sites:
        up = f"{s.get('nodes_up', 0)}/{s.get('nodes_total', 0)}"
        flag = " sovereign" if s.get("sovereign") else ""
        rollouts = s.get("rollout_in_progress") or []
        ro = f" rollout {','.join(str(r.get('workload')) for r in rollouts)}" if rollouts else ""
        parts.append(f"{s.get('site') or '-'} {up} up{flag}{ro}")
    return " Sites: " + ("  ".join(parts) if parts else "none known")


class FleetScreen(FilterableView):
    TABLE_ID = "fleet-table"
    VIEW_NAME = "Fleet"
    BINDINGS = [
        Binding("slash", "filter", "Filter"),
        Binding("escape", "back", "Back", show=False),
    ]
    KEYS = (("/", "Filter"), ("Esc", "Back"))

    def __init__(self, ctx: Any) -> None:
        super().__init__(ctx)
        self.rows: list[dict[str, Any]] = []
        self.shown: list[list[str]] = []
        self.asked = ""

    def compose(self) -> ComposeResult:
        yield from self.compose_header()
        yield Static("", id="fleet-summary")
        table: DataTable[str | Text] = RowTable(id="fleet-table")
        yield table
        yield Input(placeholder="filter: site=S node=N key=value words", id="filter")
        yield from self.compose_footer()

    def on_mount(self) -> None:
        super().on_mount()
        table = self.query_one("#fleet-table", DataTable)
        for col in FLEET_COLUMNS:
            table.add_column(col, key=col)
        self.query_one("#filter", Input).display = False
        table.focus()

    def load(self) -> None:
        self.fetch()

    @work(exclusive=True, group="fleet", exit_on_error=False)
    async def fetch(self) -> None:
        summary = self.query_one("#fleet-summary", Static)
        params, _ = fleet_query(self.query_text)
        try:
            rows = await self.ctx.api.call("fleet.workloads", params)
            sites = await self.ctx.api.call("fleet.sites")
        except NodeRuntimeError as exc:
            if is_unknown_method(exc):
                summary.update("this node's API has no fleet view (an older version)")
            else:
                summary.update(Text(str(exc), style="bold red"))
            self.add_class("-loaded")
            return
        self.rows = list(rows)
        self.asked = self.query_text
        summary.update(site_line(sites), layout=False)
        self.render_rows()
        self.add_class("-loaded")

    def render_rows(self, *, top: bool = False) -> None:
        if self.query_text != self.asked and "=" in self.query_text + self.asked:
            self.fetch()  # site/node/labels are answered by the node
            return
        _, words = fleet_query(self.query_text)
        now = self.ctx.clock()
        rows = []
        for r in self.rows:
            cells = fleet_cells(r, now)
            if all(any(w in c.lower() for c in cells) for w in words):
                rows.append(cells)
        if rows == self.shown:
            return
        self.shown = rows
        table: DataTable[str | Text] = self.query_one("#fleet-table", DataTable)
        cursor = table.cursor_row
        # Refilled whole (rows are keyed by node and workload, no single column holds that).
        table.clear()
        for cells in rows:
            t = [Text(c) for c in cells]  # Text: no markup parsing of names from nodes
            t[3] = Text(cells[3], style=PHASE_STYLES.get(cells[3], ""))
            if cells[7].endswith("STALE"):
                t[7] = Text(cells[7], style="bold yellow")
            table.add_row(*t, key=f"{cells[1]}/{cells[2]}")
        if rows:
            table.move_cursor(row=min(cursor, len(rows) - 1), animate=False)
