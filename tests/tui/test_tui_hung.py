"""A daemon that accepts connections but stops answering: shown as lost, then recovered.

A real node cannot be made to hang on cue, so this is a tiny real control-API server on a unix
socket (the fake's canned answers, the real wire format) driven through the real ApiClient.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from fake_api import FakeApi
from tui_helpers import screen_text, settle, wait_until

from noderuntime.api.client import ApiClient
from noderuntime.api.protocol import MAX_MESSAGE_BYTES, decode, encode
from tui.app import NodeRuntimeApp


class HangingServer:
    """Answers like a node until ``hang`` is set; then reads requests and never answers."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.api = FakeApi()
        self.hang = False
        self.unanswered = 0
        self._server: asyncio.Server | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            while line := await reader.readline():
                req = decode(line)
                if self.hang:
                    self.unanswered += 1
                    await asyncio.Event().wait()
                try:
                    reply: dict[str, Any] = {
                        "id": req["id"],
                        "ok": True,
                        "result": await self.api.call(req["method"], req.get("params")),
                    }
                except Exception as exc:
                    reply = {"id": req["id"], "ok": False, "error": {"message": str(exc)}}
                writer.write(encode(reply))
                await writer.drain()
        writer.close()

    async def __aenter__(self) -> HangingServer:
        self._server = await asyncio.start_unix_server(
            self._serve, str(self.path), limit=MAX_MESSAGE_BYTES
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()


@pytest.fixture
async def server() -> AsyncIterator[HangingServer]:
    with tempfile.TemporaryDirectory(prefix="nrh-", dir="/tmp") as tmp:
        async with HangingServer(Path(tmp) / "api.sock") as srv:
            yield srv


async def test_hung_daemon_is_shown_as_lost_and_recovers(server: HangingServer) -> None:
    app = NodeRuntimeApp(
        # The client's own read timeout is long: the poll's deadline must not wait for it.
        ApiClient(server.path, timeout_s=60),
        refresh_interval_s=0.2,
        poll_timeout_s=0.5,
    )
    async with app.run_test(size=(100, 24)) as pilot:
        await settle(pilot)
        assert "| connected" in screen_text(pilot)
        server.hang = True
        await wait_until(
            pilot, lambda: "NODE UNREACHABLE" in screen_text(pilot), what="lost", limit_s=10
        )
        assert not app.ctx.connected
        assert "did not answer" in screen_text(pilot)
        # It keeps trying (each try on a fresh connection), and says how many failed.
        await wait_until(pilot, lambda: app.ctx.poll_failures >= 3, what="retries", limit_s=10)
        assert server.unanswered >= 3
        server.hang = False
        await wait_until(
            pilot, lambda: "| connected" in screen_text(pilot), what="recovered", limit_s=10
        )
        assert app.ctx.poll_failures == 0 and app.ctx.last_error == ""
