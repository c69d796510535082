"""The node's watchers share one loop (node/watch.py): a pass per burst of store changes, a
clock tick when asked, a failing pass logged once and retried, and an end when a pass says so."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pytest

from noderuntime.node.watch import StoreWatch


class FakeState:
    def __init__(self) -> None:
        self.listeners: list[Callable[[], None]] = []

    def subscribe(self, fn: Callable[[], None]) -> Callable[[], None]:
        self.listeners.append(fn)
        return lambda: self.listeners.remove(fn)

    def changed(self) -> None:
        for fn in list(self.listeners):
            fn()


class Counting(StoreWatch):
    def __init__(self, state: Any, *, tick_s: float | None = None, fail: int = 0) -> None:
        super().__init__(state, name="counting", log=logging.getLogger("t"), tick_s=tick_s)
        self.passes = 0
        self.fail = fail
        self.done_after: int | None = None

    async def step(self) -> bool:
        self.passes += 1
        if self.passes <= self.fail:
            raise RuntimeError("store unavailable")
        return self.done_after is not None and self.passes >= self.done_after


async def until(cond: Callable[[], bool], poke: Callable[[], None] = lambda: None) -> None:
    async with asyncio.timeout(10):
        while not cond():
            poke()
            await asyncio.sleep(0.01)


async def test_a_burst_of_changes_costs_one_pass_and_leaving_unsubscribes() -> None:
    state = FakeState()
    async with Counting(state) as w:
        await until(lambda: w.passes == 1)  # the first pass over what is held
        for _ in range(50):
            state.changed()
        await until(lambda: w.passes == 2)
        await asyncio.sleep(0.05)
        assert w.passes == 2
    assert state.listeners == []


async def test_a_failing_pass_is_logged_once_and_tried_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    state = FakeState()
    async with Counting(state, fail=3) as w:
        await until(lambda: w.passes >= 4, poke=state.changed)
    assert [r.message for r in caplog.records].count(
        "counting: a pass failed; trying again at the next change"
    ) == 1


async def test_the_tick_runs_passes_without_changes_and_a_pass_can_end_it() -> None:
    w = Counting(FakeState(), tick_s=0.01)
    w.done_after = 5
    async with w:
        await until(lambda: w._task is not None and w._task.done())
    assert w.passes == 5
