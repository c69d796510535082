"""A node writes each document with one CRDT client id across restarts (issue 9, section 12),
and takes a new one whenever the store cannot vouch for that id's clock."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path
from typing import Any

from noderuntime.crdt import schema
from noderuntime.crdt.clocks import parse_update
from noderuntime.crdt.guard import StoreGuard
from noderuntime.crdt.mark import MARK_FILE, accept_store
from noderuntime.crdt.state import IngestResult, StateStore
from noderuntime.crdt.store import SCHEMA_VERSION, NewUpdate, SQLiteStore, store_fingerprint
from noderuntime.identity import keys as identity

IDENT = identity.generate("node:n1")


def make(path: Path) -> StateStore:
    return StateStore(SQLiteStore(path), IDENT, node_id="n1", site="s1")


def status(phase: str, since: float) -> Any:
    return lambda doc: schema.put_status(doc, "web", schema.StatusRecord(phase, since=since))


async def write_once(path: Path, since: float) -> tuple[int, int]:
    """One process lifetime writing one status record: (its client id, its update's size)."""
    async with make(path) as st:
        result = await st.write(st.node_doc, status("Running", since))
        (u,) = await st.history(1)
        assert u.seq == result.seq
        (client,) = parse_update(u.data).ranges
        return client, len(u.data)


async def test_restarts_reuse_the_client_id_and_updates_stop_growing(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    runs = [await write_once(path, float(i)) for i in range(30)]
    assert len({client for client, _ in runs}) == 1
    # With a new id per start, each update carried one more delete range per restart.
    assert runs[-1][1] <= runs[1][1] + 8, [size for _, size in runs]


async def test_the_clock_goes_on_from_what_is_stored(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    async with make(path) as st:
        await st.write(st.node_doc, status("Running", 1.0))
        end = max(st.stored_clocks(st.node_doc).values())
    async with make(path) as st:
        await st.write(st.node_doc, status("Failed", 2.0))
        (u,) = await st.history(1)
        ((start, _),) = parse_update(u.data).ranges.values()
        assert start == end


async def test_a_copied_store_file_takes_a_new_client_id(tmp_path: Path) -> None:
    original = tmp_path / "a" / "state.db"
    original.parent.mkdir()
    first, _ = await write_once(original, 1.0)
    clone = tmp_path / "b" / "state.db"
    clone.parent.mkdir()
    shutil.copy(original, clone)
    assert (await write_once(clone, 2.0))[0] != first
    assert (await write_once(original, 3.0))[0] == first


async def test_a_store_whose_updates_of_that_id_do_not_load_takes_a_new_one(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state.db"
    first, _ = await write_once(path, 1.0)
    await write_once(path, 2.0)
    with sqlite3.connect(path) as db:  # what the snapshot covered is lost: the clock has a hole
        db.execute("UPDATE snapshots SET data = x'ff01'")
    assert (await write_once(path, 3.0))[0] != first


async def test_a_restored_or_lost_store_takes_new_client_ids(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    first, _ = await write_once(path, 1.0)
    accept_store(tmp_path / MARK_FILE, "restore")
    async with make(path) as st, StoreGuard(tmp_path / MARK_FILE, st):
        await st.write(st.node_doc, status("Running", 2.0))
        (u,) = await st.history(1)
        assert first not in parse_update(u.data).ranges
    second, _ = await write_once(path, 3.0)
    assert second != first
    # The mark now says more than the store holds (a truncated store): held, new id again.
    with sqlite3.connect(path) as db:
        db.execute("DELETE FROM snapshots")
        db.execute("DELETE FROM updates WHERE seq >= 2")
    async with make(path) as st, StoreGuard(tmp_path / MARK_FILE, st) as guard:
        assert guard.hold is not None
        await st.write(st.node_doc, status("Running", 4.0))
        (u,) = await st.history(1)
        assert second not in parse_update(u.data).ranges


class _SameCopy(SQLiteStore):
    """A store file cloned at the block level (same inode, same machine id): the store cannot
    tell it from the original."""

    def __init__(self, path: Path, original: Path) -> None:
        super().__init__(path)
        self._original = original

    async def open(self) -> None:
        await super().open()
        self._fingerprint = store_fingerprint(self._original)


async def twin_update(path: Path, tmp_path: Path) -> tuple[int, NewUpdate]:
    """What a block-level clone of the store at ``path`` writes: (the shared id, its update)."""
    twin = tmp_path / "twin.db"
    shutil.copy(path, twin)
    async with StateStore(_SameCopy(twin, path), IDENT, node_id="n1", site="s1") as other:
        await other.write(other.node_doc, status("Failed", 2.0))
        (u,) = await other.history(1)
    (client,) = parse_update(u.data).ranges
    return client, NewUpdate(u.doc, u.data, u.author, u.signature, u.ts, u.meta)


async def test_an_update_reusing_our_client_id_and_clocks_is_refused_and_we_move_on(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state.db"
    ours, _ = await write_once(path, 1.0)
    client, theirs = await twin_update(path, tmp_path)
    assert client == ours
    async with make(path) as st:
        await st.write(st.node_doc, status("Running", 3.0))  # the same clocks, other content
        assert await st.ingest([theirs]) == [IngestResult.CLIENT_CONFLICT]
        await st.write(st.node_doc, status("Pending", 4.0))
        (u,) = await st.history(1)
        assert ours not in parse_update(u.data).ranges
        assert st.snapshot().node.status["web"].phase == "Pending"


async def test_an_update_of_our_client_id_past_our_clock_is_taken_and_we_move_on(
    tmp_path: Path,
) -> None:
    """A machine snapshot restored: peers send back what the node wrote after it."""
    path = tmp_path / "state.db"
    ours, _ = await write_once(path, 1.0)
    _, theirs = await twin_update(path, tmp_path)
    async with make(path) as st:
        assert await st.ingest([theirs]) == [IngestResult.APPLIED]
        assert st.snapshot().node.status["web"].phase == "Failed"
        await st.write(st.node_doc, status("Running", 3.0))
        (u,) = await st.history(1)
        assert ours not in parse_update(u.data).ranges


async def test_a_version_2_store_is_migrated_and_reads(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    async with make(path) as st:
        await st.write(st.fleet_doc, lambda doc: schema.put_workload(doc, "web", {"v": 1}))
    with sqlite3.connect(path) as db:  # as schema 2 left it
        db.execute("DROP TABLE local_clients")
        db.execute("PRAGMA user_version=2")
    async with make(path) as st:
        assert st.snapshot().fleet.workloads["web"] == {"v": 1}
        await st.write(st.fleet_doc, lambda doc: schema.put_workload(doc, "web", {"v": 2}))
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 4
        assert db.execute("SELECT count(*) FROM local_clients").fetchone()[0] == 1
