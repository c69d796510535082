"""Dialogs of the Network and fleet view: set one link, install a fleet credential. Both ask
for the technician's name and PIN; the node checks them and records the change."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from noderuntime.errors import NodeRuntimeError
from tui.api import Credentials, error_code, perform
from tui.context import TuiContext
from tui.model import action_error_text


class _PinDialog(ModalScreen[str | None]):
    """Fields, then technician and PIN; sends one write and dismisses with what it did."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]
    BOX_ID = ""
    TITLE_TEXT = ""
    FIELDS: tuple[tuple[str, str, str], ...] = ()  # (id, label, placeholder)

    def __init__(self, ctx: TuiContext, values: Mapping[str, str] | None = None) -> None:
        super().__init__()
        self.ctx = ctx
        self.values = dict(values or {})
        self.busy = False

    def intro(self) -> str:
        return ""

    def compose(self) -> ComposeResult:
        prefix = self.BOX_ID.split("-")[0]
        with Vertical(id=self.BOX_ID):
            yield Label(self.TITLE_TEXT, id=f"{prefix}-title")
            yield Static(self.intro())
            for fid, label, placeholder in self.FIELDS:
                yield Label(label)
                yield Input(value=self.values.get(fid, ""), placeholder=placeholder, id=fid)
            with Horizontal(id="pin-row"):
                yield Input(value=self.ctx.technician, placeholder="technician", id="technician")
                yield Input(password=True, placeholder="PIN", id="pin")
            yield Static("", id=f"{prefix}-status")
            with Horizontal(id=f"{prefix}-buttons"):
                yield Button("Apply", variant="warning", id="apply")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query(Input).first().focus()

    def show(self, text: str, *, error: bool = False) -> None:
        prefix = self.BOX_ID.split("-")[0]
        self.query_one(f"#{prefix}-status", Static).update(
            Text(text, style="bold red" if error else "")
        )

    def on_input_submitted(self, event: Input.Submitted) -> None:
        inputs = list(self.query(Input))
        at = inputs.index(event.input)
        if at + 1 < len(inputs):
            inputs[at + 1].focus()
        else:
            self.submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "apply":
            self.submit()
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)

    def request(self) -> tuple[str, dict[str, Any]] | str:
        """(method, params), or what is missing."""
        raise NotImplementedError

    def done_text(self, answer: Any) -> str:
        raise NotImplementedError

    def submit(self) -> None:
        if self.busy:
            return
        asked = self.request()
        if isinstance(asked, str):
            self.show(asked, error=True)
            return
        name = self.query_one("#technician", Input).value.strip()
        pin = self.query_one("#pin", Input).value
        if not name or not pin:
            self.show("Enter your technician name and PIN.", error=True)
            self.query_one("#technician" if not name else "#pin", Input).focus()
            return
        self.busy = True
        self.show("Checking PIN and applying...")
        self.send(*asked, Credentials(name, pin))

    @work(exclusive=True, group="pin-dialog", exit_on_error=False)
    async def send(self, method: str, params: dict[str, Any], credentials: Credentials) -> None:
        try:
            answer = await perform(self.ctx.writer, method, params, credentials)
        except NodeRuntimeError as exc:
            self.busy = False
            self.show(action_error_text(error_code(exc), str(exc)), error=True)
            self.query_one("#pin", Input).value = ""
            return
        self.ctx.technician = credentials.technician
        self.dismiss(self.done_text(answer))


class NetworkSetScreen(_PinDialog):
    BOX_ID = "netset-box"
    TITLE_TEXT = "Set the node's network"
    FIELDS = (
        ("link", "Interface", "eth0"),
        ("address", "Address with prefix (leave empty for DHCP)", "192.168.1.20/24"),
        ("gateway", "Gateway", "192.168.1.1"),
        ("dns", "DNS servers", "192.168.1.1 9.9.9.9"),
    )

    def __init__(self, ctx: TuiContext, network: Mapping[str, Any]) -> None:
        links = [str(lk.get("name")) for lk in network.get("links") or []]
        link = str(network.get("gateway_link") or (links[0] if links else ""))
        addrs = next(
            (lk.get("addresses") or [] for lk in network.get("links") or [] if lk["name"] == link),
            [],
        )
        super().__init__(
            ctx,
            {
                "link": link,
                "address": addrs[0] if addrs else "",
                "gateway": str(network.get("gateway") or ""),
                "dns": " ".join(network.get("dns") or []),
            },
        )
        self.why_not = network.get("why_not")

    def intro(self) -> str:
        if self.why_not:
            return f"This node cannot set it: {self.why_not}."
        return "The change goes through the node's network manager and is recorded."

    def request(self) -> tuple[str, dict[str, Any]] | str:
        v = {fid: self.query_one(f"#{fid}", Input).value.strip() for fid, _, _ in self.FIELDS}
        if not v["link"]:
            return "Enter the interface, e.g. eth0."
        if not v["address"]:
            return "network.set", {"name": v["link"], "mode": "dhcp"}
        params = {"name": v["link"], "mode": "static", "address": v["address"]}
        return "network.set", params | {"gateway": v["gateway"], "dns": v["dns"]}

    def done_text(self, answer: Any) -> str:
        return f"network set: {answer.get('change')} (through {answer.get('manager')})"


class JoinFleetScreen(_PinDialog):
    BOX_ID = "join-box"
    TITLE_TEXT = "Join a fleet"
    FIELDS = (("path", "Credential file (full path)", "/media/usb0/node.cred"),)

    def intro(self) -> str:
        return "Install the fleet credential an operator issued for this node's key."

    def request(self) -> tuple[str, dict[str, Any]] | str:
        path = self.query_one("#path", Input).value.strip()
        return ("enrolment.import", {"path": path}) if path else "Enter the file's full path."

    def done_text(self, answer: Any) -> str:
        return (
            f"enrolled in {answer.get('fleet_id')}; the node links up after its next restart "
            "(power-cycle it, or ask the operator)"
        )
