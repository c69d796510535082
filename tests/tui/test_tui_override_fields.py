"""The override form lists and checks the fields the node serves (``overrides.fields``), asked
for once with the first status; the TUI keeps no list of its own."""

from __future__ import annotations

from typing import Any

from fake_api import FakeApi, clock
from textual.widgets import Input, Static
from tui_helpers import settle, wait_until

from noderuntime.errors import ApiError
from tui.app import NodeRuntimeApp
from tui.screens.override import OverrideScreen


class NarrowApi(FakeApi):
    """A node that lets an override set only its image and env variables."""

    async def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        if method == "overrides.fields":
            self.calls.append((method, dict(params or {})))
            return {"fields": ["image", "env.<NAME>"]}
        return await super().call(method, params)


class OlderApi(FakeApi):
    """A node from before ``overrides.fields``."""

    async def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        if method == "overrides.fields":
            self.calls.append((method, dict(params or {})))
            raise ApiError(f"unknown method {method!r}", code="unknown_method")
        return await super().call(method, params)


def asked(api: FakeApi) -> int:
    return sum(1 for method, _ in api.calls if method == "overrides.fields")


async def poll_once_more(app: NodeRuntimeApp, pilot: Any) -> None:
    before = app.ctx.refreshes
    app.poll()
    await wait_until(pilot, lambda: app.ctx.refreshes > before, what="another status")


async def open_form(app: NodeRuntimeApp, pilot: Any) -> OverrideScreen:
    await settle(pilot)
    await pilot.press("o")
    await wait_until(pilot, lambda: isinstance(app.screen, OverrideScreen), what="override form")
    screen = app.screen
    assert isinstance(screen, OverrideScreen)
    return screen


async def test_the_form_uses_the_nodes_fields() -> None:
    api = NarrowApi()
    app = NodeRuntimeApp(api, clock=clock, refresh_interval_s=3600, initial_view="workloads")
    async with app.run_test(size=(100, 30)) as pilot:
        form = await open_form(app, pilot)
        help_text = str(form.query_one("#override-help", Static).render())
        assert help_text == "Fields: image, env.<NAME>"
        form.query_one("#field", Input).value = "enabled"
        await pilot.press("enter")
        error = str(form.query_one("#override-error", Static).render())
        assert error == "'enabled' cannot be overridden; use one of: image, env.<NAME>"
        await poll_once_more(app, pilot)
        assert asked(api) == 1  # once, not with every status


async def test_a_node_without_the_route_judges_fields_itself() -> None:
    api = OlderApi()
    app = NodeRuntimeApp(api, clock=clock, refresh_interval_s=3600, initial_view="workloads")
    async with app.run_test(size=(100, 30)) as pilot:
        form = await open_form(app, pilot)
        help_text = str(form.query_one("#override-help", Static).render())
        assert help_text == "Fields: as the node allows"
        form.query_one("#field", Input).value = "enabled"
        await pilot.press("enter")
        assert str(form.query_one("#override-error", Static).render()) == ""
        await poll_once_more(app, pilot)
        assert asked(api) == 1
