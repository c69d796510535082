"""Nothing is reported as stored, equal or unchanged before it is durable (issue 9, section 8).

The store's commits are held by the test (``HeldStore``): a held commit is a write whose fsync
has not happened yet, and "kill -9" is opening the store again without the held commits.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any, cast

from noderuntime.api.routes import build_routes
from noderuntime.crdt import schema
from noderuntime.crdt.state import StateStore
from noderuntime.crdt.store import MemoryStore, NewUpdate
from noderuntime.identity import keys as identity

IDENT = identity.generate("node:n1")


def services(st: StateStore) -> Any:
    """What workloads.apply uses of the node: its store, and that it is a plain node that
    does not sync (so it may sign fleet changes itself)."""
    facts = SimpleNamespace(node_id="n1", is_hub=False)
    return SimpleNamespace(state=st, sync=lambda: None, facts=facts)


class HeldStore(MemoryStore):
    """A memory store whose commits wait, in order, until the test releases them."""

    def __init__(self) -> None:
        super().__init__()
        self.hold = False
        self.held: list[tuple[Sequence[NewUpdate], asyncio.Future[list[int]]]] = []
        self.holds = 0  # commits held so far
        self._queued = asyncio.Condition()

    def enqueue(self, updates: Sequence[NewUpdate]) -> asyncio.Future[list[int]]:
        if not self.hold:
            return super().enqueue(updates)
        fut: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
        self.held.append((updates, fut))
        self.holds += 1
        asyncio.get_running_loop().create_task(self._tell())
        return fut

    async def _tell(self) -> None:
        async with self._queued:
            self._queued.notify_all()

    async def queued(self, n: int) -> None:
        """Return once ``n`` commits have been held (released or not)."""
        async with self._queued:
            await self._queued.wait_for(lambda: self.holds >= n)

    def release(self, n: int | None = None) -> None:
        """Commit the first ``n`` held commits (all by default), in order."""
        n = len(self.held) if n is None else n
        for updates, fut in self.held[:n]:
            fut.set_result(super().enqueue(updates).result())
        del self.held[:n]

    def crash(self) -> None:
        """kill -9: what was not committed is gone."""
        self.held.clear()
        self.hold = False


def make(store: MemoryStore) -> StateStore:
    return StateStore(store, IDENT, node_id="n1", site="s1")


def put(name: str, image: str) -> Any:
    return lambda doc: schema.put_workload(doc, name, {"metadata": {"name": name}, "image": image})


def status(phase: str) -> Any:
    return lambda doc: schema.put_status(doc, "other", schema.StatusRecord(phase))


def workload(name: str, image: str) -> str:
    return (
        "apiVersion: noderuntime/v1\nkind: Workload\n"
        f"metadata: {{name: {name}}}\nspec:\n  image: {image}\n"
    )


async def test_views_exports_and_state_vectors_hold_only_durable_changes() -> None:
    store = HeldStore()
    async with make(store) as st:
        await st.write(st.fleet_doc, put("web", "v1"))
        durable_sv = st.state_vector(st.fleet_doc)
        store.hold = True
        # A commit in progress (another document's), and X queued behind it.
        earlier = asyncio.create_task(st.write(st.node_doc, status("Running")))
        x = asyncio.create_task(st.write(st.fleet_doc, put("web", "v2")))
        await store.queued(2)
        store.release(1)
        await earlier  # durable: every reader rebuilds from the documents now
        assert st.snapshot().fleet.workloads["web"]["image"] == "v1"
        exported = cast(dict[str, Any], st.read(st.fleet_doc, schema.export_doc))
        assert "v2" not in json.dumps(exported)
        assert st.state_vector(st.fleet_doc) == durable_sv
        assert not x.done()
        store.release()
        await x
        assert st.snapshot().fleet.workloads["web"]["image"] == "v2"
        assert st.state_vector(st.fleet_doc) != durable_sv


async def test_a_no_op_write_answers_once_what_it_found_is_durable() -> None:
    store = HeldStore()
    async with make(store) as st:
        store.hold = True
        x = asyncio.create_task(st.write(st.fleet_doc, put("web", "v2")))
        await store.queued(1)
        # Finds web already there (in the working doc): it must wait for that to be durable.
        again = asyncio.create_task(st.write(st.fleet_doc, lambda doc: None))
        await asyncio.sleep(0)  # it runs up to waiting for X's commit
        assert not again.done()
        store.release()
        await x
        assert (await again).seq is None


async def test_a_repeated_apply_does_not_answer_before_the_first_is_durable() -> None:
    """The field report: apply X queued behind a commit in progress, repeat it, kill -9.

    The repeat used to answer "unchanged" from the in-memory documents; X was then lost.
    """
    store = HeldStore()
    st = make(store)
    await st.__aenter__()
    apply = build_routes(services(st))["workloads.apply"].handler
    assert apply is not None
    await apply({"yaml": workload("web", "v1")})
    store.hold = True
    earlier = asyncio.create_task(st.write(st.node_doc, status("Running")))
    first = asyncio.create_task(apply({"yaml": workload("web", "v2")}))
    await store.queued(2)
    store.release(1)
    await earlier
    repeat = asyncio.create_task(apply({"yaml": workload("web", "v2")}))
    # The repeat either answers at once (the defect) or queues a commit of its own.
    queued = asyncio.create_task(store.queued(3))
    await asyncio.wait([repeat, queued], return_when=asyncio.FIRST_COMPLETED)
    answered = repeat.result() if repeat.done() else None
    queued.cancel()
    assert answered is None, f"answered {answered} while X was not durable"
    # kill -9 now: X was never acknowledged, and nothing claims it was.
    store.crash()
    first.cancel()
    repeat.cancel()
    async with make(store) as after:
        assert after.snapshot().fleet.workloads["web"]["spec"]["image"] == "v1"


async def test_a_repeated_apply_answers_after_the_value_is_durable() -> None:
    store = HeldStore()
    async with make(store) as st:
        apply = build_routes(services(st))["workloads.apply"].handler
        assert apply is not None
        store.hold = True
        first = asyncio.create_task(apply({"yaml": workload("web", "v2")}))
        await store.queued(1)
        repeat = asyncio.create_task(apply({"yaml": workload("web", "v2")}))
        await store.queued(2)
        store.release()
        assert await first == [{"name": "web", "result": "created"}]
        # Its own write is what made the value durable for it: it does not say "unchanged".
        assert await repeat == [{"name": "web", "result": "created"}]
        assert await apply({"yaml": workload("web", "v2")}) == [
            {"name": "web", "result": "unchanged"}
        ]
