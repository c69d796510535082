"""A daemon that misbehaves on cue: it hangs (accepts, never answers), or breaks a log stream
with an oversized line. The TUI must say so and recover by itself.

A real node cannot be made to do this on cue, so this is a tiny real control-API server on a
unix socket (the fake's canned answers, the real wire format) driven through the real ApiClient.
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
from tui.screens.logs import LogsScreen


class HangingServer:
    """Answers like a node until ``hang`` is set; then reads requests and never answers.

    Log streams follow ``log_plan``, one entry per stream opened: ``"oversized"`` sends a few
    lines then one over the protocol's limit; ``"gated"`` waits for ``release``; then (and when
    the plan is empty) the fake's lines, and the stream stays open.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.api = FakeApi()
        self.hang = False
        self.unanswered = 0
        self.log_plan: list[str] = []
        self.streams = 0
        self.release = asyncio.Event()
        self._server: asyncio.Server | None = None

    async def _stream_logs(self, req: dict[str, Any], writer: asyncio.StreamWriter) -> None:
        self.streams += 1
        plan = self.log_plan.pop(0) if self.log_plan else "follow"
        if plan == "oversized":
            for i in range(5):
                writer.write(encode({"id": req["id"], "item": f"before the break {i}"}))
            writer.write(b'{"id": 1, "item": "' + b"x" * MAX_MESSAGE_BYTES + b'"}\n')
            await writer.drain()
            await asyncio.Event().wait()  # the client hangs up
        if plan == "gated":
            await self.release.wait()
        for line in self.api.log_lines:
            writer.write(encode({"id": req["id"], "item": line}))
        await writer.drain()
        await asyncio.Event().wait()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            while line := await reader.readline():
                req = decode(line)
                if self.hang:
                    self.unanswered += 1
                    await asyncio.Event().wait()
                if req["method"] == "workloads.logs":
                    await self._stream_logs(req, writer)
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
            pilot, lambda: "NODE UNREACHABLE" in screen_text(pilot), what="lost", limit_s=30
        )
        assert not app.ctx.connected
        assert "did not answer" in screen_text(pilot)
        # It keeps trying (each try on a fresh connection), and says how many failed.
        await wait_until(pilot, lambda: app.ctx.poll_failures >= 3, what="retries", limit_s=30)
        assert server.unanswered >= 3
        server.hang = False
        await wait_until(
            pilot, lambda: "| connected" in screen_text(pilot), what="recovered", limit_s=30
        )
        assert app.ctx.poll_failures == 0 and app.ctx.last_error == ""


async def test_log_stream_broken_by_an_oversized_line_reconnects(server: HangingServer) -> None:
    server.log_plan = ["oversized"]
    app = NodeRuntimeApp(ApiClient(server.path, timeout_s=10), initial_view="workloads")
    async with app.run_test(size=(100, 24)) as pilot:
        await settle(pilot)
        await pilot.press("l")
        await wait_until(pilot, lambda: isinstance(app.screen, LogsScreen), what="logs")
        logs = app.screen
        assert isinstance(logs, LogsScreen)
        await wait_until(
            pilot,
            lambda: any(n.title == "Log stream lost" for n in app._notifications),
            what="the break is reported",
        )
        notice = next(n for n in app._notifications if n.title == "Log stream lost")
        assert "over" in notice.message and "reconnecting" in notice.message
        await wait_until(
            pilot,
            lambda: "reconnected" in logs.state and len(logs.buffer) == len(server.api.log_lines),
            what="streaming again",
        )
        assert server.streams == 2
        await wait_until(
            pilot, lambda: "streaming (reconnected)" in screen_text(pilot), what="status line"
        )
        # The new stream re-sent the tail: nothing is shown twice.
        assert logs.buffer.count("before the break") == 0


async def test_lines_held_while_paused_are_capped(server: HangingServer) -> None:
    server.log_plan = ["gated"]
    total = len(server.api.log_lines)
    app = NodeRuntimeApp(ApiClient(server.path, timeout_s=10), initial_view="workloads")
    async with app.run_test(size=(100, 24)) as pilot:
        await settle(pilot)
        logs = LogsScreen(app.ctx, "plc-bridge", capacity=50)
        await app.push_screen(logs)
        await pilot.press("p")
        assert logs.paused
        server.release.set()
        await wait_until(pilot, lambda: logs.pending_dropped == total - 50, what="capped")
        assert len(logs.pending) == 50 and len(logs.buffer) == 0
        await wait_until(
            pilot,
            lambda: f"+50 new | {total - 50} dropped while paused" in screen_text(pilot),
            what="status line",
        )
        await pilot.press("p")
        await wait_until(pilot, lambda: len(logs.buffer) == 50, what="resumed")
        # The newest lines were kept, the oldest dropped (shown with their time as HH:MM:SS).
        text = lambda line: line.split(" ", 1)[1]  # noqa: E731
        assert text(logs.buffer[49]) == text(server.api.log_lines[-1])
        assert text(logs.buffer[0]) == text(server.api.log_lines[total - 50])
