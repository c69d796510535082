"""A control socket whose far end behaves as a test says (one connection, in a thread)."""

from __future__ import annotations

import contextlib
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

Peer = Callable[[socket.socket], None]


@contextlib.contextmanager
def peer(behaviour: Peer) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="nrc-", dir="/tmp") as tmp:
        path = Path(tmp) / "api.sock"
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        srv.bind(str(path))
        srv.listen()

        def serve() -> None:
            with contextlib.suppress(OSError):
                conn, _ = srv.accept()
                behaviour(conn)

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        try:
            yield path
        finally:
            srv.close()
            thread.join(15)


def answers(answer: bytes) -> Peer:
    """Reads a request, sends ``answer`` and closes."""

    def behaviour(conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)
            with contextlib.suppress(OSError):
                conn.sendall(answer)

    return behaviour
