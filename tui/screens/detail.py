"""Workload detail (``d``): effective spec with where each field came from, events, probes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Static

from noderuntime.errors import NodeRuntimeError
from tui import actions
from tui.context import TuiContext
from tui.model import (
    HEALTH_STYLES,
    PHASE_STYLES,
    fmt_age,
    fmt_clock,
    placement_text,
    short_hash,
    spec_fields,
    spec_state,
)
from tui.problems import reason_line, split_reason
from tui.screens.base import BaseView
from tui.widgets.row_table import RowTable

SOURCE_STYLES = {"node": "bold yellow", "site": "cyan", "fleet": ""}


def since(view: Mapping[str, Any]) -> float | None:
    """Since when the workload is as it is: a recreate keeps the phase (Running, so the
    node's ``since`` stays) but its running container started anew."""
    value = view.get("since")
    started = [
        c["started_at"]
        for c in view.get("containers") or []
        if c.get("state") == "running" and isinstance(c.get("started_at"), int | float)
    ]
    if started and (not isinstance(value, int | float) or max(started) > value):
        return float(max(started))
    return float(value) if isinstance(value, int | float) else None


def summary_text(view: Mapping[str, Any], now: float) -> Text:
    t = Text(no_wrap=False)
    t.append(f"{view.get('name', '?')}  ", style="bold")
    phase = str(view.get("phase") or "Pending")
    t.append(phase, style=PHASE_STYLES.get(phase, ""))
    health = view.get("health")
    if health:
        t.append("  health ")
        t.append(str(health), style=HEALTH_STYLES.get(str(health), ""))
    t.append(f"  restarts {view.get('restarts', 0)}  since {fmt_age(since(view), now)}")
    t.append(f"  want {'run' if view.get('enabled', True) else 'stop'}")
    t.append(
        f"  spec {short_hash(view.get('spec_hash'))} ({spec_state(view)})",
    )
    message = view.get("message")
    if message:
        # The fix first, then the cause, then the raw error: at 80 columns the first lines
        # are what shows.
        for line in split_reason(str(message)).lines():
            label, sep, rest = line.partition(": ")
            if sep and label in ("Fix", "Why", "Error"):
                t.append(f"\n{label}: ", style="bold")
                t.append(rest, style="bold" if label == "Fix" else "italic")
            else:
                t.append(f"\n{line}", style="italic")
    placed = placement_text(view.get("placement"), now)
    if placed:
        t.append(f"\n{placed}")
    for c in view.get("containers") or []:
        t.append(
            f"\ncontainer {str(c.get('id', ''))[:12]} {c.get('state', '?')}"
            f" image {c.get('image', '?')}"
            + (f" exit {c['exit_code']}" if c.get("exit_code") is not None else "")
            + (f" ip {c['ip_address']}" if c.get("ip_address") else "")
        )
    for p in view.get("problems") or []:
        t.append(f"\n! {p}", style="bold red")
    return t


def event_cells(view: Mapping[str, Any]) -> list[tuple[str, str | Text, str]]:
    """Events newest first; health-probe results (kind health/probe) stand out."""
    out: list[tuple[str, str | Text, str]] = []
    for e in reversed(list(view.get("events") or [])):
        kind = str(e.get("kind", ""))
        style = "bold" if kind in ("health", "probe") else ""
        message = reason_line(str(e.get("message", "")))
        out.append((fmt_clock(e.get("ts")), Text(kind, style=style), message))
    for p in reversed(list(view.get("probes") or [])):
        ok = bool(p.get("ok"))
        out.append(
            (
                fmt_clock(p.get("ts")),
                Text("probe", style="green" if ok else "bold red"),
                ("ok" if ok else "FAILED")
                + (f" in {p['duration_ms']:g} ms" if p.get("duration_ms") is not None else "")
                + (f": {p['detail']}" if p.get("detail") else ""),
            )
        )
    out.sort(key=lambda r: r[0], reverse=True)
    return out


class WorkloadDetailScreen(BaseView):
    VIEW_NAME = "Workload"
    BINDINGS = [
        Binding("escape", "app.go_back", "Back"),
        Binding("l", "logs", "Logs"),
        Binding("r", "restart", "Restart"),
        Binding("s", "stop", "Stop"),
        Binding("t", "start", "Start"),
        Binding("o", "override", "Override"),
        Binding("x", "remove_override", "Rm override"),
    ]
    KEYS = (
        ("Esc", "Back"),
        ("l", "Logs"),
        ("r", "Restart"),
        ("s", "Stop"),
        ("t", "Start"),
        ("o", "Override"),
        ("x", "Rm override"),
    )

    def __init__(self, ctx: TuiContext, name: str) -> None:
        super().__init__(ctx)
        self.workload = name
        self.VIEW_NAME = f"Workload {name}"
        self.view: dict[str, Any] | None = None
        self.shown: tuple[Any, ...] = ()
        self.message_chars = 0

    def compose(self) -> ComposeResult:
        yield from self.compose_header()
        yield Static("loading...", id="detail-summary")
        spec: DataTable[str | Text] = RowTable(id="detail-spec")
        spec.border_title = "Effective spec (FROM: fleet < site < node)"
        yield spec
        events = RowTable(id="detail-events")
        events.border_title = "Events and health probes"
        yield events
        yield from self.compose_footer()

    def on_mount(self) -> None:
        super().on_mount()
        spec = self.query_one("#detail-spec", DataTable)
        spec.add_columns("FIELD", "VALUE", "FROM")
        spec.focus()

    def load(self) -> None:
        self.fetch()

    @work(exclusive=True, group="detail", exit_on_error=False)
    async def fetch(self) -> None:
        try:
            view = await self.ctx.api.call("workloads.get", {"name": self.workload})
        except NodeRuntimeError as exc:
            self.query_one("#detail-summary", Static).update(Text(str(exc), style="bold red"))
            return
        self.view = dict(view)
        self.show(self.view)

    def show(self, view: Mapping[str, Any]) -> None:
        self.query_one("#detail-summary", Static).update(summary_text(view, self.ctx.clock()))
        fields = spec_fields(view, self.ctx.override_fields)
        events = event_cells(view)
        key = (
            tuple(fields),
            tuple((a, b.plain if isinstance(b, Text) else b, c) for a, b, c in events),
        )
        if key == self.shown:
            return
        self.shown = key
        spec: DataTable[str | Text] = self.query_one("#detail-spec", DataTable)
        row = spec.cursor_row
        spec.clear()
        for f in fields:
            spec.add_row(
                f.path, f.value, Text(f.source, style=SOURCE_STYLES.get(f.source, "")), key=f.path
            )
        if 0 <= row < spec.row_count:
            spec.move_cursor(row=row, animate=False)
        table: DataTable[str | Text] = self.query_one("#detail-events", DataTable)
        # MESSAGE takes what TIME and KIND leave and wraps at word boundaries in it.
        message_chars = max(20, self.size.width - 19 - 10 - 3 * 2 - 4)
        table.clear(columns=message_chars != self.message_chars)
        if message_chars != self.message_chars:
            self.message_chars = message_chars
            table.add_column("TIME (UTC)")
            table.add_column("KIND")
            table.add_column("MESSAGE", width=message_chars)
        for time_, kind, message in events:
            table.add_row(time_, kind, Text(message), height=None)
        self.add_class("-loaded")

    def selected_field(self) -> tuple[str, str] | None:
        """(field, source) of the spec row under the cursor."""
        if self.view is None:
            return None
        fields = spec_fields(self.view, self.ctx.override_fields)
        row = self.query_one("#detail-spec", DataTable).cursor_row
        if 0 <= row < len(fields):
            return fields[row].path, fields[row].source
        return None

    def action_logs(self) -> None:
        from tui.screens.logs import LogsScreen

        self.app.push_screen(LogsScreen(self.ctx, self.workload))

    def action_restart(self) -> None:
        actions.confirm(self, self.ctx, actions.restart(self.workload, self.view), self.load)

    def action_stop(self) -> None:
        actions.confirm(self, self.ctx, actions.stop(self.workload), self.load)

    def action_start(self) -> None:
        actions.confirm(self, self.ctx, actions.start(self.workload), self.load)

    def action_override(self) -> None:
        field = ""
        value = ""
        sel = self.selected_field()
        if sel is not None and self.view is not None:
            for f in spec_fields(self.view, self.ctx.override_fields):
                if f.path == sel[0] and f.overridable:
                    field, value = f.path, f.value
        actions.edit_override(self, self.ctx, self.workload, self.load, field=field, value=value)

    def action_remove_override(self) -> None:
        sel = self.selected_field()
        if sel is None:
            return
        field, source = sel
        if source != "node":
            self.notify(
                f"{field} is not overridden on this node (it comes from {source})",
                severity="warning",
            )
            return
        actions.confirm(self, self.ctx, actions.remove_override(self.workload, field), self.load)
