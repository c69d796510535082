"""A blocking client of the control socket, for one-shot commands (`get`, `status`, `apply`...).

A command makes one call and exits: a plain socket and the wire format of
:mod:`noderuntime.api.protocol` do it without asyncio, whose import alone was ~80 ms of a
~160 ms client start-up (bench/fleet_view.py). The TUI and streaming commands keep
:class:`noderuntime.api.client.ApiClient`. Both raise the same errors with the same messages
(the helpers below are shared).
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from noderuntime.api.protocol import (
    ATTACHED,
    MAX_ATTACHED_BYTES,
    MAX_MESSAGE_BYTES,
    Attached,
    decode,
    request_line,
    result_of,
)
from noderuntime.errors import ApiError, DaemonNotRunningError

CONNECT_TIMEOUT_S = 5.0
CALL_TIMEOUT_S = 30.0
_RECV_BYTES = 1 << 20


def unreachable(socket_path: Path, exc: OSError) -> DaemonNotRunningError:
    """The error for a connect that failed with ``exc``."""
    if isinstance(exc, FileNotFoundError | ConnectionRefusedError | TimeoutError):
        return DaemonNotRunningError(
            f"the node is not running (nothing answers on {socket_path}); "
            "start it with `noderuntime run` or `systemctl start noderuntime`"
        )
    if isinstance(exc, PermissionError):
        return DaemonNotRunningError(f"no permission to use {socket_path}; run this as root")
    return DaemonNotRunningError(f"cannot reach the node at {socket_path}: {exc}")


def lost(socket_path: Path, exc: BaseException, what: str = "connection") -> DaemonNotRunningError:
    return DaemonNotRunningError(
        f"lost the {what} to the node at {socket_path}: {str(exc) or 'no answer in time'}"
    )


def closed(socket_path: Path, what: str = "connection") -> DaemonNotRunningError:
    return DaemonNotRunningError(f"the node at {socket_path} closed the {what}")


def oversized(socket_path: Path) -> ApiError:
    return ApiError(
        f"the node at {socket_path} sent a message over {MAX_MESSAGE_BYTES} bytes; "
        "it was dropped with its connection",
        code="message_too_large",
    )


def decode_message(socket_path: Path, line: bytes) -> dict[str, Any]:
    try:
        return decode(line)
    except ValueError as exc:  # json.JSONDecodeError, or not an object
        raise ApiError(
            f"the node at {socket_path} sent something that is not a control API "
            f"message ({exc}); is it the same noderuntime version?",
            code="bad_response",
        ) from exc


def call(
    socket_path: Path,
    method: str,
    params: dict[str, Any] | None = None,
    *,
    attached: bool = False,
    timeout_s: float = CALL_TIMEOUT_S,
) -> Any:
    """One request on a connection of its own, and its result (or its error, raised).

    ``attached``: the request asks for an attached result (``api/protocol.py``), returned as
    :class:`Attached` bytes; a node that answers with a plain result (one from before the
    route could attach) is answered as usual.
    """
    request = request_line(1, method, params)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(CONNECT_TIMEOUT_S)
        try:
            sock.connect(str(socket_path))
        except OSError as exc:
            raise unreachable(socket_path, exc) from exc
        sock.settimeout(timeout_s)
        try:
            sock.sendall(request)
            line, rest = _read_line(sock, socket_path)
            result = result_of(decode_message(socket_path, line))
            size = _attached_size(result) if attached else None
            if size is None:
                return result
            return Attached(_read_exactly(sock, socket_path, rest, size))
        except OSError as exc:  # ConnectionError, TimeoutError
            raise lost(socket_path, exc) from exc
    finally:
        sock.close()


def _attached_size(result: Any) -> int | None:
    if not isinstance(result, dict) or result.keys() != {ATTACHED}:
        return None
    size = result[ATTACHED]
    if type(size) is not int or not 0 <= size <= MAX_ATTACHED_BYTES:
        raise ApiError(
            f"an attached result of {size!r} bytes is not one this client reads "
            f"(at most {MAX_ATTACHED_BYTES})",
            code="bad_response",
        )
    return size


def _read_exactly(sock: socket.socket, socket_path: Path, head: bytes, size: int) -> bytes:
    chunks, got = [head[:size]], min(len(head), size)
    while got < size:
        chunk = sock.recv(min(_RECV_BYTES, size - got))
        if not chunk:
            raise closed(socket_path)
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _read_line(sock: socket.socket, socket_path: Path) -> tuple[bytes, bytes]:
    """The answer line, newline included, and what came after it (an attached result's start);
    a node answers one request with one line."""
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = sock.recv(_RECV_BYTES)
        if not chunk:
            if chunks:  # cut mid-line: not a message (as the asyncio client reads it)
                return b"".join(chunks), b""
            raise closed(socket_path)
        end = chunk.find(b"\n")
        taken = chunk if end < 0 else chunk[: end + 1]
        chunks.append(taken)
        size += len(taken)
        if size > MAX_MESSAGE_BYTES + 1:  # the line's newline does not count
            raise oversized(socket_path)
        if end >= 0:
            return b"".join(chunks), chunk[end + 1 :]
