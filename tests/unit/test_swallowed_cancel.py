"""Long-running loops stop when cancelled even if a call below them swallowed the cancellation.

Python 3.11's ``asyncio.wait_for`` (every nats-py request) returns its result instead of raising
when the cancel lands in the same loop step as the result (CPython gh-86296). A CI run hung for
300 s in a site teardown because the lease manager's loop went round again after that.
``Swallowing`` reproduces the library's behaviour deterministically.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from noderuntime.aio import raise_if_cancelled
from noderuntime.node.watch import StoreWatch
from noderuntime.reconcile.placement import PlacementWant
from noderuntime.site.kv import Entry, MemoryLeaseStore
from noderuntime.site.manager import SiteManager
from tests.unit.test_store_watch import FakeState


async def swallow_one_cancel() -> None:
    """What wait_for does when its result arrives with the cancel: return normally."""
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        return


class Swallowing(MemoryLeaseStore):
    async def read(self, key: str) -> Entry:
        await swallow_one_cancel()
        return await super().read(key)


class SwallowingWatch(StoreWatch):
    async def step(self) -> bool:
        await swallow_one_cancel()
        return False


async def test_raise_if_cancelled_raises_only_after_a_cancel_request() -> None:
    raise_if_cancelled()  # nothing pending: no-op

    async def body() -> str:
        await swallow_one_cancel()
        raise_if_cancelled()
        return "went on"

    task = asyncio.create_task(body())
    await asyncio.sleep(0)
    task.cancel()
    async with asyncio.timeout(5):
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert task.cancelled()


async def test_the_site_manager_stops_though_a_store_call_swallowed_its_cancel() -> None:
    manager = SiteManager(node_id="n1", labels={}, store=Swallowing(), on_change=lambda: None)
    await manager.__aenter__()
    manager.update({"grid": PlacementWant(replicas=1)}, frozenset(), True)
    await asyncio.sleep(0.2)  # the loop is inside a read now
    async with asyncio.timeout(10):
        await manager.__aexit__(None, None, None)


async def test_a_store_watch_stops_though_its_pass_swallowed_the_cancel() -> None:
    watch = SwallowingWatch(FakeState(), name="w", log=logging.getLogger("t"))
    await watch.__aenter__()
    await asyncio.sleep(0.1)
    async with asyncio.timeout(10):
        await watch.__aexit__(None, None, None)
