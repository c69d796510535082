"""Events: what changed, when and by whom: runtime events, local and synced signed changes."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Input, Static

from noderuntime.errors import NodeRuntimeError
from tui.model import EVENT_COLUMNS, event_rows
from tui.screens.base import FilterableView

EVENTS_LIMIT = 200
HISTORY_LIMIT = 200
ORIGIN_STYLES = {"runtime": "", "local": "yellow", "synced": "cyan"}


class EventsScreen(FilterableView):
    TABLE_ID = "events-table"
    VIEW_NAME = "Events"
    BINDINGS = [
        Binding("slash", "filter", "Filter"),
        Binding("escape", "back", "Back", show=False),
    ]

    def __init__(self, ctx: Any) -> None:
        super().__init__(ctx)
        self.events: list[dict[str, Any]] = []
        self.history: list[dict[str, Any]] = []
        self.shown: list[tuple[str, str, str, str]] = []

    def compose(self) -> ComposeResult:
        yield from self.compose_header()
        yield Static("", id="events-summary")
        table: DataTable[str | Text] = DataTable(id="events-table", cursor_type="row")
        yield table
        yield Input(placeholder="filter: words to match, e.g. local, web, technician", id="filter")
        yield from self.compose_footer()

    def on_mount(self) -> None:
        super().on_mount()
        table = self.query_one("#events-table", DataTable)
        table.add_columns(*EVENT_COLUMNS)
        self.query_one("#filter", Input).display = False
        table.focus()

    def load(self) -> None:
        self.fetch()

    @work(exclusive=True, group="events", exit_on_error=False)
    async def fetch(self) -> None:
        try:
            self.events = list(await self.ctx.api.call("events.list", {"limit": EVENTS_LIMIT}))
            self.history = list(await self.ctx.api.call("history.list", {"limit": HISTORY_LIMIT}))
        except NodeRuntimeError as exc:
            self.notify(str(exc), title="Events", severity="error")
            return
        self.render_rows()

    def render_rows(self) -> None:
        rows = event_rows(self.events, self.history, self.ctx.node_id, self.query_text)
        summary = (
            f" {len(rows)} entries: runtime events, and signed changes made here (local) "
            "or received (synced)"
        )
        if self.query_text:
            summary += f"  filter: {self.query_text}"
        self.query_one("#events-summary", Static).update(summary)
        cells = [r.cells() for r in rows]
        if cells == self.shown:
            self.add_class("-loaded")
            return
        self.shown = list(cells)
        table: DataTable[str | Text] = self.query_one("#events-table", DataTable)
        table.clear()
        for r in rows:
            time_, origin, who, what = r.cells()
            # Text, not str: DataTable would parse a message with brackets in it as markup.
            origin_cell = Text(origin, style=ORIGIN_STYLES.get(origin, ""))
            table.add_row(Text(time_), origin_cell, Text(who), Text(what))
        self.add_class("-loaded")
