"""Request lines off the control socket, with a bound per line and one across connections.

A line may be up to ``MAX_MESSAGE_BYTES`` (a large workload file), but a bound per line alone
lets many connections each hold one unfinished: 50 connections sending 8 MiB without a newline
took a node to 1.09 GB, and 2.56 GB after three rounds (issue 10). So:

- every connection may buffer ``SMALL_REQUEST_BYTES`` of an unfinished line on its own, so an
  ordinary request (``status``, a workload file) always gets through;
- beyond that, its whole line counts against one ``LineBudget`` shared by all connections,
  held until the request has been answered; a line that finds the budget spent is refused as
  ``busy``, one over ``MAX_MESSAGE_BYTES`` as ``request_too_large``;
- a refused line is read to its end and dropped (never buffered), so that its sender, blocked
  writing, gets to read the answer; a line that never ends is dropped with its connection;
- a line holding budget must end within ``REQUEST_READ_TIMEOUT_S``.

The stream's own buffer stays under twice ``READ_CHUNK_BYTES`` (asyncio pauses reading there).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from noderuntime.api.protocol import MAX_MESSAGE_BYTES, TOO_LARGE

# The StreamReader limit: how much is scanned for a newline before it is moved out in parts.
READ_CHUNK_BYTES = 16 * 1024
SMALL_REQUEST_BYTES = 16 * 1024
# Unfinished large lines of every connection together: four maximal requests at once.
MAX_BUFFERED_BYTES = 4 * MAX_MESSAGE_BYTES
REQUEST_READ_TIMEOUT_S = 30.0
# Of a refused line, read and drop at most this much before closing the connection instead.
MAX_DISCARD_BYTES = 16 * MAX_MESSAGE_BYTES


class LineBudget:
    """Bytes of unfinished large request lines, across every connection of one server."""

    def __init__(self, limit: int = MAX_BUFFERED_BYTES) -> None:
        self.limit = limit
        self.used = 0
        self.refused = 0

    def take(self, n: int) -> bool:
        if self.used + n > self.limit:
            self.refused += 1
            return False
        self.used += n
        return True

    def give(self, n: int) -> None:
        self.used -= n


@dataclass(frozen=True)
class Refused:
    """A line that was not read: the error to answer with; the line's rest is still unread."""

    code: str
    message: str


@dataclass
class Line:
    """One request line, and the budget it holds until :meth:`LineReader.release`."""

    data: bytes
    held: int = 0


class LineReader:
    """Reads request lines of one connection under the shared :class:`LineBudget`."""

    def __init__(self, reader: asyncio.StreamReader, budget: LineBudget) -> None:
        self._reader = reader
        self._budget = budget

    async def read(self) -> Line | Refused | None:
        """The next line; a :class:`Refused` for one that may not be buffered; None at the end
        of the stream (an unfinished last line is dropped: nobody waits for its answer)."""
        chunks: list[bytes] = []
        size = held = 0
        try:
            while True:
                try:
                    part = await self._next(held)
                except asyncio.IncompleteReadError:
                    self._budget.give(held)
                    return None
                if isinstance(part, int):
                    # No newline within the scan limit: move that much out and go on.
                    chunk = await self._reader.readexactly(part)
                    done = False
                else:
                    chunk, done = part, True
                size += len(chunk)
                if size > MAX_MESSAGE_BYTES:
                    self._budget.give(held)
                    return Refused(
                        TOO_LARGE,
                        f"request larger than {MAX_MESSAGE_BYTES} bytes, the most a node "
                        "accepts in one request; nothing was done",
                    )
                if size > SMALL_REQUEST_BYTES:
                    if not self._budget.take(size - held):
                        self._budget.give(held)
                        return Refused(
                            "busy",
                            "the node is receiving too many large requests at once; "
                            "nothing was done: retry in a moment",
                        )
                    held = size
                chunks.append(chunk)
                if done:
                    return Line(b"".join(chunks), held)
        except BaseException:
            self._budget.give(held)
            raise
        finally:
            # An exception caught on the way (end of stream, a timeout) keeps this frame alive
            # in a reference cycle until the garbage collector runs, which large bytes objects
            # do not prompt: without this, every round of a flood left its lines behind.
            chunks.clear()

    async def _next(self, held: int) -> bytes | int:
        """A whole line (with its newline), or how many bytes to take out of a longer one."""
        try:
            if held:
                async with asyncio.timeout(REQUEST_READ_TIMEOUT_S):
                    return await self._reader.readuntil(b"\n")
            return await self._reader.readuntil(b"\n")
        except asyncio.LimitOverrunError as exc:
            return exc.consumed

    def release(self, line: Line) -> None:
        """Give back the budget of an answered line, and its bytes (see the end of read)."""
        self._budget.give(line.held)
        line.held = 0
        line.data = b""

    async def discard_line(self) -> bool:
        """Drop the rest of a refused line; False if it does not end within bounds."""
        dropped = 0
        while dropped <= MAX_DISCARD_BYTES:
            try:
                async with asyncio.timeout(REQUEST_READ_TIMEOUT_S):
                    part = await self._next(0)
            except (asyncio.IncompleteReadError, TimeoutError):
                return False
            if not isinstance(part, int):
                return True
            await self._reader.readexactly(part)
            dropped += part
        return False
