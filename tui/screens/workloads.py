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
    WORKLOAD_COLUMNS,
    WorkloadRow,
    phase_counts,
    workload_rows,
)
from tui.screens.base import FilterableView
from tui.widgets.table_sync import cursor_key, sync_table


def styled_cells(row: WorkloadRow) -> list[Text]:
    # Text for every cell: DataTable parses a plain string as markup (slower, and a name or
    # image with brackets in it would be mangled).
    cells = [Text(cell) for cell in row.cells()]
    cells[1] = Text(row.want, style="bright_black" if row.want == "stop" else "")
    cells[2] = Text(row.phase, style=PHASE_STYLES.get(row.phase, ""))
    cells[3] = Text(row.health, style=HEALTH_STYLES.get(row.health, ""))
    cells[6] = Text(row.spec, style="yellow" if row.spec == "outdated" else "")
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
        Binding("escape", "back", "Back", show=False),
    ]

    def __init__(self, ctx: Any) -> None:
        super().__init__(ctx)
        self.views: list[dict[str, Any]] = []
        self.shown: list[tuple[str, ...]] = []
        self.summary = ""
        self.loaded = False

    def compose(self) -> ComposeResult:
        yield from self.compose_header()
        yield Static("", id="workloads-summary")
        table: DataTable[str | Text] = DataTable(
            id="workloads-table", cursor_type="row", zebra_stripes=False
        )
        yield table
        yield Input(placeholder="filter: words to match, e.g. phase=failed", id="filter")
        yield from self.compose_footer()

    def on_mount(self) -> None:
        super().on_mount()
        table = self.query_one("#workloads-table", DataTable)
        for col in WORKLOAD_COLUMNS:
            table.add_column(col, key=col)
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

    def render_rows(self) -> None:
        table: DataTable[str | Text] = self.query_one("#workloads-table", DataTable)
        rows = workload_rows(self.views, self.ctx.clock(), self.query_text)
        counts = phase_counts(self.views)
        summary = f" {len(rows)} of {len(self.views)} workloads"
        if self.query_text:
            summary += f"  filter: {self.query_text}"
        summary += "  " + "  ".join(f"{p} {n}" for p, n in sorted(counts.items()))
        if summary != self.summary:
            self.summary = summary
            # One line high (app.tcss): no layout pass needed for new text.
            self.query_one("#workloads-summary", Static).update(summary, layout=False)
        cells = [r.cells() for r in rows]
        if cells != self.shown:
            # In place: only changed cells, appeared and vanished rows; the cursor stays on
            # the selected workload.
            sync_table(table, [(row.name, styled_cells(row)) for row in rows], key_column="NAME")
            self.shown = cells

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
            actions.confirm(self, self.ctx, actions.restart(name), self.load)

    def action_stop(self) -> None:
        if name := self._pick():
            actions.confirm(self, self.ctx, actions.stop(name), self.load)

    def action_start(self) -> None:
        if name := self._pick():
            actions.confirm(self, self.ctx, actions.start(name), self.load)

    def action_override(self) -> None:
        if name := self._pick():
            actions.edit_override(self, self.ctx, name, self.load)
