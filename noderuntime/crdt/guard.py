"""Keep the store's mark in step, and hold the node's containers while the store has lost
what it had (rules in :mod:`noderuntime.crdt.mark`).

Lifecycle: entered right after the :class:`StateStore` (before anything writes to it), so the
store is judged as it was found. While held, the reconciler asks :meth:`StoreGuard.check` on
every pass and withholds every stop and remove; :meth:`release` ends the hold (a reset, or a
resync that brought the documents back).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from noderuntime.crdt.mark import (
    HOLD_DECISIONS,
    MARK_FLUSH_INTERVAL_S,
    Hold,
    StoreFacts,
    StoreMark,
    assess,
    confirm,
    next_mark,
    read_mark,
    write_mark,
)
from noderuntime.crdt.state import Origin, StateStore
from noderuntime.crdt.store import StoredUpdate
from noderuntime.errors import StoreError


class StoreGuard:
    def __init__(
        self,
        path: Path,
        state: StateStore,
        *,
        log: logging.Logger | None = None,
        clock: Callable[[], float] = time.time,
        flush_interval_s: float = MARK_FLUSH_INTERVAL_S,
        hold: Hold | None = None,
    ) -> None:
        self.path = path
        self._state = state
        self._log = log or logging.getLogger(__name__)
        self._clock = clock
        self._interval = flush_interval_s
        self._mark: StoreMark | None = None
        #: Why the node holds its containers; None: it reconciles normally. ``hold`` given
        #: here (the store could not be opened and was set aside) overrides what the mark says.
        self.hold: Hold | None = hold
        self.released: str | None = None  # how the last hold of this run ended
        self._dirty = asyncio.Event()
        self._writing = asyncio.Lock()  # one writer of the file at a time
        self._task: asyncio.Task[None] | None = None
        self._unsubscribe: Callable[[], None] | None = None

    async def __aenter__(self) -> StoreGuard:
        try:
            self._mark = await asyncio.to_thread(read_mark, self.path)
        except StoreError as exc:
            self._log.error("%s; going by the store alone", exc)
        accepted = self._mark.accept if self._mark is not None else None
        if self.hold is None:
            self.hold = assess(self._mark, self._facts(), self._clock())
        if self.hold is not None:
            self._say_held()
        # Peers may hold this node's updates past what a lost or restored store has: its
        # client ids must not go on from the store's clocks.
        if self.hold is not None:
            self._state.renew_client_ids(f"the store is held: {self.hold.reason}")
        elif accepted is not None:
            self._state.renew_client_ids(f"the store was taken as it is: {accepted}")
        await self._write()
        self._unsubscribe = self._state.subscribe_updates(self._on_stored)
        self._task = asyncio.create_task(self._flush_loop(), name="store-mark")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._write()

    def _facts(self) -> StoreFacts:
        st = self._state
        seqs = st.doc_seqs
        return StoreFacts(
            seqs,
            st.load_problems,
            units={d: sum(st.stored_clocks(d).values()) for d in seqs},
            clocks={st.node_doc: dict(st.stored_clocks(st.node_doc))},
        )

    @property
    def mark(self) -> StoreMark | None:
        """The mark as last written: while held, what the store had before the loss."""
        return self._mark

    def _on_stored(self, update: StoredUpdate, origin: Origin) -> None:
        self._dirty.set()

    async def _flush_loop(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            await self._write()
            await asyncio.sleep(self._interval)

    async def _write(self) -> None:
        async with self._writing:
            mark = next_mark(self._mark, self._facts(), self.hold, self._clock())
            writing = asyncio.ensure_future(asyncio.to_thread(write_mark, self.path, mark))
            try:
                await asyncio.shield(writing)
            except asyncio.CancelledError:
                # The thread writes on regardless: let it finish before the lock is free, or
                # the next write (at shutdown) would race it for the same file.
                await asyncio.wait([writing])
                raise
            except StoreError as exc:
                # The hold still applies for as long as this process runs.
                self._log.error("%s: a loss of the store may go unnoticed after a restart", exc)
                return
            self._mark = mark

    def _say_held(self) -> None:
        assert self.hold is not None
        if self.hold.provisional:
            self._log.info(
                "%s: the node will hold any container labelled for it (stop and remove "
                "nothing) once it sees Podman",
                self.hold.reason,
            )
            return
        self._log.error(
            "store lost: %s. Holding every container of this node: nothing is stopped or "
            "removed until one of: %s",
            self.hold.reason,
            HOLD_DECISIONS,
        )

    @property
    def holding(self) -> str | None:
        return self.hold.reason if self.hold is not None else None

    async def check(self, containers: int) -> str | None:
        """Why the node holds, given how many containers labelled for it Podman shows."""
        hold = confirm(self.hold, containers)
        if hold != self.hold:
            self.hold = hold
            if hold is None:
                self._log.info("the store is empty and no container of this node exists: new node")
            else:
                self._say_held()
            await self._write()
        return self.holding

    async def release(self, why: str) -> Hold | None:
        """End the hold, taking the store as it is now; returns the hold that ended."""
        old, self.hold = self.hold, None
        if old is not None:
            self.released = why
            self._log.warning("store hold lifted (%s): reconciling from the store as it is", why)
        await self._write()
        return old

    def view(self) -> dict[str, Any] | None:
        """The hold for status (None when the node is not held)."""
        if self.hold is None:
            return None
        return {**self.hold.to_dict(), "decide": HOLD_DECISIONS}
