"""The live documents: durable signed writes, snapshots, compaction, reload."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from noderuntime.crdt import schema
from noderuntime.crdt.envelope import signing_input
from noderuntime.crdt.state import StateStore
from noderuntime.crdt.store import MemoryStore, NewUpdate, SQLiteStore
from noderuntime.errors import StoreError
from noderuntime.identity import keys as identity

IDENT = identity.generate("node:n1")


def make(store: Any, compact_every: int = 1000) -> StateStore:
    return StateStore(store, IDENT, node_id="n1", site="s1", compact_every=compact_every)


def put(name: str, image: str = "img") -> Any:
    return lambda doc: schema.put_workload(doc, name, {"metadata": {"name": name}, "image": image})


async def test_write_is_signed_and_visible_in_snapshot(tmp_path: Path) -> None:
    async with make(SQLiteStore(tmp_path / "s.db")) as st:
        seen: list[int] = []
        st.subscribe(lambda: seen.append(st.generation))
        result = await st.write(st.fleet_doc, put("web"))
        assert result.seq is not None and seen
        assert st.snapshot().fleet.workloads["web"]["image"] == "img"
        (u,) = await st._store.updates_since("fleet", 0)
        assert u.author == "node:n1"
        assert identity.verify(
            IDENT.public_bytes, u.signature, signing_input("fleet", u.data, u.meta)
        )
        # ...and a signature does not carry over to another document or other metadata.
        assert not identity.verify(
            IDENT.public_bytes, u.signature, signing_input("node/n1", u.data, u.meta)
        )
        assert not identity.verify(
            IDENT.public_bytes, u.signature, signing_input("fleet", u.data, "{}x")
        )


async def test_summary_and_on_behalf_are_recorded_and_signed() -> None:
    async with make(MemoryStore()) as st:
        await st.write(st.node_doc, put("web"), summary="disable web", on_behalf="technician:ann")
        (u,) = await st.history(10)
        meta = json.loads(u.meta)
        # The workload record's HLC, which the mutation returned, is signed in too.
        assert meta.pop("hlc")
        assert meta == {"summary": "disable web", "onBehalf": "technician:ann"}
        assert identity.verify(
            IDENT.public_bytes, u.signature, signing_input(u.doc, u.data, u.meta)
        )


async def test_no_op_write_stores_nothing() -> None:
    async with make(MemoryStore()) as st:
        await st.write(st.fleet_doc, put("web"))
        r = await st.write(st.fleet_doc, lambda doc: None)
        assert r.seq is None
        assert (await st.store_stats()).updates == 1


async def test_state_survives_restart_and_compaction(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    async with make(SQLiteStore(path), compact_every=10) as st:
        for i in range(35):
            await st.write(st.fleet_doc, put(f"w{i}", image=f"img{i}"))
        await st.write(st.fleet_doc, lambda doc: schema.delete_workload(doc, "w3"))
        stats = await st.store_stats()
        assert stats.snapshots >= 1
    async with make(SQLiteStore(path), compact_every=10) as st:
        wl = st.snapshot().fleet.workloads
        assert len(wl) == 34 and "w3" not in wl and wl["w34"]["image"] == "img34"
        # Every signed update is kept for peers even after snapshots.
        assert (await st.store_stats()).updates == 36


async def test_concurrent_writes_all_land_in_order(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    async with make(SQLiteStore(path)) as st:
        await asyncio.gather(
            *(st.write(st.fleet_doc, put("web", image=f"v{i}")) for i in range(100))
        )
        assert st.snapshot().fleet.workloads["web"]["image"] == "v99"
    async with make(SQLiteStore(path)) as st:
        assert st.snapshot().fleet.workloads["web"]["image"] == "v99"


class FailingStore(MemoryStore):
    fail = False

    def enqueue(self, updates: Any) -> asyncio.Future[list[int]]:
        if self.fail:
            fut: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
            fut.set_exception(StoreError("disk full"))
            return fut
        return super().enqueue(updates)


async def test_failed_commit_leaves_memory_as_disk() -> None:
    store = FailingStore()
    async with make(store) as st:
        await st.write(st.fleet_doc, put("web", "v1"))
        store.fail = True
        with pytest.raises(StoreError, match="disk full"):
            await st.write(st.fleet_doc, put("web", "v2"))
        assert st.snapshot().fleet.workloads["web"]["image"] == "v1"


async def test_corrupt_update_in_log_is_skipped_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    async with make(SQLiteStore(path)) as st:
        await st.write(st.fleet_doc, put("web"))
    async with SQLiteStore(path) as raw:
        await raw.append([NewUpdate("fleet", b"\xff\x01garbage", "node:n1", b"x" * 64, 1.0)])
    async with make(SQLiteStore(path)) as st:
        assert "web" in st.snapshot().fleet.workloads
        # pycrdt either rejects it (counted) or holds it as pending; either way the node loads.
        assert st.load_problems in (0, 1)
        await st.write(st.fleet_doc, put("api"))
        assert {"web", "api"} <= set(st.snapshot().fleet.workloads)


async def test_status_records_round_trip() -> None:
    async with make(MemoryStore()) as st:
        rec = schema.StatusRecord("Running", "abc", 2, "healthy", 5.0, "", "h", None)
        await st.write(st.node_doc, lambda doc: schema.put_status(doc, "web", rec))
        assert st.snapshot().node.status["web"] == rec


async def test_cancelled_writer_neither_loses_nor_forgets_its_update(tmp_path: Path) -> None:
    """A caller cancelled while its append is queued: the update still commits, and the live
    doc (and every other queued write) stays in step with the disk."""
    path = tmp_path / "s.db"
    async with make(SQLiteStore(path)) as st:
        writes = [asyncio.create_task(st.write(st.fleet_doc, put(f"w{i}"))) for i in range(20)]
        await asyncio.sleep(0)
        writes[5].cancel()
        results = await asyncio.gather(*writes, return_exceptions=True)
        assert isinstance(results[5], asyncio.CancelledError)
        await st._store.drain()
        assert set(st.snapshot().fleet.workloads) == {f"w{i}" for i in range(20)}
    async with make(SQLiteStore(path)) as st:
        assert set(st.snapshot().fleet.workloads) == {f"w{i}" for i in range(20)}


async def test_closing_waits_for_an_ingest_whose_caller_was_cancelled(tmp_path: Path) -> None:
    """The sync engine stops (cancelling an ingest it awaited), then the store closes: the
    shielded ingest finishes and is durable instead of failing on a closed database."""
    other = identity.generate("node:n2")
    async with make(SQLiteStore(tmp_path / "a.db")) as source:
        await source.write(source.fleet_doc, put("web"))
        (u,) = await source._store.updates_since("fleet", 0)
    signed = NewUpdate("fleet", u.data, other.name, other.sign(b"x"), u.ts, u.meta)
    st = make(SQLiteStore(tmp_path / "b.db"))
    await st.__aenter__()
    caller = asyncio.create_task(st.ingest([signed]))
    await asyncio.sleep(0)  # the ingest has started
    caller.cancel()
    await st.__aexit__(None, None, None)
    assert caller.cancelled()
    async with make(SQLiteStore(tmp_path / "b.db")) as again:
        assert "web" in again.snapshot().fleet.workloads
