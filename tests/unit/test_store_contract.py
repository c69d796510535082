"""One contract, every UpdateStore implementation."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from noderuntime.crdt.store import MemoryStore, NewUpdate, SQLiteStore, UpdateStore


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[UpdateStore]:
    s: UpdateStore = MemoryStore() if request.param == "memory" else SQLiteStore(tmp_path / "s.db")
    async with s:
        yield s


def upd(doc: str, data: bytes, ts: float = 1.0) -> NewUpdate:
    return NewUpdate(doc=doc, data=data, author="node:a", signature=b"s" * 64, ts=ts)


async def test_append_assigns_increasing_seqs_in_order(store: UpdateStore) -> None:
    first = await store.append([upd("fleet", b"1"), upd("fleet", b"2")])
    second = await store.append([upd("node/a", b"3")])
    assert first[0] < first[1] < second[0]
    loaded = await store.load("fleet")
    assert [u.data for u in loaded.updates] == [b"1", b"2"]
    assert loaded.snapshot is None and loaded.snapshot_seq == 0
    assert await store.docs() == ["fleet", "node/a"]


async def test_concurrent_appends_keep_call_order(store: UpdateStore) -> None:
    results = await asyncio.gather(*(store.append([upd("d", bytes([i]))]) for i in range(50)))
    seqs = [r[0] for r in results]
    assert seqs == sorted(seqs)
    loaded = await store.load("d")
    assert [u.data[0] for u in loaded.updates] == list(range(50))


async def test_enqueue_queues_at_once_and_resolves_when_durable(store: UpdateStore) -> None:
    futures = [store.enqueue([upd("d", bytes([i]))]) for i in range(5)]
    seqs = [(await f)[0] for f in futures]
    assert seqs == sorted(seqs)
    loaded = await store.load("d")
    assert [u.data[0] for u in loaded.updates] == list(range(5))


async def test_snapshot_hides_covered_log(store: UpdateStore) -> None:
    seqs = await store.append([upd("d", b"a"), upd("d", b"b"), upd("d", b"c")])
    await store.write_snapshot("d", b"SNAP", seqs[1])
    loaded = await store.load("d")
    assert loaded.snapshot == b"SNAP"
    assert loaded.snapshot_seq == seqs[1]
    assert [u.data for u in loaded.updates] == [b"c"]
    # The full signed history stays available for peers.
    assert [u.data for u in await store.updates_since("d", 0)] == [b"a", b"b", b"c"]


async def test_signature_and_author_round_trip(store: UpdateStore) -> None:
    await store.append([NewUpdate("d", b"x", "operator:ann", b"\x01" * 64, 42.5)])
    (u,) = (await store.load("d")).updates
    assert (u.author, u.signature, u.ts) == ("operator:ann", b"\x01" * 64, 42.5)


async def test_recent_is_newest_first_across_docs(store: UpdateStore) -> None:
    await store.append([upd("a", b"1"), upd("b", b"2"), upd("a", b"3")])
    assert [u.data for u in await store.recent(2)] == [b"3", b"2"]


async def test_meta_round_trips(store: UpdateStore) -> None:
    await store.append([NewUpdate("d", b"x", "node:a", b"s" * 64, 1.0, '{"summary":"x"}')])
    assert (await store.load("d")).updates[0].meta == '{"summary":"x"}'


async def test_stats_count(store: UpdateStore) -> None:
    await store.append([upd("d", b"x"), upd("e", b"y")])
    stats = await store.stats()
    assert stats.updates == 2 and stats.snapshots == 0


async def test_sqlite_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    async with SQLiteStore(path) as s:
        await s.append([upd("d", b"x")])
        await s.write_snapshot("d", b"S", 1)
        await s.append([upd("d", b"y")])
    async with SQLiteStore(path) as s:
        loaded = await s.load("d")
        assert loaded.snapshot == b"S" and [u.data for u in loaded.updates] == [b"y"]


async def test_sqlite_refuses_garbage_file(tmp_path: Path) -> None:
    from noderuntime.errors import StoreError

    path = tmp_path / "s.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="state database"):
        async with SQLiteStore(path):
            pass


def _client_update(client_id: int, writes: int) -> bytes:
    """A real pycrdt update from one client, carrying clocks 0..writes."""
    from pycrdt import Doc, Map

    doc: Doc = Doc(client_id=client_id)
    m = doc.get("m", type=Map)
    for i in range(writes):
        m[f"k{i}"] = i
    return doc.get_update()


async def test_updates_for_gap_finds_exactly_what_a_peer_lacks(store: UpdateStore) -> None:
    # More clients than one query batch, as after a partition full of operator changes.
    clients = list(range(1000, 1450))
    await store.append([upd("fleet", _client_update(c, 1 + c % 3)) for c in clients])
    await store.append([upd("other", _client_update(5000, 2))])
    # The peer has clients it saw fully, partly, or not at all, and one we never heard of.
    gap = {c: (0 if c % 2 else 1 + c % 3) for c in clients} | {9999: 0, 5000: 0}
    got = await store.updates_for_gap("fleet", gap)
    want = [c for c in clients if c % 2]  # those behind; the rest are covered
    assert [u.seq for u in got] == sorted(u.seq for u in got)
    assert len(got) == len(want)
    assert all(u.doc == "fleet" for u in got)
    assert len(await store.updates_for_gap("fleet", gap, limit=7)) == 7
    assert await store.updates_for_gap("fleet", {}) == []
