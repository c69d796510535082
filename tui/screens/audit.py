"""Audit: the node's tamper-evident audit trail, newest first, and whether its chain holds.

Read-only: the technician sees who did what (logins, changes, remote log reads, refusals);
nothing here changes the node. The chain is verified when the view opens and on ``v``.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Input, Static

from noderuntime.errors import NodeRuntimeError
from tui.audit_model import AUDIT_COLUMNS, audit_rows, audit_summary, verdict_text
from tui.screens.base import FilterableView
from tui.widgets.table_sync import scroll_to_top, sync_table

AUDIT_LIMIT = 200


class AuditScreen(FilterableView):
    TABLE_ID = "audit-table"
    VIEW_NAME = "Audit"
    BINDINGS = [
        Binding("slash", "filter", "Filter"),
        Binding("v", "verify", "Verify chain"),
        Binding("escape", "back", "Back", show=False),
    ]

    def __init__(self, ctx: Any) -> None:
        super().__init__(ctx)
        self.entries: list[dict[str, Any]] = []
        self.head = 0
        self.verdict: dict[str, Any] | None = None

    def compose(self) -> ComposeResult:
        yield from self.compose_header()
        yield Static("", id="audit-verdict")
        yield Static("", id="audit-summary")
        table: DataTable[str | Text] = DataTable(id="audit-table", cursor_type="row")
        yield table
        yield Input(placeholder="filter: words to match, e.g. login failed, uid:0", id="filter")
        yield from self.compose_footer()

    def on_mount(self) -> None:
        super().on_mount()
        table = self.query_one("#audit-table", DataTable)
        for col in AUDIT_COLUMNS:
            table.add_column(col, key=col)
        self.query_one("#filter", Input).display = False
        table.focus()
        self.verify()

    def load(self) -> None:
        self.fetch()

    def action_verify(self) -> None:
        self.verify()

    @work(exclusive=True, group="audit", exit_on_error=False)
    async def fetch(self) -> None:
        try:
            page = await self.ctx.api.call("audit.list", {"limit": AUDIT_LIMIT})
        except NodeRuntimeError as exc:
            self.query_one("#audit-summary", Static).update(Text(str(exc), style="bold red"))
            self.add_class("-loaded")
            return
        self.entries = list(page.get("entries") or [])
        self.head = int(page.get("head") or 0)
        self.render_rows()

    @work(exclusive=True, group="audit-verify", exit_on_error=False)
    async def verify(self) -> None:
        try:
            self.verdict = dict(await self.ctx.api.call("audit.verify"))
        except NodeRuntimeError as exc:
            self.notify(str(exc), title="Audit", severity="error")
            return
        self.show_verdict()

    def show_verdict(self) -> None:
        text, bad = verdict_text(self.verdict)
        self.query_one("#audit-verdict", Static).update(
            Text(f" {text}", style="bold red" if bad else "green")
        )

    def render_rows(self, *, top: bool = False) -> None:
        self.show_verdict()
        rows = audit_rows(self.entries, self.query_text)
        self.query_one("#audit-summary", Static).update(
            audit_summary(len(rows), self.head, self.query_text)
        )
        styled = []
        for key, cells, alert in rows:
            texts = [Text(c) for c in cells]
            if alert:
                texts[2].stylize("bold red")
            styled.append((key, texts))
        table: DataTable[str | Text] = self.query_one("#audit-table", DataTable)
        sync_table(table, styled, key_column=AUDIT_COLUMNS[0])
        if top:
            scroll_to_top(table)
        self.add_class("-loaded")
