"""Confirm a state-changing action and authenticate the technician who makes it.

The dialog says what will happen, asks for the technician's name and PIN, and sends the request
with them; the daemon checks the PIN (and counts failures towards lock-out) and signs the change
on the technician's behalf. Refusals (wrong PIN, lock-out, fleet policy) are shown in the dialog.
"""

from __future__ import annotations

import time
from collections.abc import Callable
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
    # What is happening, given the seconds since the request went out and whether the
    # container was seen stopped meanwhile (a restart: stopping, the grace countdown,
    # starting). None: one "applying" message.
    progress: Callable[[float, bool], str] | None = None
    # The workload whose container the action stops, watched for the progress.
    watch: str | None = None


# How often the dialog updates its progress line (and looks at the workload's container).
PROGRESS_INTERVAL_S = 0.5


class ConfirmActionScreen(ModalScreen[str | None]):
    """Returns the success message, or None if cancelled."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, ctx: TuiContext, action: Action) -> None:
        super().__init__()
        self.ctx = ctx
        self.action_spec = action
        self.busy = False
        self.started_at = 0.0
        self.saw_stopped = False

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
        self.started_at = time.monotonic()
        self.saw_stopped = False
        self.show_error("Checking PIN and applying...")
        self.query_one("#confirm", Button).disabled = True
        self.send(Credentials(name, pin))
        if self.action_spec.progress is not None:
            self.set_interval(PROGRESS_INTERVAL_S, self.show_progress)

    def show_progress(self) -> None:
        """The step the action is at, while the node works on it (a restart takes the
        container's grace period to stop)."""
        progress = self.action_spec.progress
        if not self.busy or progress is None:
            return
        self.show_error(progress(time.monotonic() - self.started_at, self.saw_stopped))
        if self.action_spec.watch and not self.saw_stopped:
            self.watch_container()

    @work(exclusive=True, group="confirm-watch", exit_on_error=False)
    async def watch_container(self) -> None:
        name = self.action_spec.watch
        try:
            view = await self.ctx.api.call("workloads.get", {"name": name})
        except NodeRuntimeError:
            return  # the countdown goes on without it
        if any(c.get("state") != "running" for c in view.get("containers") or []):
            self.saw_stopped = True

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
