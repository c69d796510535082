"""The control-API client turns every broken connection into a NodeRuntimeError (the TUI relies on
it to reconnect): resets, broken pipes, oversized and garbled lines, on calls and streams.

Each case is a real unix-socket peer that misbehaves on purpose.
"""

from __future__ import annotations

import asyncio
import select
import socket
from typing import Any

import pytest

from noderuntime.api.client import ApiClient
from noderuntime.api.protocol import MAX_MESSAGE_BYTES, encode
from noderuntime.errors import ApiError, DaemonNotRunningError, NodeRuntimeError
from tests.unit.fake_socket import Peer, peer


def reset(conn: socket.socket) -> None:
    """Close with the request unread: the kernel resets the client's side (ECONNRESET)."""
    select.select([conn], [], [], 10)
    conn.close()


def oversized(conn: socket.socket) -> None:
    conn.recv(65536)
    conn.sendall(b"x" * (MAX_MESSAGE_BYTES + 1024) + b"\n")
    conn.shutdown(socket.SHUT_WR)
    select.select([conn], [], [], 10)  # until the client gives up and closes
    conn.close()


def garbled(conn: socket.socket) -> None:
    conn.recv(65536)
    conn.sendall(b"<html>not json</html>\n")
    select.select([conn], [], [], 10)
    conn.close()


def answers_then_closes(conn: socket.socket) -> None:
    conn.recv(65536)
    conn.sendall(encode({"id": 1, "item": "one line"}))
    conn.close()


async def drain_stream(client: ApiClient) -> list[Any]:
    return [item async for item in client.stream("workloads.logs", {"name": "web"})]


CASES = [
    pytest.param(reset, DaemonNotRunningError, ConnectionResetError, id="reset"),
    pytest.param(oversized, ApiError, ValueError, id="oversized"),
    pytest.param(garbled, ApiError, ValueError, id="garbled"),
]


@pytest.mark.parametrize(("behaviour", "error", "cause"), CASES)
async def test_stream_failures_are_node_runtime_errors(
    behaviour: Peer, error: type[NodeRuntimeError], cause: type[BaseException]
) -> None:
    with peer(behaviour) as path:
        with pytest.raises(error) as info:
            await drain_stream(ApiClient(path))
        assert isinstance(info.value.__cause__, cause)


@pytest.mark.parametrize(("behaviour", "error", "cause"), CASES)
async def test_call_failures_are_node_runtime_errors_and_drop_the_connection(
    behaviour: Peer, error: type[NodeRuntimeError], cause: type[BaseException]
) -> None:
    with peer(behaviour) as path:
        client = ApiClient(path, timeout_s=10)
        with pytest.raises(error) as info:
            await client.call("node.status")
        assert isinstance(info.value.__cause__, cause)
        assert client._writer is None  # the next call opens a fresh connection


async def test_stream_closed_mid_way_says_so() -> None:
    with peer(answers_then_closes) as path:
        items: list[Any] = []
        with pytest.raises(DaemonNotRunningError, match="closed the stream"):
            async for item in ApiClient(path).stream("workloads.logs", {"name": "web"}):
                items.append(item)
        assert items == ["one line"]


async def test_broken_pipe_on_send_is_a_lost_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    # Which of write/drain/read sees a closed peer first is a race; force the drain case.
    with peer(reset) as path:
        client = ApiClient(path)

        async def broken_drain(self: asyncio.StreamWriter) -> None:
            raise BrokenPipeError(32, "Broken pipe")

        monkeypatch.setattr(asyncio.StreamWriter, "drain", broken_drain)
        with pytest.raises(DaemonNotRunningError, match="Broken pipe") as info:
            await drain_stream(client)
        assert isinstance(info.value.__cause__, BrokenPipeError)
