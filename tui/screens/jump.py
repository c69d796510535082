"""``:`` prompt: jump to a view by name, as in k9s."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.suggester import SuggestFromList
from textual.widgets import Input, Label

# Names (and short aliases) a technician may type after ":".
JUMP_TARGETS: dict[str, str] = {
    "overview": "overview",
    "ov": "overview",
    "o": "overview",
    "workloads": "workloads",
    "workload": "workloads",
    "wl": "workloads",
    "w": "workloads",
    "peers": "peers",
    "sync": "peers",
    "p": "peers",
    "events": "events",
    "ev": "events",
    "e": "events",
    "history": "history",
    "hist": "history",
    "h": "history",
    "fleet": "fleet",
    "f": "fleet",
    "images": "images",
    "network": "link",
    "net": "link",
    "join": "link",
    "link": "link",
    "image": "images",
    "img": "images",
    "i": "images",
    "audit": "audit",
    "a": "audit",
    "help": "help",
    "quit": "quit",
    "q": "quit",
}


def resolve_jump(text: str) -> str | None:
    return JUMP_TARGETS.get(text.strip().lstrip(":").lower())


class JumpScreen(ModalScreen[str | None]):
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def compose(self) -> ComposeResult:
        with Vertical(id="jump-box"):
            yield Label("Jump to (overview, workloads, peers, events, fleet, help, quit):")
            yield Input(
                placeholder=":",
                id="jump-input",
                suggester=SuggestFromList(
                    ["overview", "workloads", "peers", "events", "fleet", "help", "quit"],
                    case_sensitive=False,
                ),
            )
            yield Label("", id="jump-error")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        target = resolve_jump(event.value)
        if target is None:
            self.query_one("#jump-error", Label).update(f"no view called {event.value!r}")
            return
        self.dismiss(target)

    def action_cancel(self) -> None:
        self.dismiss(None)
