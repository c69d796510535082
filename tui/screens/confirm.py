"""Confirm a state-changing action and authenticate the technician who makes it.

The dialog says what will happen, asks for the technician's name and PIN, and sends the request
with them; the daemon checks the PIN (and counts failures towards lock-out) and signs the change
on the technician's behalf. Refusals (wrong PIN, lock-out, fleet policy) are shown in the dialog.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from noderuntime.errors import NodeRuntimeError
from tui.api import Credentials, error_code, is_disconnected, perform
from tui.context import TuiContext
from tui.model import action_error_text


@dataclass(frozen=True)
class Action:
    """A state-changing request to the control API, described for people."""

    title: str  # "Restart web"
    description: str  # what it does, one or two sentences
    method: str
    params: dict[str, Any]
    done: str  # notification on success


class ConfirmActionScreen(ModalScreen[str | None]):
    """Returns the success message, or None if cancelled."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, ctx: TuiContext, action: Action) -> None:
        super().__init__()
        self.ctx = ctx
        self.action_spec = action
        self.busy = False

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-box"):
            yield Label(self.action_spec.title, id="confirm-title")
            yield Static(self.action_spec.description, id="confirm-description")
            yield Label("Technician")
            yield Input(value=self.ctx.technician, placeholder="name", id="technician")
            yield Label("PIN")
            yield Input(password=True, placeholder="PIN", id="pin")
            yield Static("", id="confirm-error")
            with Horizontal(id="confirm-buttons"):
                yield Button("Confirm", variant="warning", id="confirm")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#pin" if self.ctx.technician else "#technician", Input).focus()

    def show_error(self, text: str) -> None:
        self.query_one("#confirm-error", Static).update(text)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "technician":
            self.query_one("#pin", Input).focus()
        else:
            self.submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "confirm":
            self.submit()
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)

    def submit(self) -> None:
        if self.busy:
            return
        name = self.query_one("#technician", Input).value.strip()
        pin = self.query_one("#pin", Input).value
        if not name:
            self.show_error("Enter your technician name.")
            self.query_one("#technician", Input).focus()
            return
        if not pin:
            self.show_error("Enter your PIN.")
            self.query_one("#pin", Input).focus()
            return
        self.busy = True
        self.show_error("Checking PIN and applying...")
        self.query_one("#confirm", Button).disabled = True
        self.send(Credentials(name, pin))

    @work(exclusive=True, group="confirm", exit_on_error=False)
    async def send(self, credentials: Credentials) -> None:
        a = self.action_spec
        try:
            await perform(self.ctx.writer, a.method, a.params, credentials)
        except NodeRuntimeError as exc:
            self.busy = False
            self.query_one("#confirm", Button).disabled = False
            code = error_code(exc)
            if is_disconnected(exc):
                self.show_error(
                    f"Lost the node: {exc}. The change may not have been made; "
                    "check again once reconnected."
                )
                return
            self.show_error(action_error_text(code, str(exc)))
            pin = self.query_one("#pin", Input)
            pin.value = ""
            if code == "permission_denied":
                pin.focus()
            else:
                self.query_one("#cancel", Button).focus()
            return
        self.ctx.technician = credentials.technician
        self.dismiss(a.done)
