"""Workloads: every workload with desired vs observed state; filter, describe, logs, actions."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Input, Static

from noderuntime.errors import NodeRuntimeError
from tui import actions
from tui.model import (
    HEALTH_STYLES,
    PHASE_STYLES,
    SORT_NAME,
    SORT_PROBLEMS,
    WORKLOAD_COLUMNS,
    WorkloadRow,
    phase_counts,
    workload_rows,
)
from tui.screens.base import FilterableView
from tui.widgets.row_table import RowTable
from tui.widgets.table_sync import cursor_key, scroll_to_top, sync_table

# Columns shown by terminal width: MESSAGE always (the reason is what a technician needs),
# taking what the others leave. At 80 columns that is about 30 characters.
NARROW_COLUMNS = ("NAME", "WANT", "PHASE", "RESTARTS", "SINCE", "MESSAGE")
MEDIUM_COLUMNS = ("NAME", "WANT", "PHASE", "HEALTH", "RESTARTS", "SINCE", "MESSAGE")
MEDIUM_MIN_WIDTH = 110
WIDE_MIN_WIDTH = 150
MIN_MESSAGE_WIDTH = 12
CELL_PADDING = 2  # DataTable's, one each side
SCROLLBAR_WIDTH = 2


def columns_for(width: int) -> tuple[str, ...]:
    if width >= WIDE_MIN_WIDTH:
        return WORKLOAD_COLUMNS
    if width >= MEDIUM_MIN_WIDTH:
        return MEDIUM_COLUMNS
    return NARROW_COLUMNS


def message_width(rows: list[WorkloadRow], columns: tuple[str, ...], width: int) -> int:
    """What the other columns leave of ``width`` for MESSAGE."""
    index = {c: i for i, c in enumerate(WORKLOAD_COLUMNS)}
    used = SCROLLBAR_WIDTH + CELL_PADDING
    for col in columns:
        if col == "MESSAGE":
            continue
        i = index[col]
        used += max([len(col), *(len(r.cells()[i]) for r in rows)]) + CELL_PADDING
    return max(MIN_MESSAGE_WIDTH, width - used)


def styled_cells(row: WorkloadRow, columns: tuple[str, ...], message_chars: int) -> list[Text]:
    # Text for every cell: DataTable parses a plain string as markup (slower, and a name or
    # image with brackets in it would be mangled).
    styles = {
        "WANT": "bright_black" if row.want == "stop" else "",
        "PHASE": PHASE_STYLES.get(row.phase, ""),
        "HEALTH": HEALTH_STYLES.get(row.health, ""),
        "SPEC": "yellow" if row.spec == "outdated" else "",
    }
    by_column = dict(zip(WORKLOAD_COLUMNS, row.cells(), strict=True))
    cells = []
    for col in columns:
        text = Text(by_column[col], style=styles.get(col, ""), no_wrap=True)
        if col == "MESSAGE" and len(text) > message_chars:
            text.truncate(message_chars, overflow="ellipsis")
        cells.append(text)
    return cells


class WorkloadsScreen(FilterableView):
    TABLE_ID = "workloads-table"
    VIEW_NAME = "Workloads"
    BINDINGS = [
        Binding("slash", "filter", "Filter"),
        Binding("d,enter", "describe", "Describe"),
        Binding("l", "logs", "Logs"),
        Binding("r", "restart", "Restart"),
        Binding("s", "stop", "Stop"),
        Binding("t", "start", "Start"),
        Binding("o", "override", "Override"),
        Binding("N", "sort", "Sort"),
        Binding("escape", "back", "Back", show=False),
    ]
    KEYS = (
        ("Enter", "Describe"),
        ("l", "Logs"),
        ("/", "Filter"),
        ("r", "Restart"),
        ("s", "Stop"),
        ("t", "Start"),
        ("o", "Override"),
        ("N", "By name"),
    )

    def __init__(self, ctx: Any) -> None:
        super().__init__(ctx)
        self.views: list[dict[str, Any]] = []
        self.shown: list[tuple[str, ...]] = []
        self.summary = ""
        self.loaded = False
        self.sort = SORT_PROBLEMS
        self.columns: tuple[str, ...] = ()

    def compose(self) -> ComposeResult:
        yield from self.compose_header()
        yield Static("", id="workloads-summary")
        yield RowTable(id="workloads-table")
        yield Input(placeholder="filter: words to match, e.g. phase=failed", id="filter")
        yield from self.compose_footer()

    def on_mount(self) -> None:
        super().on_mount()
        table = self.query_one("#workloads-table", DataTable)
        self.query_one("#filter", Input).display = False
        table.focus()

    # --- data --------------------------------------------------------------------------------

    def load(self) -> None:
        self.fetch()

    @work(exclusive=True, group="workloads", exit_on_error=False)
    async def fetch(self) -> None:
        try:
            views = await self.ctx.api.call("workloads.list")
        except NodeRuntimeError as exc:
            self.notify(str(exc), title="Workloads", severity="error")
            return
        self.views = list(views)
        self.loaded = True
        self.render_rows()
        self.add_class("-loaded")

    def render_rows(self, *, top: bool = False) -> None:
        table: DataTable[str | Text] = self.query_one("#workloads-table", DataTable)
        rows = workload_rows(self.views, self.ctx.clock(), self.query_text, self.sort)
        counts = phase_counts(self.views)
        summary = f" {len(rows)} of {len(self.views)} workloads"
        if self.query_text:
            summary += f"  filter: {self.query_text}"
        summary += "  " + "  ".join(f"{p} {n}" for p, n in sorted(counts.items()))
        summary += "  (by name)" if self.sort == SORT_NAME else "  (problems first)"
        if summary != self.summary:
            self.summary = summary
            # One line high (app.tcss): no layout pass needed for new text.
            self.query_one("#workloads-summary", Static).update(summary, layout=False)
        width = self.size.width
        columns = columns_for(width)
        if columns != self.columns:
            table.clear(columns=True)
            for col in columns:
                table.add_column(col, key=col)
            self.columns = columns
            self.shown = []
        chars = message_width(rows, columns, width)
        cells = [(*r.cells(), str(chars)) for r in rows]
        if cells != self.shown:
            # In place: only changed cells, appeared and vanished rows; the cursor stays on
            # the selected workload.
            sync_table(
                table,
                [(row.name, styled_cells(row, columns, chars)) for row in rows],
                key_column="NAME",
                top=top,
            )
            self.shown = cells
        elif top:
            scroll_to_top(table)

    def selected(self) -> str | None:
        return cursor_key(self.query_one("#workloads-table", DataTable))

    # --- navigation and actions --------------------------------------------------------------

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_describe()

    def _pick(self) -> str | None:
        name = self.selected()
        if name is None:
            self.notify("no workload selected", severity="warning")
        return name

    def action_describe(self) -> None:
        from tui.screens.detail import WorkloadDetailScreen

        name = self._pick()
        if name:
            self.app.push_screen(WorkloadDetailScreen(self.ctx, name))

    def action_logs(self) -> None:
        from tui.screens.logs import LogsScreen

        name = self._pick()
        if name:
            self.app.push_screen(LogsScreen(self.ctx, name))

    def action_restart(self) -> None:
        if name := self._pick():
            view = next((v for v in self.views if v.get("name") == name), None)
            actions.confirm(self, self.ctx, actions.restart(name, view), self.load)

    def action_stop(self) -> None:
        if name := self._pick():
            actions.confirm(self, self.ctx, actions.stop(name), self.load)

    def action_start(self) -> None:
        if name := self._pick():
            actions.confirm(self, self.ctx, actions.start(name), self.load)

    def action_override(self) -> None:
        if name := self._pick():
            actions.edit_override(self, self.ctx, name, self.load)

    def action_sort(self) -> None:
        """Problems first (the default) <-> by name."""
        self.sort = SORT_NAME if self.sort == SORT_PROBLEMS else SORT_PROBLEMS
        label = "Problems first" if self.sort == SORT_NAME else "By name"
        self.KEYS = (*self.KEYS[:-1], ("N", label))
        self.update_footer()
        self.render_rows(top=True)
