"""Where audit entries, checkpoints and (at a hub) witnessed checkpoints are kept.

Same shape as ``crdt/store.py``: one small interface (:class:`AuditStore`), SQLite for real and
memory for tests, one contract test (``tests/unit/test_audit_store_contract.py``). The audit log
is its own file (``<data-dir>/audit.db``), not a table of ``state.db``: a backup or a resync of
the state never carries it, and a state store set aside after damage leaves it whole.

Durability: ``append`` returns once the rows are committed with ``synchronous=FULL`` in WAL
mode; concurrent appends share one commit (one fsync), in call order.
"""

from __future__ import annotations

import abc
import contextlib
import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite

from noderuntime.audit.chain import Checkpoint, Entry, canonical
from noderuntime.errors import StoreError
from noderuntime.sqlitedb import GroupCommit, commit_or_roll_back, on_db_thread, open_db

# Schema version, stored in PRAGMA user_version.
# 1 (2026-12-03): entries(seq, ts, kind, actor, fields, hash) + checkpoints(seq, node, head, ts,
#                 links, signature) + witnessed(node, checkpoint, seen_at) + witness_alerts
#                 (id, node, ts, reason): what a hub saw of each node's checkpoints.
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    seq INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    kind TEXT NOT NULL,
    actor TEXT NOT NULL,
    fields TEXT NOT NULL,
    hash BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_ts ON entries (ts);
