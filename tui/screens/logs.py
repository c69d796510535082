"""Live logs of one workload: follow, pause, search, scroll-back over a bounded buffer."""

from __future__ import annotations

import asyncio
from collections import deque

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Input, Static

from noderuntime.errors import DaemonNotRunningError, NodeRuntimeError
from tui import actions
from tui.context import TuiContext
from tui.logbuffer import DEFAULT_CAPACITY, LogBuffer
from tui.logruns import RunDivider, run_starts
from tui.screens.base import BaseView
from tui.widgets.log_view import LogView

# Lines asked for when the stream (re)opens: enough scroll-back without a long wait.
TAIL_LINES = 50_000
# Incoming lines are painted in batches at most this often.
FLUSH_INTERVAL_S = 0.1
RECONNECT_MAX_S = 5.0


class LogsScreen(BaseView):
    VIEW_NAME = "Logs"
    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("f", "follow", "Follow"),
        Binding("p,space", "pause", "Pause"),
        Binding("slash", "search", "Search"),
        Binding("n", "next_match", "Next"),
        Binding("N", "prev_match", "Prev"),
        Binding("g,home", "top", "Top", show=False),
        Binding("G,end", "bottom", "Bottom", show=False),
        Binding("r", "restart", "Restart", show=False),
    ]
    KEYS = (
        ("Esc", "Back"),
        ("/", "Search"),
        ("n/N", "Next/prev"),
        ("p", "Pause"),
        ("f", "Follow"),
        ("g/G", "Top/end"),
        ("r", "Restart"),
    )

    def __init__(
        self,
        ctx: TuiContext,
        name: str,
        *,
        capacity: int = DEFAULT_CAPACITY,
        tail: int = TAIL_LINES,
    ) -> None:
        super().__init__(ctx)
        self.workload = name
        self.VIEW_NAME = f"Logs {name}"
        self.buffer = LogBuffer(capacity)
        self.tail = tail
        self.paused = False
        # Lines received but not painted yet (all of them while paused). Capped like the buffer:
        # past that, the oldest are dropped and counted, as the buffer would drop them anyway.
        self.pending: deque[str] = deque(maxlen=capacity)
        self.pending_dropped = 0
        self.state = "connecting"
        self.search_text = ""
        self.matches = 0
        self.status_text = ""
        # Times and a divider per container start (from the workload's events).
        self.runs = RunDivider()

    def compose(self) -> ComposeResult:
        yield from self.compose_header()
        yield LogView(self.buffer, id="log-view")
        yield Static("", id="log-status")
        yield Input(placeholder="search (Enter: find, n/N: next/previous)", id="log-search")
        yield from self.compose_footer()

    @property
    def log_view(self) -> LogView:
        return self.query_one(LogView)

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#log-search", Input).display = False
        self.log_view.focus()
        self.set_interval(FLUSH_INTERVAL_S, self.flush)
        self.stream_logs()

    def load(self) -> None:
        self.show_status()
        self.load_starts()

    @work(exclusive=True, group="log-starts", exit_on_error=False)
    async def load_starts(self) -> None:
        """The container's starts, for the dividers (asked again with every refresh)."""
        try:
            view = await self.ctx.api.call("workloads.get", {"name": self.workload})
        except NodeRuntimeError:
            return  # no dividers until the node answers; the lines still come
        self.runs.set_starts(run_starts(view.get("events") or []))

    # --- streaming ---------------------------------------------------------------------------

    @work(exclusive=True, group="logs", exit_on_error=False)
    async def stream_logs(self) -> None:
        failures = 0
        dropped = False
        while True:
            self.state = "connecting"
            first = True
            try:
                params = {
                    "name": self.workload,
                    "follow": True,
                    "tail": self.tail,
                    "timestamps": True,
                }
                async for line in self.ctx.api.stream("workloads.logs", params):
                    if first:
                        # A fresh stream re-sends the tail: start over rather than duplicate.
                        self.buffer.clear()
                        self.runs.reset()
                        self.pending.clear()
                        self.pending_dropped = 0
                        self.state = "streaming (reconnected)" if dropped else "streaming"
                        first = False
                        failures = 0
                    self.hold(str(line))
                self.state = "ended (container stopped?)"
                failures = 0
            except NodeRuntimeError as exc:
                # The client turns every broken stream (reset, closed, oversized or garbled
                # line) into one of these: say so and open the stream again.
                failures += 1
                dropped = True
                why = "lost the node" if isinstance(exc, DaemonNotRunningError) else "no logs"
                if not first:
                    self.notify(f"{exc}; reconnecting", title="Log stream lost", severity="warning")
                self.state = f"{why}: {exc}"
            delay = min(RECONNECT_MAX_S, 0.5 * 2 ** min(failures, 4))
            if failures:
                self.state = f"reconnecting in {delay:g}s (try {failures}): {self.state}"
            self.show_status()
            await asyncio.sleep(delay)

    def hold(self, line: str) -> None:
        """Keep a received line until the next flush; the oldest go once the cap is reached."""
        if len(self.pending) == self.pending.maxlen:
            self.pending_dropped += 1
        self.pending.append(line)

    def flush(self) -> None:
        """Move received lines into the buffer and repaint (batched, not per line)."""
        if self.pending and not self.paused:
            lines = self.runs.annotate(self.pending)
            self.pending.clear()
            self.buffer.extend(lines)
            self.log_view.lines_changed()
        self.show_status()

    def feed(self, lines: list[str]) -> None:
        """Add lines as if streamed (tests and benchmarks)."""
        assert self.pending.maxlen is not None
        self.pending_dropped += max(0, len(self.pending) + len(lines) - self.pending.maxlen)
        self.pending.extend(lines)
        self.flush()

    def show_status(self) -> None:
        view = self.log_view
        mode = "PAUSED" if self.paused else ("following" if view.follow else "scrolling")
        parts = [
            f" {mode}",
            f"{len(self.buffer)} lines",
        ]
        if self.paused and self.pending:
            parts.append(f"+{len(self.pending)} new")
        if self.buffer.dropped:
            parts.append(f"{self.buffer.dropped} oldest dropped")
        if self.pending_dropped:
            parts.append(f"{self.pending_dropped} dropped while paused")
        if self.search_text:
            self.matches = self.buffer.count(self.search_text)  # indexed: new lines only
            parts.append(f"/{self.search_text}: {self.matches} lines match")
        parts.append(self.state)
        status = " | ".join(parts)
        if status != self.status_text:
            # Called on every flush tick: repaint only when it changed, and without a layout
            # pass (the status line is one line high, app.tcss).
            self.status_text = status
            self.query_one("#log-status", Static).update(status, layout=False)

    # --- keys --------------------------------------------------------------------------------

    def action_follow(self) -> None:
        view = self.log_view
        view.follow = not view.follow
        if view.follow:
            view.scroll_end(animate=False, immediate=True, x_axis=False)
        self.show_status()

    def action_pause(self) -> None:
        self.paused = not self.paused
        self.flush()

    def action_top(self) -> None:
        self.log_view.follow = False
        self.log_view.scroll_home(animate=False, immediate=True)
        self.show_status()

    def action_bottom(self) -> None:
        self.log_view.follow = True
        self.log_view.scroll_end(animate=False, immediate=True, x_axis=False)
        self.show_status()

    def action_search(self) -> None:
        box = self.query_one("#log-search", Input)
        box.display = True
        box.value = self.search_text
        box.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id != "log-search":
            return
        self.search_text = event.value
        self.log_view.set_query(self.search_text)
        event.input.display = False
        self.log_view.focus()
        # The first search indexes the buffer once (a few ms for 50,000 lines); the index then
        # follows new lines, so n/N and the count below do not scan it again.
        if self.search_text:
            self.action_prev_match()  # newest match first, like less ?pattern from the end
        self.show_status()

    def _jump(self, backward: bool) -> None:
        if not self.search_text:
            self.notify("no search; press / to search", severity="warning")
            return
        view = self.log_view
        start = (
            view.current
            if view.current is not None
            else (len(self.buffer) if backward else view.top_line - 1)
        )
        index = self.buffer.find(self.search_text, start, backward=backward)
        if index is None:
            self.notify(f"{self.search_text!r} not found", severity="warning")
            return
        if index <= start if not backward else index >= start:
            # Like less: say so when the search went round the end.
            where = "the top" if not backward else "the bottom"
            self.notify(f"search wrapped around: continued from {where}", timeout=2)
        view.go_to(index)
        self.show_status()

    def action_next_match(self) -> None:
        self._jump(backward=False)

    def action_prev_match(self) -> None:
        self._jump(backward=True)

    def action_back(self) -> None:
        box = self.query_one("#log-search", Input)
        if box.display:
            box.display = False
            self.log_view.focus()
            return
        self.app.call_later(self.app.run_action, "go_back")

    def action_restart(self) -> None:
        actions.confirm(self, self.ctx, actions.restart(self.workload), self.show_status)
