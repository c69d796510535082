"""Events: what changed, when and by whom: runtime events, local and synced signed changes."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Input, Static

from noderuntime.errors import NodeRuntimeError
from tui.model import EVENT_COLUMNS, EventRow, event_rows
from tui.screens.base import FilterableView
from tui.widgets.row_table import RowTable
from tui.widgets.table_sync import scroll_to_top

EVENTS_LIMIT = 200
HISTORY_LIMIT = 200
ORIGIN_STYLES = {"runtime": "", "local": "yellow", "synced": "cyan"}
# Below this width ORIGIN is dropped and the date shortened, so WHAT keeps ~40 columns.
WIDE_MIN_WIDTH = 110
MAX_WHO_CHARS = 24
CELL_PADDING = 2
SCROLLBAR_WIDTH = 2
MIN_WHAT_WIDTH = 20


def event_layout(width: int, rows: list[EventRow]) -> tuple[tuple[str, ...], int]:
    """(columns shown, width of WHAT): WHAT takes what the others leave and wraps in it."""
    wide = width >= WIDE_MIN_WIDTH
    columns = EVENT_COLUMNS if wide else (EVENT_COLUMNS[0], "WHO", "WHAT")
    time_chars = 19 if wide else 14
    who_chars = min(MAX_WHO_CHARS, max([3, *(len(r.who) for r in rows)]))
    used = SCROLLBAR_WIDTH + time_chars + who_chars + CELL_PADDING * len(columns)
    if wide:
        used += len("runtime")
    return columns, max(MIN_WHAT_WIDTH, width - used)


class EventsScreen(FilterableView):
    TABLE_ID = "events-table"
    VIEW_NAME = "Events"
    BINDINGS = [
        Binding("slash", "filter", "Filter"),
        Binding("escape", "back", "Back", show=False),
    ]
    KEYS = (("Enter", "Workload"), ("/", "Filter"), ("Esc", "Back"))

    def __init__(self, ctx: Any) -> None:
        super().__init__(ctx)
        self.events: list[dict[str, Any]] = []
        self.history: list[dict[str, Any]] = []
        self.shown: list[Any] = []
        self.rows: list[EventRow] = []
        self.workload_names: list[str] = []
        self.columns: tuple[str, ...] = ()

    def compose(self) -> ComposeResult:
        yield from self.compose_header()
        yield Static("", id="events-summary")
        yield RowTable(id="events-table")
        yield Input(placeholder="filter: words to match, e.g. local, web, technician", id="filter")
        yield from self.compose_footer()

    def on_mount(self) -> None:
        super().on_mount()
        table = self.query_one("#events-table", DataTable)
        self.query_one("#filter", Input).display = False
        table.focus()

    def load(self) -> None:
        self.fetch()

    @work(exclusive=True, group="events", exit_on_error=False)
    async def fetch(self) -> None:
        try:
            self.events = list(await self.ctx.api.call("events.list", {"limit": EVENTS_LIMIT}))
            self.history = list(await self.ctx.api.call("history.list", {"limit": HISTORY_LIMIT}))
            views = await self.ctx.api.call("workloads.list")
            self.workload_names = [str(v.get("name")) for v in views if v.get("name")]
        except NodeRuntimeError as exc:
            self.notify(str(exc), title="Events", severity="error")
            return
        self.render_rows()

    def render_rows(self, *, top: bool = False) -> None:
        rows = event_rows(
            self.events, self.history, self.ctx.node_id, self.query_text, self.workload_names
        )
        summary = (
            f" {len(rows)} entries: runtime events, and signed changes made here (local) "
            "or received (synced)"
        )
        if self.query_text:
            summary += f"  filter: {self.query_text}"
        self.query_one("#events-summary", Static).update(summary)
        columns, what_chars = event_layout(self.size.width, rows)
        key = [columns, what_chars, *(r.cells() for r in rows)]
        table: DataTable[str | Text] = self.query_one("#events-table", DataTable)
        if key == self.shown:
            self.add_class("-loaded")
            if top:
                scroll_to_top(table)
            return
        self.shown = key
        self.rows = rows
        row = table.cursor_row
        wide = len(columns) == len(EVENT_COLUMNS)
        layout = (*columns, str(what_chars))
        table.clear(columns=layout != self.columns)
        if layout != self.columns:
            self.columns = layout
            for col in columns:
                table.add_column(col, key=col, width=what_chars if col == "WHAT" else None)
        for r in rows:
            time_, origin, who, what = r.cells()
            # Text, not str: DataTable would parse a message with brackets in it as markup.
            cells = [Text(time_ if wide else time_[5:])]
            if wide:
                cells.append(Text(origin, style=ORIGIN_STYLES.get(origin, "")))
            cells.append(Text(who[:MAX_WHO_CHARS]))
            # Wrapped at word boundaries in WHAT's width; the row grows to fit.
            cells.append(Text(what, overflow="fold"))
            table.add_row(*cells, height=None)
        if 0 <= row < table.row_count and not top:
            table.move_cursor(row=row, animate=False)
        self.add_class("-loaded")

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_open()

    def action_open(self) -> None:
        """Enter: the workload the row is about."""
        from tui.screens.detail import WorkloadDetailScreen

        row = self.query_one("#events-table", DataTable).cursor_row
        if not 0 <= row < len(self.rows):
            return
        name = self.rows[row].workload
        if not name:
            self.notify("this entry is not about one workload", severity="warning")
            return
        self.app.push_screen(WorkloadDetailScreen(self.ctx, name))
