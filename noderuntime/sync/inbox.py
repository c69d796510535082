"""The bounded queues between the transport and the engine's single workers.

- :class:`Inbox`: received messages wait here for the one worker that handles them. It holds at
  most ``INBOX_LIMIT`` messages and ``max_bytes`` bytes, counting the message in hand until the
  worker is done with it. A message that does not fit is dropped at once (the transport's
  callback never waits), and the engine counts it; anti-entropy repairs what it carried.
- :class:`Outbox`: this node's own stored updates wait here for the sender, which batches
  whatever has accumulated; past ``OUTBOX_LIMIT`` an update is dropped and counted (the next
  anti-entropy round carries it).
"""

from __future__ import annotations

import asyncio

from noderuntime.crdt.store import StoredUpdate

INBOX_LIMIT = 10_000
OUTBOX_LIMIT = 100_000


class Inbox:
    def __init__(self, max_bytes: int, max_messages: int = INBOX_LIMIT) -> None:
        self.max_bytes = max_bytes
        self._queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(max_messages)
        self.bytes = 0  # queued and in hand

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
