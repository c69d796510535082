"""A level-triggered background pass over the state store, for the node's small watchers
(the rollout driver, revocations, rekey).

Any store change marks it dirty (and, with ``tick_s``, the clock does too: for what is timed,
like gates); one :meth:`StoreWatch.step` runs at a time and reads everything fresh, so a burst
of changes costs one pass. A failing pass is logged once per distinct error and tried again at
the next change: one bad pass never ends the watcher.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Self

from noderuntime.aio import raise_if_cancelled

if TYPE_CHECKING:
    from noderuntime.crdt.state import StateStore


class StoreWatch(abc.ABC):
    """``async with`` starts it (after :meth:`starting`), leaving stops it. Constructing it
    starts nothing."""

    def __init__(
        self, state: StateStore, *, name: str, log: logging.Logger, tick_s: float | None = None
    ) -> None:
        self._state = state
        self._name = name
        self._log = log
        self._tick_s = tick_s
        self._dirty = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._last_error: str | None = None

    async def starting(self) -> None:
        """What to do once before the first pass (default: nothing)."""
        return None

    def wake_after(self, delay_s: float) -> None:
        """Run a pass again in ``delay_s`` (for a decision that waits for a deadline)."""
        asyncio.get_running_loop().call_later(delay_s, self._dirty.set)

    @abc.abstractmethod
    async def step(self) -> bool:
        """One pass; True when there is nothing left to watch (the watcher ends)."""

    async def __aenter__(self) -> Self:
        await self.starting()
        self._unsubscribe = self._state.subscribe(self._dirty.set)
        self._dirty.set()  # a first pass over what the store already holds
        self._task = asyncio.create_task(self._run(), name=self._name)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            if self._tick_s is None:
                await self._dirty.wait()
            else:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._tick_s):
                        await self._dirty.wait()
            self._dirty.clear()
            try:
                if await self.step():
                    return
                self._last_error = None
            except Exception as exc:
                if str(exc) != self._last_error:
                    self._log.exception(
                        "%s: a pass failed; trying again at the next change", self._name
                    )
                self._last_error = str(exc)
            raise_if_cancelled()
