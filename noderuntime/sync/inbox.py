"""The bounded queues between the transport and the engine's single workers.

- :class:`Inbox`: received messages wait here for the one worker that handles them. It holds at
  most ``INBOX_LIMIT`` messages and ``max_bytes`` bytes, counting the message in hand until the
  worker is done with it. A message that does not fit is dropped at once (the transport's
  callback never waits), and the engine counts it; anti-entropy repairs what it carried.
- :class:`Outbox`: this node's own stored updates wait here for the sender, which batches
  whatever has accumulated; past ``OUTBOX_LIMIT`` an update is dropped and counted (the next
  anti-entropy round carries it).

A flood fills the inbox to its bound; once drained, the memory it held is freed but glibc keeps
it in the process (measured: a hub stayed at 129 MB after a flood of 1 MiB messages, from 60 MB).
:func:`give_back_memory` returns it to the system; the engine calls it when the inbox empties
after holding at least ``TRIM_AFTER_BYTES``.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import functools
from collections.abc import Callable

from noderuntime.crdt.store import StoredUpdate

INBOX_LIMIT = 10_000
OUTBOX_LIMIT = 100_000
TRIM_AFTER_BYTES = 1024 * 1024


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim: Callable[[int], int] = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc: nothing to give back this way
        return None
    return trim


def give_back_memory() -> None:
    """Return freed heap memory to the system (glibc's ``malloc_trim``; a no-op elsewhere)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


class Inbox:
    def __init__(self, max_bytes: int, max_messages: int = INBOX_LIMIT) -> None:
        self.max_bytes = max_bytes
        self._queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(max_messages)
        self.bytes = 0  # queued and in hand
        self.high_water = 0  # the most bytes held since the engine last gave memory back

    def offer(self, subject: str, data: bytes) -> bool:
        """Queue a message if it fits; False if it was dropped."""
        size = len(data)
        if self.bytes + size > self.max_bytes:
            return False
        try:
            self._queue.put_nowait((subject, data))
        except asyncio.QueueFull:
            return False
        self.bytes += size
        self.high_water = max(self.high_water, self.bytes)
        return True

    async def get(self) -> tuple[str, bytes]:
        """The next message; call :meth:`done` with it once handled."""
        return await self._queue.get()

    def done(self, data: bytes) -> None:
        self.bytes -= len(data)

    def empty(self) -> bool:
        return self._queue.empty()


class Outbox:
    def __init__(self, limit: int = OUTBOX_LIMIT) -> None:
        self._queue: asyncio.Queue[StoredUpdate] = asyncio.Queue(limit)

    def offer(self, update: StoredUpdate) -> bool:
        """Queue an update to broadcast; False if it was dropped."""
        try:
            self._queue.put_nowait(update)
        except asyncio.QueueFull:
            return False
        return True

    async def take(self) -> list[StoredUpdate]:
        """Everything queued, waiting for at least one update."""
        items = [await self._queue.get()]
        while not self._queue.empty():
            items.append(self._queue.get_nowait())
        return items
