"""One contract, every AuditStore implementation."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from noderuntime.audit.chain import GENESIS, Checkpoint, Entry, chain_entry
from noderuntime.audit.store import AuditStore, MemoryAuditStore, SQLiteAuditStore, WitnessAlert


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AuditStore]:
    s: AuditStore = (
        MemoryAuditStore() if request.param == "memory" else SQLiteAuditStore(tmp_path / "a.db")
    )
    async with s:
        yield s


def chain(n: int, start: int = 1, prev: bytes = GENESIS) -> list[Entry]:
    out = []
    for seq in range(start, start + n):
        e = chain_entry(prev, seq, 1000.0 + seq, "api.write", "uid:0", {"method": "m", "n": seq})
        out.append(e)
        prev = e.hash
    return out


async def test_entries_round_trip_in_order(store: AuditStore) -> None:
    entries = chain(5)
    await store.append(entries[:2])
    await store.append(entries[2:])
    assert await store.entries() == entries
    assert await store.last() == entries[-1]
    assert await store.entry(3) == entries[2]
    assert await store.entries(after_seq=3) == entries[3:]
    assert await store.entries(since_ts=1004.0) == entries[3:]
    assert await store.entries(limit=2) == entries[:2]
    assert await store.newest(2) == entries[3:]


async def test_concurrent_appends_all_land(store: AuditStore) -> None:
    entries = chain(30)
    await asyncio.gather(*(store.append([e]) for e in entries))
    assert [e.seq for e in await store.entries()] == list(range(1, 31))


async def test_prune_keeps_checkpoints(store: AuditStore) -> None:
    entries = chain(6)
    await store.append(entries)
    cp = Checkpoint("n1", 3, entries[2].hash, 5.0, ((1, entries[0].hash),), b"s" * 64)
    await store.add_checkpoint(cp)
    assert await store.prune_through(3) == 3
    assert [e.seq for e in await store.entries()] == [4, 5, 6]
    assert await store.checkpoints() == [cp]


async def test_witness_records(store: AuditStore) -> None:
    assert await store.witnessed("n2") is None
    cp = Checkpoint("n2", 9, b"h" * 32, 5.0)
    await store.save_witnessed(cp, 6.0)
    assert await store.witnessed("n2") == cp
    await store.add_alert(WitnessAlert("n2", 7.0, "cut"))
    assert await store.alerts() == [WitnessAlert("n2", 7.0, "cut")]


async def test_used_bytes_grows(store: AuditStore) -> None:
    before = await store.used_bytes()
    await store.append(chain(500))
    assert await store.used_bytes() > before
