"""What every top-level view shares: the header, the connection banner, periodic refresh."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Input, Static

from tui.context import TuiContext
from tui.widgets.header import NodeHeader
from tui.widgets.keybar import COMMON_KEYS, KeyBar, Keys
from tui.widgets.table_sync import scroll_to_top


class BaseView(Screen[None]):
    """A view of the node. The app calls :meth:`refresh_data` after every status poll."""

    VIEW_NAME = "view"
    # The footer's keys, most important first (the footer drops the last ones that do not fit).
    KEYS: Keys = ()
    # k9s: Esc goes back to the previous view (nothing to do on the first one). Views with a
    # filter or a search box bind it themselves to close that first.
    BINDINGS = [Binding("escape", "app.go_back", "Back", show=False)]

    def __init__(self, ctx: TuiContext) -> None:
        super().__init__()
        self.ctx = ctx
        self._banner_text = ""

    def compose_header(self) -> ComposeResult:
        yield NodeHeader(id="header")
        yield Static(id="banner")

    def compose_footer(self) -> ComposeResult:
        yield KeyBar(self.footer_keys())

    def footer_keys(self) -> Keys:
        return (*self.KEYS, *COMMON_KEYS, (":", "Jump"), ("1-5", "Views"))

    def update_footer(self) -> None:
        self.query_one(KeyBar).set_keys(self.footer_keys())

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
            message = self.ctx.last_error or "connecting to the node..."
            if message != self._banner_text:
                self._banner_text = message
                banner.update(message)

    def refresh_data(self) -> None:
        """Show the link state and reload this view's data (in a worker)."""
        self.show_link()
        if self.ctx.connected:
            self.load()

    def load(self) -> None:
        """Start a worker that fetches this view's data. Views override it."""


class FilterableView(BaseView):
    """A view with one table and a `/` filter box (`#filter`), k9s-style.

    Esc first clears the filter, then goes back. Subclasses name their table and redraw
    their rows from ``query_text`` in :meth:`render_rows`.
    """

    TABLE_ID = ""

    def __init__(self, ctx: TuiContext) -> None:
        super().__init__(ctx)
        self.query_text = ""

    def render_rows(self, *, top: bool = False) -> None:
        """Show the rows for ``query_text``; ``top``: the rows changed on request (filter,
        resize), so scroll back as near the top as keeps the cursor in view."""
        raise NotImplementedError

    def _focus_table(self) -> None:
        self.query_one(f"#{self.TABLE_ID}", DataTable).focus()

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.display = True
        box.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "filter":
            self.query_text = event.value
            self.render_rows(top=True)

    def on_resize(self) -> None:
        # The cursor row stays in view, the rows above it too as far as they fit.
        self.call_after_refresh(self._after_resize)

    def _after_resize(self) -> None:
        if self.is_attached:
            self.render_rows(top=True)
            scroll_to_top(self.query_one(f"#{self.TABLE_ID}", DataTable))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "filter":
            if not event.value:
                event.input.display = False
            self._focus_table()

    def action_back(self) -> None:
        box = self.query_one("#filter", Input)
        if box.has_focus or self.query_text:
            box.value = ""
            box.display = False
            self.query_text = ""
            self.render_rows(top=True)
            self._focus_table()
            return
        self.app.call_later(self.app.run_action, "go_back")
