"""What every top-level view shares: the header, the connection banner, periodic refresh."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Footer, Static

from tui.context import TuiContext
from tui.widgets.header import NodeHeader


class BaseView(Screen[None]):
    """A view of the node. The app calls :meth:`refresh_data` after every status poll."""

    VIEW_NAME = "view"

    def __init__(self, ctx: TuiContext) -> None:
        super().__init__()
        self.ctx = ctx

    def compose_header(self) -> ComposeResult:
        yield NodeHeader(id="header")
        yield Static(id="banner")

    def compose_footer(self) -> ComposeResult:
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.show_link()

    def on_screen_resume(self) -> None:
        self.refresh_data()

    def show_link(self) -> None:
        self.query_one(NodeHeader).show(self.ctx, self.VIEW_NAME)
        banner = self.query_one("#banner", Static)
        if self.ctx.connected:
            banner.display = False
        else:
            banner.display = True
            banner.update(
                self.ctx.last_error or "connecting to the node...",
            )

    def refresh_data(self) -> None:
        """Show the link state and reload this view's data (in a worker)."""
        self.show_link()
        if self.ctx.connected:
            self.load()

    def load(self) -> None:
        """Start a worker that fetches this view's data. Views override it."""
