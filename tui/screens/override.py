"""Form for a node-local override: which field, which value. Confirmation comes next."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.suggester import SuggestFromList
from textual.widgets import Input, Label, Static

from tui.model import OverrideFields, check_override_field, parse_override_value


class OverrideScreen(ModalScreen[tuple[str, Any] | None]):
    """Returns (field, value) ready for ``overrides.set``, or None if cancelled."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(
        self, workload: str, fields: OverrideFields | None, field: str = "", value: str = ""
    ) -> None:
        super().__init__()
        self.workload = workload
        # What the node says may be overridden (None: it has not said; it judges on sending).
        self.fields = fields
        self.initial_field = field
        self.initial_value = value

    def compose(self) -> ComposeResult:
        with Vertical(id="override-box"):
            yield Label(f"Node override for {self.workload}", id="override-title")
            yield Static(
                f"Fields: {self.fields.help if self.fields else 'as the node allows'}",
                id="override-help",
            )
            yield Label("Field")
            yield Input(
                value=self.initial_field,
                placeholder="env.NAME",
                id="field",
                suggester=SuggestFromList(self.fields.suggestions if self.fields else ()),
            )
            yield Label("Value")
            yield Input(value=self.initial_value, placeholder="value", id="value")
            yield Static("", id="override-error")

    def on_mount(self) -> None:
        self.query_one("#value" if self.initial_field else "#field", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        field = self.query_one("#field", Input).value.strip()
        if event.input.id == "field":
            problem = check_override_field(field, self.fields)
            if problem:
                self.query_one("#override-error", Static).update(problem)
                return
            self.query_one("#value", Input).focus()
            return
        problem = check_override_field(field, self.fields)
        if problem:
            self.query_one("#override-error", Static).update(problem)
            self.query_one("#field", Input).focus()
            return
        try:
            value = parse_override_value(field, self.query_one("#value", Input).value)
        except ValueError as exc:
            self.query_one("#override-error", Static).update(str(exc))
            return
        self.dismiss((field, value))

    def action_cancel(self) -> None:
        self.dismiss(None)
