"""History a technician can read: people's actions first (restarts, overrides, loads, changes
signed by operators), then the nodes' own; the node's status writes only on ``a``."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Static

from noderuntime.errors import NodeRuntimeError
from tui.offline_model import fmt_when, history_rows
from tui.screens.base import BaseView

HISTORY_LIMIT = 200
EVENTS_LIMIT = 200
HISTORY_COLUMNS = ("TIME", "WHO", "WHAT")


class HistoryScreen(BaseView):
    VIEW_NAME = "History"
    BINDINGS = [Binding("a", "toggle_status", "All/people")]
    KEYS = (("a", "Status writes on/off"), ("Esc", "Back"))

    def __init__(self, ctx: Any) -> None:
        super().__init__(ctx)
        self.with_status = False
        self.shown: list[list[str]] = []

    def compose(self) -> ComposeResult:
        yield from self.compose_header()
        yield Static("", id="history-summary")
        table: DataTable[str | Text] = DataTable(id="history-table", cursor_type="row")
        yield table
        yield from self.compose_footer()

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#history-table", DataTable).add_columns(*HISTORY_COLUMNS)
        self.query_one("#history-table", DataTable).focus()

    def load(self) -> None:
        self.fetch()

    def action_toggle_status(self) -> None:
        self.with_status = not self.with_status
        self.fetch()

    @work(exclusive=True, group="history", exit_on_error=False)
    async def fetch(self) -> None:
        api = self.ctx.api
        try:
            history = await api.call(
                "history.list", {"limit": HISTORY_LIMIT, "status": self.with_status}
            )
            events = await api.call("events.list", {"limit": EVENTS_LIMIT})
        except NodeRuntimeError as exc:
            self.query_one("#history-summary", Static).update(Text(str(exc), style="bold red"))
            self.add_class("-loaded")
            return
        rows = history_rows(history, events)
        people = sum(r.person for r in rows)
        hidden = "" if self.with_status else "; status writes hidden (a: show)"
        self.query_one("#history-summary", Static).update(
            f" {people} actions by people, then {len(rows) - people} by nodes{hidden}"
        )
        cells = [[fmt_when(r.ts), r.who, r.what] for r in rows]
        if cells != self.shown:
            self.shown = cells
            table: DataTable[str | Text] = self.query_one("#history-table", DataTable)
            table.clear()
            for r, (time_, who, what) in zip(rows, cells, strict=True):
                style = "bold" if r.person else "dim"
                table.add_row(Text(time_), Text(who, style=style), Text(what))
        self.add_class("-loaded")
