"""Bridge a blocking HTTP stream read in a thread into an async iterator.

Podman's streaming endpoints (events, logs with follow) block in ``recv`` for as long as nothing
happens, sometimes before the response headers arrive. A blocked read cannot be cancelled from
asyncio, so the thread owns its own unix socket and the consumer interrupts it with
``shutdown()``: the read returns EOF and the thread exits. Streams never use the runtime's
worker pool, so a forgotten ``logs --follow`` cannot starve ordinary calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import socket
import threading
from collections.abc import AsyncGenerator, Callable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")

CONNECT_TIMEOUT_S = 10.0
# Lines a slow consumer may fall behind before the reading thread waits for it.
QUEUE_MAX_ITEMS = 1000
_CREDIT_POLL_S = 0.5
_ERROR_BODY_MAX_BYTES = 4096


class HttpStatusError(Exception):
    """The service answered a stream request with an error status."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body}")
        self.status = status
        self.body = body


class _End:
    pass


@dataclass(frozen=True)
class _Failed:
    exc: BaseException


_END = _End()


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over a unix socket whose ``sock`` another thread may shut down."""

    def __init__(self, socket_path: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
        super().__init__("localhost", timeout=timeout)
        self._socket_path = socket_path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._socket_path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


class _Outbox(Generic[T]):
    """Thread-to-loop hand-off with back-pressure and a stop switch that interrupts the read."""

    def __init__(self, loop: asyncio.AbstractEventLoop, max_items: int) -> None:
        self._loop = loop
        self.queue: asyncio.Queue[T | _End | _Failed] = asyncio.Queue()
        self._credit = threading.Semaphore(max_items)
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    def attach(self, sock: socket.socket) -> None:
        with self._lock:
            self._sock = sock
            if self._stopped.is_set():
                _shutdown(sock)

    def detach(self) -> None:
        # Under the lock so stop() never shuts down a socket whose fd was closed and reused.
        with self._lock:
            self._sock = None

    def put(self, item: T) -> bool:
        """Hand ``item`` to the consumer; False once the consumer has gone."""
        while not self._credit.acquire(timeout=_CREDIT_POLL_S):
            if self._stopped.is_set():
                return False
        if self._stopped.is_set():
            return False
        return self._deliver(item)

    def finish(self) -> None:
        self._deliver(_END)

    def fail(self, exc: BaseException) -> None:
        if not self._stopped.is_set():
            self._deliver(_Failed(exc))

    def stop(self) -> None:
        with self._lock:
            self._stopped.set()
            if self._sock is not None:
                _shutdown(self._sock)

    async def get(self) -> T | _End | _Failed:
        item = await self.queue.get()
        self._credit.release()
        return item

    def _deliver(self, item: T | _End | _Failed) -> bool:
        try:
            self._loop.call_soon_threadsafe(self.queue.put_nowait, item)
        except RuntimeError:  # the loop is closed: nobody will ever read
            self._stopped.set()
            return False
        return True


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


Parser = Callable[[http.client.HTTPResponse], Iterator[T]]


def _pump(socket_path: str, path: str, parse: Parser[T], box: _Outbox[T]) -> None:
    conn = UnixHTTPConnection(socket_path)
    try:
        conn.connect()
        assert conn.sock is not None
        box.attach(conn.sock)
        # Streams may stay silent for hours: no read timeout, stop() interrupts instead.
        conn.sock.settimeout(None)
        conn.request("GET", path, headers={"Connection": "close"})
        resp = conn.getresponse()
        if resp.status >= 400:
            body = resp.read(_ERROR_BODY_MAX_BYTES).decode("utf-8", "replace")
            raise HttpStatusError(resp.status, body)
        for item in parse(resp):
            if not box.put(item):
                return
        box.finish()
    except BaseException as exc:  # handed to the consumer, which translates it
        box.fail(exc)
    finally:
        box.detach()
        conn.close()


async def stream(
    socket_path: str, path: str, parse: Parser[T], *, name: str, max_items: int = QUEUE_MAX_ITEMS
) -> AsyncGenerator[T, None]:
    """Yield what ``parse`` reads from GET ``path``; raises what the reading thread raised.

    Cancelling (or closing) the iterator interrupts the read at once; the thread exits by itself.
    """
    box: _Outbox[T] = _Outbox(asyncio.get_running_loop(), max_items)
    thread = threading.Thread(
        target=_pump, args=(socket_path, path, parse, box), name=name, daemon=True
    )
    thread.start()
    try:
        while True:
            item = await box.get()
            if isinstance(item, _End):
                return
            if isinstance(item, _Failed):
                raise item.exc
            yield item
    finally:
        box.stop()
