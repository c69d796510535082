"""A store judged against its mark (the guard) and checked throughout (doctor), on real SQLite."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from noderuntime.crdt import schema
from noderuntime.crdt.check import inspect_store
from noderuntime.crdt.guard import StoreGuard
from noderuntime.crdt.mark import MARK_FILE, HoldKind, accept_store, read_mark
from noderuntime.crdt.state import StateStore
from noderuntime.crdt.store import SQLiteStore
from noderuntime.host.doctor import Status, check_store
from noderuntime.identity import keys as identity

IDENT = identity.generate("node:n1")


def state(data_dir: Path) -> StateStore:
    return StateStore(SQLiteStore(data_dir / "state.db"), IDENT, node_id="n1", site="s1")


def put(name: str) -> Any:
    return lambda doc: schema.put_workload(doc, name, {"metadata": {"name": name}, "image": "i"})


def remove_store(data_dir: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{data_dir / 'state.db'}{suffix}").unlink(missing_ok=True)


async def run_node(data_dir: Path, *writes: str, containers: int = 1) -> StoreGuard:
    """What `noderuntime run` does with its store: open, guard, write, look at Podman, stop."""
    async with state(data_dir) as st, StoreGuard(data_dir / MARK_FILE, st) as guard:
        await st.write(st.node_doc, lambda doc: schema.put_info(doc, {"nodeId": "n1"}))
        for name in writes:
            await st.write(st.fleet_doc, put(name))
        await guard.check(containers)
    return guard


async def test_a_node_whose_store_is_intact_never_holds(tmp_path: Path) -> None:
    assert (await run_node(tmp_path, "a", "b", containers=0)).hold is None
    assert (await run_node(tmp_path, "c")).hold is None
    mark = read_mark(tmp_path / MARK_FILE)
    assert mark is not None and mark.docs["fleet"] >= 4 and mark.hold is None


async def test_a_new_node_without_containers_is_not_held(tmp_path: Path) -> None:
    assert (await run_node(tmp_path, containers=0)).hold is None
    assert (await run_node(tmp_path, containers=3)).hold is None  # its history is known now


async def test_an_empty_store_with_containers_and_no_mark_holds(tmp_path: Path) -> None:
    guard = await run_node(tmp_path, containers=2)
    assert guard.hold is not None and guard.hold.kind is HoldKind.UNKNOWN
    assert not guard.hold.provisional and "2 container(s)" in guard.hold.reason


async def test_a_moved_store_holds_until_released_and_across_restarts(tmp_path: Path) -> None:
    await run_node(tmp_path, "a", containers=0)
    remove_store(tmp_path)
    guard = await run_node(tmp_path)
    assert guard.hold is not None and guard.hold.kind is HoldKind.MISSING
    again = await run_node(tmp_path)  # the store is not empty any more: the mark says held
    assert again.hold == guard.hold
    async with state(tmp_path) as st, StoreGuard(tmp_path / MARK_FILE, st) as g:
        assert await g.release("reset by test") == guard.hold
        assert g.holding is None and g.released == "reset by test"
    assert (await run_node(tmp_path)).hold is None


async def test_lost_rows_are_a_truncated_store_and_doctor_says_so(tmp_path: Path) -> None:
    await run_node(tmp_path, "a", "b", "c", containers=0)
    with sqlite3.connect(tmp_path / "state.db") as conn:
        last = conn.execute("SELECT MAX(seq) FROM updates WHERE doc = 'fleet'").fetchone()[0]
        conn.execute("DELETE FROM updates WHERE seq = ?", (last,))
        conn.execute("DELETE FROM snapshots")
    check = check_store(tmp_path)
    assert check is not None and check.status is Status.FAIL
    assert "fleet ends at sequence" in check.detail and "reset --i-mean-it" in check.fix
    guard = await run_node(tmp_path)
    assert guard.hold is not None and guard.hold.kind is HoldKind.TRUNCATED


async def test_doctor_finds_an_altered_update_that_still_decodes(tmp_path: Path) -> None:
    await run_node(tmp_path, "web", containers=0)
    ok = check_store(tmp_path)
    assert ok is not None and ok.status is Status.OK and "every update" in ok.detail
    with sqlite3.connect(tmp_path / "state.db") as conn:
        seq, data = conn.execute(
            "SELECT seq, data FROM updates WHERE doc = 'fleet' ORDER BY seq LIMIT 1"
        ).fetchone()
        # "web" -> "wex" inside the stored JSON: pycrdt decodes it, the digest does not match.
        altered = data.replace(b'"web"', b'"wex"')
        assert altered != data
        conn.execute("UPDATE updates SET data = ? WHERE seq = ?", (altered, seq))
    found = inspect_store(tmp_path / "state.db")
    assert [p.split(":")[0] for p in found.bad_updates] == [f"seq {seq} of fleet"]
    check = check_store(tmp_path)
    assert check is not None and check.status is Status.FAIL
    assert "could not be decoded or were altered" in check.detail


async def test_doctor_fails_on_a_missing_store_and_a_hold_and_trusts_a_restore(
    tmp_path: Path,
) -> None:
    assert check_store(tmp_path) is None  # no node here at all
    await run_node(tmp_path, "a", containers=0)
    remove_store(tmp_path)
    check = check_store(tmp_path)
    assert check is not None and check.status is Status.FAIL and "is missing" in check.detail
    await run_node(tmp_path)
    check = check_store(tmp_path)
    assert check is not None and check.status is Status.FAIL
    assert "the node holds its containers: state.db is missing" in check.detail
    accept_store(tmp_path / MARK_FILE, "restore")
    check = check_store(tmp_path)
    assert check is not None and check.status is Status.OK
    assert (await run_node(tmp_path)).hold is None


async def test_doctor_reports_a_database_that_is_not_one(tmp_path: Path) -> None:
    (tmp_path / "identity.key").write_text("x")
    (tmp_path / "state.db").write_bytes(b"not a database at all" * 100)
    check = check_store(tmp_path)
    assert check is not None and check.status is Status.FAIL and "cannot read" in check.detail


async def test_only_bad_content_counts_as_damaged_and_is_set_aside(tmp_path: Path) -> None:
    from noderuntime.crdt.check import is_damaged, set_aside
    from noderuntime.errors import StoreCorruptError, StoreError

    db = tmp_path / "state.db"
    db.write_bytes(b"garbage" * 1000)
    try:
        async with state(tmp_path):
            raise AssertionError("opened a file that is no database")
    except StoreCorruptError as exc:
        assert is_damaged(exc)
    locked = StoreError("cannot open")
    locked.__cause__ = sqlite3.OperationalError("database is locked")
    assert not is_damaged(locked) and not is_damaged(StoreError("newer schema"))
    aside = set_aside(db, now=0)
    assert not db.exists() and aside.name.startswith("state.db.damaged-19")
    assert (await run_node(tmp_path, containers=0)).hold is None  # a fresh store opens


async def test_a_mark_write_cut_short_at_shutdown_never_lands_after_the_last_one(
    tmp_path: Path, monkeypatch: Any
) -> None:
    import asyncio
    import threading

    from noderuntime.crdt import guard as guard_module

    gate = threading.Event()
    second = asyncio.Event()
    loop = asyncio.get_running_loop()
    calls: list[Any] = []
    real = guard_module.write_mark

    def slow_second_write(path: Path, mark: Any) -> None:
        calls.append(mark)
        if len(calls) == 2:
            loop.call_soon_threadsafe(second.set)
            gate.wait(10)  # the flush loop's write, still in its thread at shutdown
        real(path, mark)

    monkeypatch.setattr(guard_module, "write_mark", slow_second_write)
    path = tmp_path / MARK_FILE
    async with state(tmp_path) as st:
        guard = await StoreGuard(path, st, flush_interval_s=0).__aenter__()
        await st.write(st.fleet_doc, put("a"))  # wakes the flush loop: write 2
        await asyncio.wait_for(second.wait(), 10)
        closing = asyncio.create_task(guard.__aexit__(None, None, None))
        await asyncio.sleep(0.2)  # room for a last write that does not wait (the defect)
        gate.set()
        await closing
    assert len(calls) == 3 and read_mark(path) == calls[-1]