CREATE TABLE IF NOT EXISTS checkpoints (
    seq INTEGER PRIMARY KEY,
    data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS witnessed (
    node TEXT PRIMARY KEY,
    data TEXT NOT NULL,
    seen_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS witness_alerts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    node TEXT NOT NULL,
    ts REAL NOT NULL,
    reason TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class WitnessAlert:
    """A hub's finding: a node's published chain does not extend what the hub saw before."""

    node: str
    ts: float
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"node": self.node, "ts": self.ts, "reason": self.reason}


class AuditStore(abc.ABC):
    """Append-only entries, kept checkpoints, and a hub's witness records."""

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def __aenter__(self) -> AuditStore:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @abc.abstractmethod
    async def append(self, entries: Sequence[Entry]) -> None:
        """Store entries (seqs continue the log); durable when this returns."""

    @abc.abstractmethod
    async def last(self) -> Entry | None:
        """The newest entry, if any."""

    @abc.abstractmethod
    async def entries(
        self, *, after_seq: int = 0, since_ts: float | None = None, limit: int = 1000
    ) -> list[Entry]:
        """Up to ``limit`` entries after ``after_seq`` (and from ``since_ts`` on), oldest first."""

    @abc.abstractmethod
    async def newest(self, limit: int) -> list[Entry]:
        """The newest ``limit`` entries, oldest first."""

    @abc.abstractmethod
    async def entry(self, seq: int) -> Entry | None: ...

    @abc.abstractmethod
    async def add_checkpoint(self, cp: Checkpoint) -> None: ...

    @abc.abstractmethod
    async def checkpoints(self) -> list[Checkpoint]:
        """Every kept checkpoint, oldest first."""

    @abc.abstractmethod
    async def prune_through(self, seq: int) -> int:
        """Delete entries up to and including ``seq``; how many went. Checkpoints stay."""

    @abc.abstractmethod
    async def used_bytes(self) -> int:
        """Bytes the log occupies (pages in use), what retention bounds."""

    @abc.abstractmethod
    async def witnessed(self, node: str) -> Checkpoint | None:
        """The newest checkpoint of ``node`` this hub accepted."""

    @abc.abstractmethod
    async def save_witnessed(self, cp: Checkpoint, seen_at: float) -> None: ...

    @abc.abstractmethod
    async def add_alert(self, alert: WitnessAlert) -> None: ...

    @abc.abstractmethod
    async def alerts(self, limit: int = 100) -> list[WitnessAlert]:
        """The newest alerts, oldest first."""


def _entry_row(e: Entry) -> tuple[int, float, str, str, str, bytes]:
    fields = e.fields_json or canonical(dict(e.fields)).decode()
    return (e.seq, e.ts, e.kind, e.actor, fields, e.hash)


def _entry(r: Any) -> Entry:
    try:
        fields = json.loads(r[4])
    except ValueError:
        fields = {"_unreadable": str(r[4])}  # verify then reports it as edited
    return Entry(int(r[0]), float(r[1]), str(r[2]), str(r[3]), fields, bytes(r[5]))


class MemoryAuditStore(AuditStore):
    """In memory, for tests: same contract, nothing durable."""

    def __init__(self) -> None:
        self._entries: dict[int, Entry] = {}
        self._checkpoints: dict[int, Checkpoint] = {}
        self._witnessed: dict[str, Checkpoint] = {}
        self._alerts: list[WitnessAlert] = []

    async def append(self, entries: Sequence[Entry]) -> None:
        for e in entries:
            # Stored as the SQLite store would: fields through their canonical JSON.
            self._entries[e.seq] = _entry(_entry_row(e))

    async def last(self) -> Entry | None:
        return self._entries[max(self._entries)] if self._entries else None

    async def entries(
        self, *, after_seq: int = 0, since_ts: float | None = None, limit: int = 1000
    ) -> list[Entry]:
        out = [
            self._entries[s]
            for s in sorted(self._entries)
            if s > after_seq and (since_ts is None or self._entries[s].ts >= since_ts)
        ]
        return out[:limit]

    async def newest(self, limit: int) -> list[Entry]:
        return [self._entries[s] for s in sorted(self._entries)[-limit:]] if limit > 0 else []

    async def entry(self, seq: int) -> Entry | None:
        return self._entries.get(seq)

    async def add_checkpoint(self, cp: Checkpoint) -> None:
        self._checkpoints[cp.seq] = cp

    async def checkpoints(self) -> list[Checkpoint]:
        return [self._checkpoints[s] for s in sorted(self._checkpoints)]

    async def prune_through(self, seq: int) -> int:
        gone = [s for s in self._entries if s <= seq]
        for s in gone:
            del self._entries[s]
        return len(gone)

    async def used_bytes(self) -> int:
        return sum(len(_entry_row(e)[4]) + 80 for e in self._entries.values())

    async def witnessed(self, node: str) -> Checkpoint | None:
        return self._witnessed.get(node)

    async def save_witnessed(self, cp: Checkpoint, seen_at: float) -> None:
        self._witnessed[cp.node] = cp

    async def add_alert(self, alert: WitnessAlert) -> None:
        self._alerts.append(alert)

    async def alerts(self, limit: int = 100) -> list[WitnessAlert]:
        return self._alerts[-limit:] if limit > 0 else []


class SQLiteAuditStore(AuditStore):
    """The real store: its own SQLite file, WAL, fsync on every commit, commits grouped."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: aiosqlite.Connection | None = None
        self._writer = GroupCommit[Sequence[Entry], None](
            self._commit, what="audit", path=path, name="audit-writer"
        )

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise StoreError("audit database is not open")
        return self._db

    async def open(self) -> None:
        self._db = await open_db(self.path, what="audit", version=SCHEMA_VERSION, schema=_SCHEMA)
        self._writer.start()

    async def close(self) -> None:
        await self._writer.close()
        if self._db is not None:
            try:
                await self._db.close()
            finally:
                self._db = None

    async def append(self, entries: Sequence[Entry]) -> None:
        await self._writer.submit(entries)

    async def _commit(self, batch: list[Sequence[Entry]]) -> list[None]:
        rows = [_entry_row(e) for entries in batch for e in entries]
        sql = "INSERT INTO entries (seq, ts, kind, actor, fields, hash) VALUES (?,?,?,?,?,?)"

        def statements(conn: sqlite3.Connection) -> None:
            commit_or_roll_back(conn, lambda: conn.executemany(sql, rows))

        await on_db_thread(self.db, statements)  # one transaction, one thread hop
        return [None] * len(batch)

    async def _one(self, sql: str, args: tuple[Any, ...] = ()) -> Any:
        async with self.db.execute(sql, args) as cur:
            return await cur.fetchone()

    async def last(self) -> Entry | None:
        row = await self._one("SELECT * FROM entries ORDER BY seq DESC LIMIT 1")
        return _entry(row) if row else None

    async def entries(
        self, *, after_seq: int = 0, since_ts: float | None = None, limit: int = 1000
    ) -> list[Entry]:
        sql = "SELECT * FROM entries WHERE seq > ?"
        args: list[float] = [after_seq]
        if since_ts is not None:
            sql += " AND ts >= ?"
            args.append(since_ts)
        async with self.db.execute(f"{sql} ORDER BY seq LIMIT ?", (*args, limit)) as cur:
            return [_entry(r) async for r in cur]

    async def newest(self, limit: int) -> list[Entry]:
        async with self.db.execute(
            "SELECT * FROM entries ORDER BY seq DESC LIMIT ?", (max(limit, 0),)
        ) as cur:
            rows = [_entry(r) async for r in cur]
        return rows[::-1]

    async def entry(self, seq: int) -> Entry | None:
        row = await self._one("SELECT * FROM entries WHERE seq = ?", (seq,))
        return _entry(row) if row else None

    async def _write(self, sql: str, args: tuple[Any, ...]) -> None:
        # Rare writes (checkpoints, pruning, witness records) commit on their own.
        try:
            await self.db.execute(sql, args)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write to audit database {self.path}: {exc}") from exc

    async def add_checkpoint(self, cp: Checkpoint) -> None:
        await self._write(
            "INSERT OR REPLACE INTO checkpoints (seq, data) VALUES (?, ?)",
            (cp.seq, json.dumps(cp.to_dict())),
        )

    async def checkpoints(self) -> list[Checkpoint]:
        out = []
        async with self.db.execute("SELECT data FROM checkpoints ORDER BY seq") as cur:
            async for (data,) in cur:
                with contextlib.suppress(ValueError):
                    out.append(Checkpoint.from_dict(json.loads(data)))
        return out

    async def prune_through(self, seq: int) -> int:
        before = await self._one("SELECT COUNT(*) FROM entries WHERE seq <= ?", (seq,))
        await self._write("DELETE FROM entries WHERE seq <= ?", (seq,))
        return int(before[0]) if before else 0

    async def used_bytes(self) -> int:
        pages = await self._one("PRAGMA page_count")
        free = await self._one("PRAGMA freelist_count")
        size = await self._one("PRAGMA page_size")
        return (int(pages[0]) - int(free[0])) * int(size[0])

    async def witnessed(self, node: str) -> Checkpoint | None:
        row = await self._one("SELECT data FROM witnessed WHERE node = ?", (node,))
        if row is None:
            return None
        try:
            return Checkpoint.from_dict(json.loads(row[0]))
        except ValueError:
            return None

    async def save_witnessed(self, cp: Checkpoint, seen_at: float) -> None:
        await self._write(
            "INSERT OR REPLACE INTO witnessed (node, data, seen_at) VALUES (?, ?, ?)",
            (cp.node, json.dumps(cp.to_dict()), seen_at),
        )

    async def add_alert(self, alert: WitnessAlert) -> None:
        await self._write(
            "INSERT INTO witness_alerts (node, ts, reason) VALUES (?, ?, ?)",
            (alert.node, alert.ts, alert.reason),
        )

    async def alerts(self, limit: int = 100) -> list[WitnessAlert]:
        async with self.db.execute(
            "SELECT node, ts, reason FROM witness_alerts ORDER BY id DESC LIMIT ?", (limit,)
        ) as cur:
            rows = [WitnessAlert(str(r[0]), float(r[1]), str(r[2])) async for r in cur]
        return rows[::-1]
