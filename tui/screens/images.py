"""Images on the node and the workloads using each; ``l`` loads an archive from a stick."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Static

from noderuntime.errors import NodeRuntimeError
from tui.offline_model import IMAGE_COLUMNS, image_rows, images_summary
from tui.screens.base import BaseView
from tui.screens.imageload import LoadImageScreen
from tui.widgets.table_sync import sync_table


class ImagesScreen(BaseView):
    VIEW_NAME = "Images"
    BINDINGS = [Binding("l", "load_image", "Load from file")]
    KEYS = (("l", "Load from file"), ("Esc", "Back"))

    def __init__(self, ctx: Any) -> None:
        super().__init__(ctx)
        self.images: list[dict[str, Any]] = []

    def compose(self) -> ComposeResult:
        yield from self.compose_header()
        yield Static("", id="images-summary")
        table: DataTable[str | Text] = DataTable(id="images-table", cursor_type="row")
        yield table
        yield from self.compose_footer()

    def on_mount(self) -> None:
        super().on_mount()
        table = self.query_one("#images-table", DataTable)
        for col in IMAGE_COLUMNS:
            table.add_column(col, key=col)
        table.focus()

    def load(self) -> None:
        self.fetch()

    @work(exclusive=True, group="images", exit_on_error=False)
    async def fetch(self) -> None:
        try:
            self.images = list(await self.ctx.api.call("images.list"))
        except NodeRuntimeError as exc:
            self.query_one("#images-summary", Static).update(Text(str(exc), style="bold red"))
            self.add_class("-loaded")
            return
        self.query_one("#images-summary", Static).update(images_summary(self.images))
        rows = []
        for key, cells in image_rows(self.images):
            styled = [Text(c) for c in cells]
            if cells[1] == "MISSING":
                styled[1].stylize("bold red")
            rows.append((key, styled))
        sync_table(self.query_one("#images-table", DataTable), rows, key_column=IMAGE_COLUMNS[0])
        self.add_class("-loaded")

    def action_load_image(self) -> None:
        def done(message: str | None) -> None:
            if message:
                self.notify(message, title="Image loaded")
            self.fetch()

        self.app.push_screen(LoadImageScreen(self.ctx), done)
