"""The technician console: ``noderuntime tui``.

A Textual app that talks to the running node only through its local control API. Views are
Textual modes (overview, workloads, peers, events), each with its own stack, so ``Esc`` pops a
detail or log screen back to its list. One poll of ``node.status`` every couple of seconds keeps
the link state and the visible view fresh; a lost daemon is shown as such and the next poll
reconnects. Each poll has a deadline of its own and is never cut short by the next tick, so a
daemon that accepts connections but does not answer is shown as lost, not as "connected".
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path

from textual import work
from textual.app import App
from textual.binding import Binding
from textual.screen import Screen
from textual.worker import Worker, WorkerState

from noderuntime.api.client import ApiClient
from noderuntime.errors import NodeRuntimeError
from tui.api import NodeApi, is_unknown_method
from tui.context import TuiContext
from tui.model import OverrideFields
from tui.screens.audit import AuditScreen
from tui.screens.base import BaseView
from tui.screens.events import EventsScreen
from tui.screens.fleet import FleetScreen
from tui.screens.help import HelpScreen
from tui.screens.history import HistoryScreen
from tui.screens.images import ImagesScreen
from tui.screens.jump import JumpScreen
from tui.screens.link import LinkScreen
from tui.screens.overview import OverviewScreen
from tui.screens.peers import PeersScreen
from tui.screens.workloads import WorkloadsScreen

REFRESH_INTERVAL_S = 2.0
# A status poll not answered within this long marks the node as lost; the next tick retries on
# a fresh connection. A tick that finds the previous poll still waiting skips (no pile-up).
POLL_TIMEOUT_S = 5.0
# Views' reads give up after this long. Actions may legitimately take longer: a restart waits
# out the stop timeout.
API_TIMEOUT_S = 10.0
ACTION_TIMEOUT_S = 120.0
VIEWS: tuple[str, ...] = (
    "overview",
    "workloads",
    "peers",
    "events",
    "fleet",
    "images",
    "audit",
    "history",
    "link",
)
# Terminals with 16 colours and a font of box drawing only (the Linux console, old VTs).
LIMITED_TERMS = frozenset({"linux", "vt100", "vt102", "vt220"})
CSS_DIR = Path(__file__).parent


def limited_console(term: str | None) -> bool:
    """Is ``term`` (``$TERM``) a console that needs the 16-colour palette and plain lines?"""
    return (term or "") in LIMITED_TERMS


class NodeRuntimeApp(App[int]):
    """The TUI. ``api`` is the control-API client; ``clock`` is injectable for tests."""

    CSS_PATH = "app.tcss"
    TITLE = "noderuntime"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS = [
        Binding("1", "view('overview')", "Overview", show=False),
        Binding("2", "view('workloads')", "Workloads", show=False),
        Binding("3", "view('peers')", "Peers", show=False),
        Binding("4", "view('events')", "Events", show=False),
        Binding("5", "view('fleet')", "Fleet", show=False),
        Binding("6", "view('images')", "Images", show=False),
        Binding("7", "view('audit')", "Audit", show=False),
        Binding("8", "view('history')", "History", show=False),
        Binding("9", "view('link')", "Network and fleet", show=False),
        Binding("colon", "jump", "Jump"),
        Binding("question_mark", "help", "Help"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(
        self,
        api: NodeApi,
        *,
        write_api: NodeApi | None = None,
        clock: Callable[[], float] = time.time,
        refresh_interval_s: float = REFRESH_INTERVAL_S,
        poll_timeout_s: float = POLL_TIMEOUT_S,
        initial_view: str = "overview",
        linux_console: bool = False,
    ) -> None:
        # The Linux console: ANSI colours as they are (red, yellow, green by severity, not
        # truecolour mapped to the nearest of 16, which made Pending red and Failed magenta),
        # and box drawing the console's font has (console.tcss).
        super().__init__(
            css_path=[CSS_DIR / "app.tcss", CSS_DIR / "console.tcss"] if linux_console else None,
            ansi_color=True if linux_console else None,
        )
        self.linux_console = linux_console
        if linux_console:
            self.theme = "ansi-dark"
        self.ctx = TuiContext(api=api, write_api=write_api, clock=clock)
        self.refresh_interval_s = refresh_interval_s
        self.poll_timeout_s = poll_timeout_s
        self._poll_worker: Worker[None] | None = None
        # The node's override fields are asked for once, with the first status that arrives.
        self._ask_override_fields = True
        self.initial_view = initial_view
        self.view_history: list[str] = []
        ctx = self.ctx
        self.add_mode("overview", lambda: OverviewScreen(ctx))
        self.add_mode("workloads", lambda: WorkloadsScreen(ctx))
        self.add_mode("peers", lambda: PeersScreen(ctx))
        self.add_mode("events", lambda: EventsScreen(ctx))
        self.add_mode("fleet", lambda: FleetScreen(ctx))
        self.add_mode("images", lambda: ImagesScreen(ctx))
        self.add_mode("audit", lambda: AuditScreen(ctx))
        self.add_mode("history", lambda: HistoryScreen(ctx))
        self.add_mode("link", lambda: LinkScreen(ctx))

    async def on_mount(self) -> None:
        await self.switch_mode(self.initial_view)
        self.poll()
        self.set_interval(self.refresh_interval_s, self.poll)

    async def on_unmount(self) -> None:
        await self.ctx.api.close()
        if self.ctx.write_api is not None:
            await self.ctx.write_api.close()

    # --- live refresh ------------------------------------------------------------------------

    def poll(self) -> None:
        """Start a status poll, unless the previous one is still within its deadline."""
        if self._poll_worker is not None and not self._poll_worker.is_finished:
            return
        self._poll_worker = self._poll()

    @work(group="poll", exit_on_error=False)
    async def _poll(self) -> None:
        ctx = self.ctx
        was_connected = ctx.connected
        try:
            status = await asyncio.wait_for(ctx.api.call("node.status"), self.poll_timeout_s)
        except (NodeRuntimeError, TimeoutError) as exc:
            ctx.connected = False
            ctx.poll_failures += 1
            if isinstance(exc, TimeoutError):
                ctx.last_error = (
                    f"the node accepts connections but did not answer within "
                    f"{self.poll_timeout_s:g}s (daemon hung or overloaded?)"
                )
            else:
                ctx.last_error = str(exc)
            if ctx.poll_failures > 1:
                ctx.last_error += f"; {ctx.poll_failures} tries failed, retrying"
            if was_connected:
                self.notify(ctx.last_error, title="Lost the node", severity="error", timeout=5)
        else:
            ctx.status = dict(status)
            ctx.connected = True
            ctx.last_error = ""
            ctx.poll_failures = 0
            ctx.last_contact = ctx.clock()
            if not was_connected and ctx.refreshes:
                self.notify("the node answers again", title="Reconnected")
            if self._ask_override_fields:
                await self._load_override_fields()
        ctx.refreshes += 1
        self.refresh_view()

    async def _load_override_fields(self) -> None:
        try:
            answer = await asyncio.wait_for(
                self.ctx.api.call("overrides.fields"), self.poll_timeout_s
            )
            self.ctx.override_fields = OverrideFields.from_api(answer)
        except (NodeRuntimeError, TimeoutError, ValueError) as exc:
            # Asked again with the next status; a node without the route is not asked again
            # (it judges each field when an override is sent).
            if not is_unknown_method(exc):
                return
        self._ask_override_fields = False

    def refresh_view(self) -> None:
        for screen in reversed(self.screen_stack):
            if isinstance(screen, BaseView):
                screen.refresh_data()
                return

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        # A bug in a view must not end the console with a traceback: say so and carry on.
        if event.state is WorkerState.ERROR:
            node = event.worker.node
            if isinstance(node, Screen) and not node.is_attached:
                return  # a view that was closed while it loaded: nothing to show
            self.notify(
                f"{event.worker.name}: {event.worker.error}",
                title="Internal error",
                severity="error",
            )

    # --- navigation --------------------------------------------------------------------------

    async def action_view(self, name: str) -> None:
        """Open a view at its list: a detail or logs screen left open in it is closed, so
        ``2`` always shows the workloads list, not the last workload looked at."""
        if name == "help":
            self.action_help()
            return
        if name == "quit":
            self.exit(0)
            return
        if name not in VIEWS:
            return
        if name != self.current_mode:
            self.view_history.append(self.current_mode)
            await self.switch_mode(name)
        while len(self.screen_stack) > 1:
            await self.pop_screen()

    def action_jump(self) -> None:
        async def chosen(target: str | None) -> None:
            if target is not None:
                await self.action_view(target)

        self.push_screen(JumpScreen(), chosen)

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_go_back(self) -> None:
        """Esc: leave a pushed screen, else return to the previous view."""
        if len(self.screen_stack) > 1:
            self.pop_screen()
            return
        while self.view_history:
            previous = self.view_history.pop()
            if previous != self.current_mode:
                self.switch_mode(previous)
                return


def run_tui(socket_path: Path) -> int:
    """Run the console against the node serving ``socket_path``; returns the exit status."""
    app = NodeRuntimeApp(
        ApiClient(socket_path, timeout_s=API_TIMEOUT_S),
        write_api=ApiClient(socket_path, timeout_s=ACTION_TIMEOUT_S),
        linux_console=limited_console(os.environ.get("TERM")),
    )
    result = app.run()
    return result if isinstance(result, int) else 0
