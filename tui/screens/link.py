"""The node's link to the world: its network (``s`` sets a link) and its fleet (enrolment, sync,
each link and why it is down; ``j`` installs a credential from a stick)."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from noderuntime.errors import NodeRuntimeError
from tui.api import is_unknown_method
from tui.offline_model import enrolment_lines, network_lines
from tui.screens.base import BaseView
from tui.screens.linkedit import JoinFleetScreen, NetworkSetScreen


class LinkScreen(BaseView):
    VIEW_NAME = "Network and fleet"
    KEYS = (("s", "Set network"), ("j", "Join fleet"), ("Esc", "Back"))
    BINDINGS = [("s", "set_network", "Set network"), ("j", "join", "Join fleet")]

    def __init__(self, ctx: Any) -> None:
        super().__init__(ctx)
        self.network: dict[str, Any] = {}

    def compose(self) -> ComposeResult:
        yield from self.compose_header()
        with VerticalScroll(id="link-body"):
            yield Static("loading...", id="network-info")
            yield Static("", id="join-info")
        yield from self.compose_footer()

    def load(self) -> None:
        self.fetch()

    @work(exclusive=True, group="link", exit_on_error=False)
    async def fetch(self) -> None:
        net_box = self.query_one("#network-info", Static)
        join_box = self.query_one("#join-info", Static)
        try:
            self.network = dict(await self.ctx.api.call("network.get"))
            net_box.update(Text("\n".join(network_lines(self.network))))
        except NodeRuntimeError as exc:
            net_box.update(Text(f"Network: {exc}", style="bold red"))
        try:
            info = await self.ctx.api.call("enrolment.status")
            join_box.update(Text("\n".join(enrolment_lines(info))))
        except NodeRuntimeError as exc:
            why = "this node's API cannot say" if is_unknown_method(exc) else str(exc)
            join_box.update(Text(f"Fleet: {why}", style="bold red"))
        self.add_class("-loaded")

    def _after(self, message: str | None) -> None:
        if message:
            self.notify(message, title="Done")
        self.fetch()

    def action_set_network(self) -> None:
        self.app.push_screen(NetworkSetScreen(self.ctx, self.network), self._after)

    def action_join(self) -> None:
        self.app.push_screen(JoinFleetScreen(self.ctx), self._after)
