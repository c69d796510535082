"""Load an image archive from a USB stick or a mounted path: pick the file, give name and PIN,
watch the progress. The node checks the archive before it changes anything."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, DataTable, Input, Label, ProgressBar, Static

from noderuntime.errors import NodeRuntimeError
from tui.api import Credentials, error_code, is_disconnected
from tui.context import TuiContext
from tui.model import action_error_text, fmt_bytes
from tui.offline_model import load_progress_text

NO_ARCHIVES = "No archives found under /media or /mnt: plug in the stick, or type a full path."


class LoadImageScreen(ModalScreen[str | None]):
    """Returns what was loaded, or None if cancelled."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, ctx: TuiContext) -> None:
        super().__init__()
        self.ctx = ctx
        self.busy = False

    def compose(self) -> ComposeResult:
        with Vertical(id="load-box"):
            yield Label("Load an image archive", id="load-title")
            yield Static("Archives on removable media (Enter picks one):")
            table: DataTable[str | Text] = DataTable(id="archives", cursor_type="row")
            yield table
            yield Input(placeholder="/media/usb/app.tar", id="archive-path")
            with Horizontal(id="load-credentials"):
                yield Input(value=self.ctx.technician, placeholder="technician", id="technician")
                yield Input(password=True, placeholder="PIN", id="pin")
            yield ProgressBar(total=100, show_eta=False, id="load-progress")
            yield Static("", id="load-status")
            with Horizontal(id="load-buttons"):
                yield Button("Load", variant="warning", id="load")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#archives", DataTable).add_columns("FILE", "SIZE")
        self.query_one("#load-progress", ProgressBar).display = False
        self.fetch_archives()

    @work(exclusive=True, group="archives", exit_on_error=False)
    async def fetch_archives(self) -> None:
        table: DataTable[str | Text] = self.query_one("#archives", DataTable)
        try:
            found = list(await self.ctx.api.call("images.archives"))
        except NodeRuntimeError as exc:
            self.show_status(str(exc))
            return
        for a in found:
            table.add_row(Text(str(a["path"])), Text(fmt_bytes(a.get("size_bytes"))))
        if found:
            self.query_one("#archive-path", Input).value = str(found[0]["path"])
            table.focus()
        else:
            self.show_status(NO_ARCHIVES)
            self.query_one("#archive-path", Input).focus()
        self.add_class("-loaded")

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        row = event.data_table.get_row(event.row_key)
        self.query_one("#archive-path", Input).value = str(row[0])
        who = self.query_one("#technician", Input)
        (self.query_one("#pin", Input) if who.value else who).focus()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.row_key is not None and event.data_table.row_count:
            self.query_one("#archive-path", Input).value = str(
                event.data_table.get_row(event.row_key)[0]
            )

    def show_status(self, text: str, *, error: bool = False) -> None:
        self.query_one("#load-status", Static).update(
            Text(text, style="bold red") if error else Text(text)
        )

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "archive-path":
            self.query_one("#technician", Input).focus()
        elif event.input.id == "technician":
            self.query_one("#pin", Input).focus()
        else:
            self.submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "load":
            self.submit()
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        if not self.busy:  # a load under way is not abandoned half-told
            self.dismiss(None)

    def submit(self) -> None:
        if self.busy:
            return
        path = self.query_one("#archive-path", Input).value.strip()
        name = self.query_one("#technician", Input).value.strip()
        pin = self.query_one("#pin", Input).value
        for value, widget, ask in (
            (path, "#archive-path", "Pick an archive or type its full path."),
            (name, "#technician", "Enter your technician name."),
            (pin, "#pin", "Enter your PIN."),
        ):
            if not value:
                self.show_status(ask, error=True)
                self.query_one(widget, Input).focus()
                return
        self.busy = True
        self.query_one("#load", Button).disabled = True
        self.show_status("Checking PIN...")
        self.send(path, Credentials(name, pin))

    @work(exclusive=True, group="load", exit_on_error=False)
    async def send(self, path: str, credentials: Credentials) -> None:
        bar = self.query_one("#load-progress", ProgressBar)
        last: dict[str, Any] = {}
        try:
            params = {"path": path, "auth": credentials.as_param()}
            async for item in self.ctx.writer.stream("images.load", params):
                last = dict(item)
                self.show_status(load_progress_text(last))
                if last.get("total_bytes"):
                    bar.display = True
                    bar.update(
                        progress=100 * int(last.get("sent_bytes") or 0) // last["total_bytes"]
                    )
        except NodeRuntimeError as exc:
            self.busy = False
            self.query_one("#load", Button).disabled = False
            if is_disconnected(exc):
                self.show_status(f"Lost the node: {exc}. Check the Images view again.", error=True)
                return
            self.show_status(action_error_text(error_code(exc), str(exc)), error=True)
            self.query_one("#pin", Input).value = ""
            return
        self.ctx.technician = credentials.technician
        self.dismiss(load_progress_text(last) if last.get("phase") == "loaded" else None)
