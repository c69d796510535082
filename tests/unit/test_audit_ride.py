"""A control-API write's audit entry rides the write's own state commit (audit/log.py, ``ride``):
after a crash (the committed state of both files, as kill -9 leaves them) the write and its
entry are both there, and the chain still verifies."""

from __future__ import annotations

import asyncio
import sqlite3
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from noderuntime.api.client import ApiClient
from noderuntime.api.server import ApiServer, Params, Route
from noderuntime.audit.chain import AuditKind, Entry
from noderuntime.audit.log import OUTBOX_TOPIC, Audit
from noderuntime.audit.store import MemoryAuditStore, SQLiteAuditStore
from noderuntime.crdt import schema
from noderuntime.crdt.state import StateStore
from noderuntime.crdt.store import SQLiteStore, _Pending
from noderuntime.errors import StoreError
from noderuntime.identity import keys
from noderuntime.identity.principals import node_principal
from noderuntime.sqlitedb import COMMIT_RIDERS, read_outbox

IDENT = keys.generate(node_principal("n1"))


class StalledAuditStore(MemoryAuditStore):
    """An audit.db whose commits never finish while the test runs (the crash comes first)."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()

    async def append(self, entries: Sequence[Entry]) -> None:
        await self.release.wait()
        raise StoreError("audit.db never got these")


def _audit(store: Any, outbox_path: Path | None = None) -> Audit:
    return Audit(
        store, node="n1", sign=IDENT.sign, public_key=IDENT.public_bytes, outbox_path=outbox_path
    )


def _crash_image(src: Path, dst: Path) -> None:
    """What a kill -9 leaves of ``src``: its committed transactions."""
    with sqlite3.connect(src) as a, sqlite3.connect(dst) as b:
        a.backup(b)


async def test_an_api_write_and_its_entry_survive_a_crash_together(tmp_path: Path) -> None:
    stalled = StalledAuditStore()
    update_store = SQLiteStore(tmp_path / "state.db")

    async with (
        _audit(stalled) as audit,
        StateStore(update_store, IDENT, node_id="n1", site="s") as state,
    ):
        audit.outbox = update_store

        async def put(params: Params) -> Any:
            await state.write(state.node_doc, lambda d: schema.put_info(d, {"v": params["v"]}))
            return None

        audit.record(AuditKind.NODE_STARTED, "node:n1")  # rides along: no gap before the write
        with tempfile.TemporaryDirectory(prefix="nra-", dir="/tmp") as tmp:
            sock = Path(tmp) / "api.sock"
            async with (
                ApiServer(sock, {"put": Route(put, write=True)}, audit=audit),
                ApiClient(sock) as client,
            ):
                await client.call("put", {"v": 1, "name": "web"})
        assert audit.head_seq == 2  # one entry for the write, not one more after it
        _crash_image(tmp_path / "state.db", tmp_path / "crashed.db")
        stalled.release.set()

    async with _audit(
        SQLiteAuditStore(tmp_path / "audit.db"), outbox_path=tmp_path / "crashed.db"
    ) as recovered:
        entries = await recovered.store.entries()
        assert [(e.kind, e.fields.get("method"), e.fields.get("name")) for e in entries] == [
            ("node.start", None, None),
            ("api.write", "put", "web"),
        ]
        assert entries[1].fields["outcome"] == "ok"
        assert (await recovered.verify()).ok
        recovered.record(AuditKind.NODE_STARTED, "node:n1")
        assert recovered.head_seq == 3
    async with StateStore(
        SQLiteStore(tmp_path / "crashed.db"), IDENT, node_id="n1", site="s"
    ) as state:
        assert state.snapshot().node.info == {"v": 1}


async def test_ridden_entries_reach_audit_db_and_leave_the_outbox(tmp_path: Path) -> None:
    update_store = SQLiteStore(tmp_path / "state.db")
    async with (
        _audit(SQLiteAuditStore(tmp_path / "audit.db"), tmp_path / "state.db") as audit,
        StateStore(update_store, IDENT, node_id="n1", site="s") as state,
    ):
        audit.outbox = update_store
        for i in range(3):
            token = COMMIT_RIDERS.set(audit.ride(AuditKind.API_WRITE, "uid:0", n=i))
            try:
                await state.write(state.node_doc, lambda d, i=i: schema.put_info(d, {"v": i}))
            finally:
                COMMIT_RIDERS.reset(token)
        assert len(read_outbox(tmp_path / "state.db", OUTBOX_TOPIC, 0)) >= 1
        await audit.flush()
        await update_store.drain()
        assert [e.fields["n"] for e in await audit.store.entries()] == [0, 1, 2]
        assert read_outbox(tmp_path / "state.db", OUTBOX_TOPIC, 0) == []


async def test_entries_of_a_rolled_back_commit_are_pulled_again() -> None:
    async with _audit(MemoryAuditStore()) as audit:
        audit.ride(AuditKind.API_WRITE, "uid:0", n=1).prepare()
        first = audit.pull()
        audit.record(AuditKind.LOGIN, "technician:ann", outcome="ok")
        second = audit.pull()
        assert [r.seq for r in first] == [1] and [r.seq for r in second] == [2]
        audit.settled(second, True)
        audit.settled(first, False)
        assert [r.seq for r in audit.pull()] == [1, 2]


async def test_an_outbox_from_another_chain_is_left_alone(tmp_path: Path) -> None:
    other = SQLiteStore(tmp_path / "state.db")
    async with _audit(MemoryAuditStore()) as elsewhere, other:
        elsewhere.record(AuditKind.NODE_STARTED, "node:n1")
        elsewhere.record(AuditKind.NODE_STARTED, "node:n1")
        # Only the second: it links to an entry this log never had.
        (_, second) = elsewhere.pull()
        other._writer.submit(_ride_only([second]))
        await other.drain()
    async with _audit(
        SQLiteAuditStore(tmp_path / "audit.db"), outbox_path=tmp_path / "state.db"
    ) as audit:
        assert await audit.store.entries() == []
        assert (await audit.verify()).ok


def _ride_only(riders: Sequence[Any]) -> Any:
    class Fixed:
        def pull(self) -> Sequence[Any]:
            return riders

        def settled(self, riders: Sequence[Any], ok: bool) -> None:
            return None

    return _Pending((), logs=(Fixed(),))
