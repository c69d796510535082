"""A small asyncio HTTP/1.1 client over a unix socket, just enough for Podman's REST API.

One connection per request (``Connection: close``): connecting to a local unix socket costs
tens of microseconds, and a connection that is never reused can never be reused in a bad state.
Bodies are read as Podman sends them: ``Content-Length``, chunked, or until the server closes
the connection (hijacked streams: exec output, logs). Everything is plain asyncio, so
cancelling a caller cancels its read at once, even while Podman has not sent any headers yet
(as on ``logs?follow=true`` of a silent container) - no threads involved.

Only stdlib imports that the process has anyway: this module exists to keep the daemon's RSS
down (the PyPI ``podman`` package pulls requests, urllib3 and more).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import urllib.parse
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

CONNECT_TIMEOUT_S = 10.0
_READ_SIZE = 64 * 1024
_HEADERS_MAX_BYTES = 64 * 1024
_LINE_MAX_BYTES = 4 * 1024 * 1024
_BODYLESS_STATUSES = frozenset({204, 304})


class ProtocolError(ConnectionError):
    """The server broke HTTP/1.1 framing, or closed the connection in the middle of a message."""


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


class Body:
    """The decoded body of one response, read incrementally."""

    def __init__(self, reader: asyncio.StreamReader, headers: Mapping[str, str]) -> None:
        self._reader = reader
        self._buf = bytearray()
        self._done = False
        self._chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        length = headers.get("content-length")
        self._remaining: int | None = None
        if not self._chunked and length is not None:
            try:
                self._remaining = int(length)
            except ValueError as exc:
                raise ProtocolError(f"bad Content-Length {length!r}") from exc
            self._done = self._remaining == 0
        self._chunk_left = 0

    @classmethod
    def empty(cls, reader: asyncio.StreamReader) -> Body:
        return cls(reader, {"content-length": "0"})

    async def _next_piece(self) -> bytes:
        """The next decoded bytes of the body; b"" at its end."""
        if self._done:
            return b""
        reader = self._reader
        if self._chunked:
            if self._chunk_left == 0:
                size_line = await reader.readline()
                if not size_line.endswith(b"\n"):
                    raise ProtocolError("connection closed inside a chunked body")
                try:
                    self._chunk_left = int(size_line.split(b";", 1)[0].strip(), 16)
                except ValueError as exc:
                    raise ProtocolError(f"bad chunk size line {size_line[:40]!r}") from exc
                if self._chunk_left == 0:
                    while (await reader.readline()).strip():  # trailers, then the blank line
                        pass
                    self._done = True
                    return b""
            data = await reader.read(min(self._chunk_left, _READ_SIZE))
            if not data:
                raise ProtocolError("connection closed inside a chunk")
            self._chunk_left -= len(data)
            if self._chunk_left == 0:
                await reader.readexactly(2)  # the CRLF after each chunk
            return data
        if self._remaining is not None:
            data = await reader.read(min(self._remaining, _READ_SIZE))
            if not data:
                raise ProtocolError(f"connection closed with {self._remaining} bytes unread")
            self._remaining -= len(data)
            self._done = self._remaining == 0
            return data
        data = await reader.read(_READ_SIZE)  # delimited by the server closing the connection
        if not data:
            self._done = True
        return data

    async def read(self) -> bytes:
        """Some bytes of the body (whatever is buffered or arrives next); b"" at its end."""
        if self._buf:
            data = bytes(self._buf)
            self._buf.clear()
            return data
        return await self._next_piece()

    async def read_all(self, max_bytes: int | None = None) -> bytes:
        """The rest of the body (at most ``max_bytes`` of it)."""
        while not self._done and (max_bytes is None or len(self._buf) < max_bytes):
            piece = await self._next_piece()
            if not piece:
                break
            self._buf += piece
        data = bytes(self._buf if max_bytes is None else self._buf[:max_bytes])
        self._buf.clear()
        return data

    async def readline(self) -> bytes:
        """The next line including its b"\\n"; the unterminated rest at the end; b"" after it."""
        start = 0
        while (end := self._buf.find(b"\n", start)) < 0:
            if len(self._buf) > _LINE_MAX_BYTES:
                raise ProtocolError(f"a line longer than {_LINE_MAX_BYTES} bytes")
            start = len(self._buf)
            piece = await self._next_piece()
            if not piece:
                line = bytes(self._buf)
                self._buf.clear()
                return line
            self._buf += piece
        line = bytes(self._buf[: end + 1])
        del self._buf[: end + 1]
        return line

    async def readexactly(self, n: int) -> bytes:
        """``n`` bytes, or fewer if the body ends first."""
        while len(self._buf) < n:
            piece = await self._next_piece()
            if not piece:
                break
            self._buf += piece
        data = bytes(self._buf[:n])
        del self._buf[:n]
        return data


@dataclass(frozen=True)
class StreamResponse:
    status: int
    headers: dict[str, str]
    body: Body


class UnixHttpClient:
    """HTTP/1.1 requests to ``prefix + path`` on the unix socket ``socket_path``."""

    def __init__(self, socket_path: str, prefix: str = "") -> None:
        self.socket_path = socket_path
        self.prefix = prefix

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        timeout_s: float | None,
    ) -> Response:
        """One whole request; ``timeout_s`` bounds everything (connect, send, read)."""
        async with (
            asyncio.timeout(timeout_s),
            self.stream(method, path, params=params, body=body) as resp,
        ):
            data = await resp.body.read_all()
        return Response(resp.status, resp.headers, data)

    @contextlib.asynccontextmanager
    async def stream(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        connect_timeout: float = CONNECT_TIMEOUT_S,
    ) -> AsyncIterator[StreamResponse]:
        """Send a request and yield its response once the headers are in; the body is read
        by the caller. No read timeout: the caller bounds or cancels. Leaving closes the
        connection."""
        async with asyncio.timeout(connect_timeout):
            reader, writer = await asyncio.open_unix_connection(
                self.socket_path, limit=_HEADERS_MAX_BYTES
            )
        try:
            writer.write(self._encode(method, path, params, body))
            await writer.drain()
            status, headers = await _read_head(reader)
            if method == "HEAD" or status in _BODYLESS_STATUSES:
                yield StreamResponse(status, headers, Body.empty(reader))
            else:
                yield StreamResponse(status, headers, Body(reader, headers))
        finally:
            writer.close()

    @contextlib.asynccontextmanager
    async def upload(
        self,
        path: str,
        chunks: AsyncIterator[bytes],
        size: int,
        *,
        content_type: str,
        params: Mapping[str, str] | None = None,
    ) -> AsyncIterator[StreamResponse]:
        """POST a body of ``size`` bytes read from ``chunks`` (an image archive: never held in
        memory whole); yield the response once its headers are in. No timeout: the caller
        bounds or cancels. A source that ends early or runs over is a ProtocolError."""
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            reader, writer = await asyncio.open_unix_connection(
                self.socket_path, limit=_HEADERS_MAX_BYTES
            )
        try:
            target = self.prefix + path
            if params:
                target += "?" + urllib.parse.urlencode(params)
            head = [
                f"POST {target} HTTP/1.1",
                "Host: podman",
                "Connection: close",
                f"Content-Type: {content_type}",
                f"Content-Length: {size}",
            ]
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode())
            sent = 0
            async for chunk in chunks:
                sent += len(chunk)
                if sent > size:
                    raise ProtocolError(f"the body grew past the {size} bytes announced")
                writer.write(chunk)
                await writer.drain()
            if sent != size:
                raise ProtocolError(f"the body ended after {sent} of {size} bytes")
            status, headers = await _read_head(reader)
            yield StreamResponse(status, headers, Body(reader, headers))
        finally:
            writer.close()

    def _encode(self, method: str, path: str, params: Mapping[str, str] | None, body: Any) -> bytes:
        target = self.prefix + path
        if params:
            target += "?" + urllib.parse.urlencode(params)
        lines = [f"{method} {target} HTTP/1.1", "Host: podman", "Connection: close"]
        payload = b""
        if body is not None:
            payload = json.dumps(body).encode()
            lines.append("Content-Type: application/json")
        if body is not None or method in ("POST", "PUT"):
            lines.append(f"Content-Length: {len(payload)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    while True:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            raise ProtocolError("connection closed before the response headers") from exc
        except asyncio.LimitOverrunError as exc:
            raise ProtocolError("response headers too long") from exc
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
            raise ProtocolError(f"bad status line {status_line[:60]!r}")
        status = int(parts[1])
        if 100 <= status < 200:
            continue  # interim response (100 Continue): the real one follows
        headers: dict[str, str] = {}
        for line in header_lines:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        return status, headers
