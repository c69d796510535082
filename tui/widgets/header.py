"""The one-line header every view shows: node, site, view name and whether the node answers."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from tui.context import TuiContext
from tui.model import fmt_age


class NodeHeader(Static):
    """Shows the node and link state; turns into a warning bar when the daemon is lost."""

    _shown = Text()

    def show(self, ctx: TuiContext, view: str) -> None:
        node = (ctx.status or {}).get("node") or {}
        text = Text(no_wrap=True, overflow="ellipsis")
        if ctx.connected:
            text.append(" noderuntime ", style="bold")
            self.set_class(False, "-disconnected")
        else:
            text.append(" NODE UNREACHABLE, reconnecting ", style="bold")
            self.set_class(True, "-disconnected")
        text.append(f"| {node.get('id', '?')} @ {node.get('site', '?')} ")
        text.append(f"| {view} ", style="bold")
        if ctx.connected:
            text.append("| connected")
        elif ctx.last_contact is not None:
            text.append(f"| data {fmt_age(ctx.last_contact, ctx.clock())} old")
        if text != self._shown:  # rich Text equality: same characters and spans
            self._shown = text
            self.update(text, layout=False)  # one line high (app.tcss): no layout needed
