"""Client of the local control API, used by the CLI and the TUI."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from noderuntime.api.oneshot import (
    CONNECT_TIMEOUT_S,
    closed,
    decode_message,
    lost,
    oversized,
    unreachable,
)
from noderuntime.api.protocol import MAX_MESSAGE_BYTES, request_line, result_of
from noderuntime.errors import ApiError, DaemonNotRunningError


class ApiClient:
    """One connection to a node's control socket. Reconnects on the next call if it drops."""

    def __init__(self, socket_path: Path, *, timeout_s: float = 30.0) -> None:
        self.socket_path = socket_path
        self.timeout_s = timeout_s
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._ids = itertools.count(1)
        self._lock = asyncio.Lock()

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        try:
            return await asyncio.wait_for(
                asyncio.open_unix_connection(str(self.socket_path), limit=MAX_MESSAGE_BYTES),
                timeout=CONNECT_TIMEOUT_S,
            )
        except OSError as exc:  # FileNotFoundError, ConnectionRefusedError, TimeoutError...
            raise unreachable(self.socket_path, exc) from exc

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()
        self._reader = self._writer = None

    async def __aenter__(self) -> ApiClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _lost(self, exc: BaseException, what: str = "connection") -> DaemonNotRunningError:
        return lost(self.socket_path, exc, what)

    def _decode(self, line: bytes) -> dict[str, Any]:
        return decode_message(self.socket_path, line)

    def _oversized(self) -> ApiError:
        return oversized(self.socket_path)

    def _request(self, req_id: int, method: str, params: dict[str, Any] | None) -> bytes:
        return request_line(req_id, method, params)

    async def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        async with self._lock:
            req_id = next(self._ids)
            request = self._request(req_id, method, params)
            if self._writer is None:
                self._reader, self._writer = await self._connect()
            assert self._reader is not None
            try:
                self._writer.write(request)
                await self._writer.drain()
                async with asyncio.timeout(self.timeout_s):
                    line = await self._reader.readline()
            except (ConnectionError, TimeoutError, OSError) as exc:
                await self.close()
                raise self._lost(exc) from exc
            except ValueError as exc:
                # asyncio.LimitOverrunError, re-raised by readline(): the rest of that line is
                # still unread, so the connection cannot be used again.
                await self.close()
                raise self._oversized() from exc
            except asyncio.CancelledError:
                # The answer to this request is still on its way; the next call would read it
                # as its own. Drop the connection; the next call opens a fresh one.
                self._writer.close()
                self._reader = self._writer = None
                raise
            if not line:
                await self.close()
                raise closed(self.socket_path)
            try:
                msg = self._decode(line)
            except ApiError:
                await self.close()
                raise
            return self._result(msg)

    @staticmethod
    def _result(msg: dict[str, Any]) -> Any:
        return result_of(msg)

    async def stream(self, method: str, params: dict[str, Any] | None = None) -> AsyncIterator[Any]:
        """Items of a streaming method, on a connection of its own.

        Every failure of the connection is a :class:`NodeRuntimeError`: a reset, broken or
        closed connection is :class:`DaemonNotRunningError`, an oversized or garbled line an
        :class:`ApiError`.
        """
        request = self._request(1, method, params)
        reader, writer = await self._connect()
        try:
            try:
                writer.write(request)
                await writer.drain()
            except (ConnectionError, OSError) as exc:
                raise self._lost(exc, "stream") from exc
            while True:
                try:
                    line = await reader.readline()
                except (ConnectionError, OSError) as exc:
                    raise self._lost(exc, "stream") from exc
                except ValueError as exc:  # asyncio.LimitOverrunError
                    raise self._oversized() from exc
                if not line:
                    raise closed(self.socket_path, "stream")
                msg = self._decode(line)
                if "item" in msg:
                    yield msg["item"]
                    continue
                self._result(msg)
                return
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
