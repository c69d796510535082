"""Durable storage of signed CRDT updates and snapshots.

One small interface (:class:`UpdateStore`), two implementations (SQLite for real, memory for
tests), and one contract test run against both (``tests/unit/test_store_contract.py``). The
three stay in one module (past 600 lines) so the contract reads in one place; the memory store
is the first to move out if it grows.

The update log is append-only and keeps every signed update: it is the history that peers may
ask for, with each author's signature intact. Snapshots exist only to make start-up fast: a
snapshot of a document covers the log up to ``upto_seq`` and loading replays the snapshot plus
the log after it, so start-up cost does not grow with history.

Durability: ``append`` returns only after the rows are committed with ``synchronous=FULL`` in
WAL mode. Concurrent appends are group-committed (one fsync for all of them). ``enqueue`` is the
same without waiting: it queues synchronously (call order is commit order) and hands back the
future that resolves once the rows are durable, so a caller can act on the commit itself (the
state's durable view) even if it stops waiting.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import hashlib
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite

from noderuntime.crdt.clocks import UpdateFormatError, parse_update
from noderuntime.errors import StoreError
from noderuntime.sqlitedb import (
    COMMIT_RIDERS,
    OUTBOX_SCHEMA,
    GroupCommit,
    Rider,
    RiderLog,
    commit_or_roll_back,
    on_db_thread,
    open_db,
)

# Schema version, stored in PRAGMA user_version.
# 1 (2026-11-25): updates(seq, doc, data, author, signature, ts, meta)
#                 + snapshots(doc, upto_seq, data).
# 2 (2026-11-26): updates.digest (content hash, for idempotent ingest of peers' updates)
#                 + update_clocks(seq, doc, client, clock_start, clock_end, author): the clock
#                 range each update carries per client, so anti-entropy is O(missing).
# 3 (2026-12-03): local_clients(doc, client, author, fingerprint): the CRDT client id this node
#                 writes each document with, reused across restarts while the store is the same
#                 copy (fingerprint: machine id and the file's inode). A v2 store gains the empty
#                 table; its node takes new ids once, at its first write after the upgrade.
# 4 (2026-12-03): outbox(topic, seq, data): rows another store (the audit log) keeps durable in
#                 the same commit as the change they go with (``sqlitedb.py``, riders). A v3
#                 store gains the empty table.
SCHEMA_VERSION = 4

_SCHEMA = """
CREATE TABLE IF NOT EXISTS updates (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    doc TEXT NOT NULL,
    data BLOB NOT NULL,
    author TEXT NOT NULL,
    signature BLOB NOT NULL,
    ts REAL NOT NULL,
    meta TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS updates_doc_seq ON updates (doc, seq);
CREATE TABLE IF NOT EXISTS snapshots (
    doc TEXT PRIMARY KEY,
    upto_seq INTEGER NOT NULL,
    data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS update_clocks (
    seq INTEGER NOT NULL,
    doc TEXT NOT NULL,
    client INTEGER NOT NULL,
    clock_start INTEGER NOT NULL,
    clock_end INTEGER NOT NULL,
    author TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS update_clocks_gap ON update_clocks (doc, client, clock_end);
CREATE TABLE IF NOT EXISTS local_clients (
    doc TEXT PRIMARY KEY,
    client INTEGER NOT NULL,
    author TEXT NOT NULL,
    fingerprint TEXT NOT NULL
);
"""

# Run after _SCHEMA on every open; the column is added by the v1 -> v2 migration.
_SCHEMA_V2_INDEXES = """
CREATE INDEX IF NOT EXISTS updates_digest ON updates (digest);
"""

_COLUMNS = "seq, doc, data, author, signature, ts, meta"

MACHINE_ID_FILES = (Path("/etc/machine-id"), Path("/var/lib/dbus/machine-id"))


def store_fingerprint(path: Path, machine_id_files: Sequence[Path] = MACHINE_ID_FILES) -> str:
    """Which copy of a store file this is: the machine's id and the file's inode.

    A copied, restored or cloned file gets another inode (or runs on another machine), so a
    client id saved in it is not reused there (see docs/architecture.md, "Client ids").
    """
    machine = ""
    for candidate in machine_id_files:
        with contextlib.suppress(OSError):
            machine = candidate.read_text().strip()
            break
    return f"{machine}:{path.stat().st_ino}"


def update_digest(doc: str, data: bytes, author: str, signature: bytes, meta: str) -> bytes:
    """Content hash of a signed update: equal digests mean the same update (dedupe key)."""
    h = hashlib.sha256()
    for part in (author.encode(), signature, doc.encode(), meta.encode()):
        h.update(len(part).to_bytes(4, "big"))
        h.update(part)
    h.update(data)
    return h.digest()[:16]


def clock_rows(data: bytes) -> list[tuple[int, int, int]]:
    """(client, clock_start, clock_end) per client ``data`` carries; none if unparseable."""
    try:
        clocks = parse_update(data)
    except UpdateFormatError:
        return []
    return [(c, start, end) for c, (start, end) in clocks.ranges.items()]


@dataclass(frozen=True)
class NewUpdate:
    """An update to append: the pycrdt update bytes, who signed them, and signed metadata.

    ``meta`` is a JSON object (summary of the change, on whose behalf it was made) covered by
    the same signature as ``data``.
    """

    doc: str
    data: bytes
    author: str
    signature: bytes
    ts: float
    meta: str = "{}"


@dataclass(frozen=True)
class StoredUpdate:
    seq: int
    doc: str
    data: bytes
    author: str
    signature: bytes
    ts: float
    meta: str = "{}"

    @property
    def digest(self) -> bytes:
        return update_digest(self.doc, self.data, self.author, self.signature, self.meta)


@dataclass(frozen=True)
class LoadedDoc:
    """What is needed to rebuild a document: its snapshot (if any) and the log after it."""

    doc: str
    snapshot: bytes | None
    snapshot_seq: int
    updates: list[StoredUpdate]


@dataclass(frozen=True)
class StoreStats:
    path: str
    updates: int
    snapshots: int
    size_bytes: int
    schema_version: int
    commits: int = 0
    commit_seconds: float = 0.0


class UpdateStore(abc.ABC):
    """Append-only signed-update log plus per-document snapshots."""

    #: Why the latest commit failed; None once one succeeds (store health, for node.status).
    last_error: str | None = None
    #: Commits made and the seconds they took in all (fsync included), for metrics.
    commits: int = 0
    commit_seconds: float = 0.0

    @abc.abstractmethod
    async def open(self) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    async def __aenter__(self) -> UpdateStore:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @abc.abstractmethod
    def enqueue(self, updates: Sequence[NewUpdate]) -> asyncio.Future[list[int]]:
        """Queue ``updates`` for a durable append; the future gives their sequence numbers.

        Queues before returning (no ``await``), so calls commit in call order. The future
        resolves only after the commit is durable, or fails with :class:`StoreError`; a caller
        that stops waiting does not un-queue the updates.
        """

    async def append(self, updates: Sequence[NewUpdate]) -> list[int]:
        """Durably append ``updates`` in order; returns their sequence numbers."""
        if not updates:
            return []
        # A cancelled caller does not un-queue its updates: they are still committed.
        return await asyncio.shield(self.enqueue(updates))

    @abc.abstractmethod
    async def local_client(self, doc: str, author: str) -> int | None:
        """The CRDT client id ``author`` writes ``doc`` with in this copy of the store.

        None if none was saved, if another author saved it, or if it was saved in another
        copy of the store (a copied, restored or cloned file): a client id must never be used
        by two writers, nor continue from a clock its peers have seen past.
        """

    @abc.abstractmethod
    def save_client(self, doc: str, client: int, author: str) -> asyncio.Future[list[int]]:
        """Queue: ``author`` writes ``doc`` with ``client`` from now on.

        Committed in order with appends (so before any update queued after it); the future
        resolves to ``[]`` once durable.
        """

    def drop_riders(self, topic: str, through_seq: int) -> None:
        """Queue deleting ``topic``'s outbox rows up to ``through_seq`` (riders, see
        ``sqlitedb.py``); a store without an outbox has none to delete."""
        return None

    @abc.abstractmethod
    async def drain(self) -> None:
        """Return once every queued append has been committed or has failed."""

    @abc.abstractmethod
    async def load(self, doc: str) -> LoadedDoc: ...

    @abc.abstractmethod
    async def docs(self) -> list[str]:
        """Names of every document with a snapshot or an update."""

    @abc.abstractmethod
    async def write_snapshot(self, doc: str, data: bytes, upto_seq: int) -> None:
        """Replace ``doc``'s snapshot with ``data``, which must cover the log up to ``upto_seq``."""

    @abc.abstractmethod
    async def updates_since(
        self, doc: str, after_seq: int, limit: int = 10_000
    ) -> list[StoredUpdate]: ...

    @abc.abstractmethod
    async def recent(self, limit: int) -> list[StoredUpdate]:
        """The newest ``limit`` updates of every document, newest first."""

    @abc.abstractmethod
    async def stats(self) -> StoreStats: ...

    # --- replication support ---------------------------------------------------------------

    @abc.abstractmethod
    async def known_digests(self, digests: Sequence[bytes]) -> set[bytes]:
        """Which of ``digests`` (see :func:`update_digest`) are already stored."""

    @abc.abstractmethod
    async def clock_summary(self, doc: str) -> dict[int, int]:
        """Per client id, the highest clock end of any stored update of ``doc``."""

    @abc.abstractmethod
    async def client_authors(self, doc: str, clients: Sequence[int]) -> dict[int, str]:
        """The author who first wrote each of ``clients`` in ``doc`` (if any)."""

    @abc.abstractmethod
    async def updates_for_gap(
        self, doc: str, gap: Mapping[int, int], limit: int = 10_000
    ) -> list[StoredUpdate]:
        """Stored updates of ``doc`` carrying a clock beyond ``gap[client]``, in seq order.

        Cost is proportional to the updates returned (an index on (doc, client, clock_end)).
        """


class MemoryStore(UpdateStore):
    """In-memory store with the same contract; for tests of code above the store."""

    def __init__(self) -> None:
        self._updates: list[StoredUpdate] = []
        self._snapshots: dict[str, tuple[int, bytes]] = {}
        self._open = False
        self._digests: set[bytes] = set()
        # (seq, doc, client, start, end, author)
        self._clocks: list[tuple[int, str, int, int, int, str]] = []
        self._local_clients: dict[str, tuple[int, str]] = {}

    async def open(self) -> None:
        self._open = True

    async def close(self) -> None:
        self._open = False

    def _check(self) -> None:
        if not self._open:
            raise StoreError("store is not open")

    async def drain(self) -> None:
        return None

    async def local_client(self, doc: str, author: str) -> int | None:
        self._check()
        client, by = self._local_clients.get(doc, (None, ""))
        return client if by == author else None

    def save_client(self, doc: str, client: int, author: str) -> asyncio.Future[list[int]]:
        fut: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
        try:
            self._check()
        except StoreError as exc:
            fut.set_exception(exc)
            return fut
        self._local_clients[doc] = (client, author)
        fut.set_result([])
        return fut

    def enqueue(self, updates: Sequence[NewUpdate]) -> asyncio.Future[list[int]]:
        fut: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
        try:
            fut.set_result(self._append_now(updates))
        except StoreError as exc:
            fut.set_exception(exc)
        return fut

    def _append_now(self, updates: Sequence[NewUpdate]) -> list[int]:
        self._check()
        seqs = []
        for u in updates:
            seq = len(self._updates) + 1
            stored = StoredUpdate(seq, u.doc, u.data, u.author, u.signature, u.ts, u.meta)
            self._updates.append(stored)
            self._digests.add(stored.digest)
            for client, start, end in clock_rows(u.data):
                self._clocks.append((seq, u.doc, client, start, end, u.author))
            seqs.append(seq)
        return seqs

    async def known_digests(self, digests: Sequence[bytes]) -> set[bytes]:
        self._check()
        return {d for d in digests if d in self._digests}

    async def clock_summary(self, doc: str) -> dict[int, int]:
        self._check()
        out: dict[int, int] = {}
        for _, d, client, _, end, _ in self._clocks:
            if d == doc and end > out.get(client, 0):
                out[client] = end
        return out

    async def client_authors(self, doc: str, clients: Sequence[int]) -> dict[int, str]:
        self._check()
        out: dict[int, str] = {}
        for _, d, client, _, _, author in self._clocks:
            if d == doc and client in clients and client not in out:
                out[client] = author
        return out

    async def updates_for_gap(
        self, doc: str, gap: Mapping[int, int], limit: int = 10_000
    ) -> list[StoredUpdate]:
        self._check()
        seqs = sorted(
            {
                seq
                for seq, d, client, _, end, _ in self._clocks
                if d == doc and client in gap and end > gap[client]
            }
        )[:limit]
        return [self._updates[s - 1] for s in seqs]

    async def load(self, doc: str) -> LoadedDoc:
        self._check()
        upto, snap = self._snapshots.get(doc, (0, None))
        rest = [u for u in self._updates if u.doc == doc and u.seq > upto]
        return LoadedDoc(doc, snap, upto, rest)

    async def docs(self) -> list[str]:
        self._check()
        return sorted({u.doc for u in self._updates} | set(self._snapshots))

    async def write_snapshot(self, doc: str, data: bytes, upto_seq: int) -> None:
        self._check()
        self._snapshots[doc] = (upto_seq, data)

    async def updates_since(
        self, doc: str, after_seq: int, limit: int = 10_000
    ) -> list[StoredUpdate]:
        self._check()
        return [u for u in self._updates if u.doc == doc and u.seq > after_seq][:limit]

    async def recent(self, limit: int) -> list[StoredUpdate]:
        self._check()
        return list(reversed(self._updates[-limit:])) if limit > 0 else []

    async def stats(self) -> StoreStats:
        size = sum(len(u.data) for u in self._updates)
        return StoreStats(
            ":memory:", len(self._updates), len(self._snapshots), size, SCHEMA_VERSION
        )


@dataclass
class _Pending:
    updates: Sequence[NewUpdate]
    clients: Sequence[tuple[str, int, str]] = ()  # (doc, client, author) to save
    logs: Sequence[RiderLog] = ()  # whose rows ride this commit (sqlitedb.py)
    drops: Sequence[tuple[str, int]] = ()  # (topic, through_seq): outbox rows to delete


class SQLiteStore(UpdateStore):
    """The real store: one SQLite file in WAL mode, fsync on every commit (power-safe)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: aiosqlite.Connection | None = None
        self._writer = GroupCommit[_Pending, list[int]](
            self._commit, what="state", path=path, name="store-writer"
        )
        self._fingerprint = ""
        # The next update's seq: this writer is the only one of the file, so it is read once
        # per open (and after a failed commit), not in every commit (three thread hops).
        self._next_seq: int | None = None

    # Kept by the writer; settable so the base class's plain attributes stay the contract.
    @property
    def last_error(self) -> str | None:
        return self._writer.last_error

    @last_error.setter
    def last_error(self, value: str | None) -> None:
        self._writer.last_error = value

    @property
    def commits(self) -> int:
        return self._writer.commits

    @commits.setter
    def commits(self, value: int) -> None:
        self._writer.commits = value

    @property
    def commit_seconds(self) -> float:
        return self._writer.commit_seconds

    @commit_seconds.setter
    def commit_seconds(self, value: float) -> None:
        self._writer.commit_seconds = value

    async def open(self) -> None:
        self._db = await open_db(
            self.path,
            what="state",
            version=SCHEMA_VERSION,
            schema=_SCHEMA + OUTBOX_SCHEMA,
            migrate=self._migrate,
            check=True,
        )
        self._fingerprint = await asyncio.to_thread(store_fingerprint, self.path)
        self._next_seq = None
        self._writer.start()

    async def _migrate(self, db: aiosqlite.Connection, found: int) -> None:
        if found < 2:
            await self._migrate_v1_to_v2(db)
        await db.executescript(_SCHEMA_V2_INDEXES)

    async def _migrate_v1_to_v2(self, db: aiosqlite.Connection) -> None:
        """Add the digest column and index every stored update's clocks (one transaction)."""
        async with db.execute("PRAGMA table_info(updates)") as cur:
            columns = {r[1] async for r in cur}
        await db.execute("BEGIN IMMEDIATE")
        try:
            if "digest" not in columns:
                await db.execute("ALTER TABLE updates ADD COLUMN digest BLOB")
            await db.execute("DELETE FROM update_clocks")
            async with db.execute(f"SELECT {_COLUMNS} FROM updates ORDER BY seq") as cur:
                rows = [_row(r) async for r in cur]
            await db.executemany(
                "UPDATE updates SET digest = ? WHERE seq = ?", [(u.digest, u.seq) for u in rows]
            )
            await db.executemany(
                "INSERT INTO update_clocks (seq, doc, client, clock_start, clock_end, author) "
                "VALUES (?,?,?,?,?,?)",
                [(u.seq, u.doc, *c, u.author) for u in rows for c in clock_rows(u.data)],
            )
            await db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                await db.execute("ROLLBACK")
            raise

    async def close(self) -> None:
        # Queued writes finish first: they were promised durability.
        await self._writer.close()
        if self._db is not None:
            try:
                await self._db.close()
            finally:
                self._db = None

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise StoreError("state database is not open")
        return self._db

    def enqueue(self, updates: Sequence[NewUpdate]) -> asyncio.Future[list[int]]:
        source = COMMIT_RIDERS.get()
        if source is None or not updates or not self._writer.running:
            return self._enqueue(_Pending(updates))
        # What the change is made for (its audit entry) commits in the same transaction.
        return self._enqueue(_Pending(updates, logs=(source.prepare(),)))

    def save_client(self, doc: str, client: int, author: str) -> asyncio.Future[list[int]]:
        return self._enqueue(_Pending((), [(doc, client, author)]))

    def drop_riders(self, topic: str, through_seq: int) -> None:
        """Queue deleting outbox rows of ``topic`` up to ``through_seq``; commits with the next
        write (or alone). Not waited for: a drop that is lost only leaves rows the outbox's
        reader skips."""
        fut = self._enqueue(_Pending((), drops=[(topic, through_seq)]))
        fut.add_done_callback(lambda f: f.cancelled() or f.exception())

    def _enqueue(self, pending: _Pending) -> asyncio.Future[list[int]]:
        if (
            self._writer.running
            and not pending.updates
            and not pending.clients
            and not pending.drops
        ):
            fut: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
            fut.set_result([])
            return fut
        return self._writer.submit(pending)

    async def local_client(self, doc: str, author: str) -> int | None:
        async with self.db.execute(
            "SELECT client FROM local_clients WHERE doc = ? AND author = ? AND fingerprint = ?",
            (doc, author, self._fingerprint),
        ) as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else None

    async def drain(self) -> None:
        await self._writer.drain()

    async def _commit(self, batch: list[_Pending]) -> list[list[int]]:
        db = self.db
        if self._next_seq is None:
            async with db.execute("SELECT COALESCE(MAX(seq), 0) FROM updates") as cur:
                row = await cur.fetchone()
            self._next_seq = int(row[0]) + 1 if row else 1
        rows, clocks, results, next_seq = _update_rows(batch, self._next_seq)
        clients = [(*c, self._fingerprint) for p in batch for c in p.clients]
        drops = [d for p in batch for d in p.drops]
        # Pulled last before the commit: rows made up to now ride it, in order (the writer is
        # one task, so a pull always follows the previous commit's ``settled``).
        pulled = [(log, log.pull()) for log in {id(g): g for p in batch for g in p.logs}.values()]
        riders = [r for _, rs in pulled for r in rs]

        def statements(conn: sqlite3.Connection) -> None:
            commit_or_roll_back(conn, lambda: _write(conn, rows, clocks, clients, drops, riders))

        try:
            # One thread hop for the whole transaction (was one per statement).
            await on_db_thread(db, statements)
        except BaseException:
            self._next_seq = None  # read again: whether the commit took is not known
            for log, rs in pulled:
                log.settled(rs, False)
            raise
        self._next_seq = next_seq
        for log, rs in pulled:
            log.settled(rs, True)
        return results

    async def load(self, doc: str) -> LoadedDoc:
        try:
            async with self.db.execute(
                "SELECT upto_seq, data FROM snapshots WHERE doc = ?", (doc,)
            ) as cur:
                row = await cur.fetchone()
            upto, snap = (int(row[0]), bytes(row[1])) if row else (0, None)
            async with self.db.execute(
                "SELECT seq, doc, data, author, signature, ts, meta FROM updates "
                "WHERE doc = ? AND seq > ? ORDER BY seq",
                (doc, upto),
            ) as cur:
                updates = [
                    StoredUpdate(int(r[0]), r[1], bytes(r[2]), r[3], bytes(r[4]), float(r[5]), r[6])
                    async for r in cur
                ]
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read document {doc!r} from {self.path}: {exc}") from exc
        return LoadedDoc(doc, snap, upto, updates)

    async def docs(self) -> list[str]:
        async with self.db.execute(
            "SELECT doc FROM snapshots UNION SELECT DISTINCT doc FROM updates ORDER BY 1"
        ) as cur:
            return [r[0] async for r in cur]

    async def write_snapshot(self, doc: str, data: bytes, upto_seq: int) -> None:
        try:
            await self.db.execute(
                "INSERT INTO snapshots (doc, upto_seq, data) VALUES (?, ?, ?) "
                "ON CONFLICT(doc) DO UPDATE SET upto_seq = excluded.upto_seq, data = excluded.data "
                "WHERE excluded.upto_seq >= snapshots.upto_seq",
                (doc, upto_seq, data),
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write snapshot of {doc!r}: {exc}") from exc

    async def updates_since(
        self, doc: str, after_seq: int, limit: int = 10_000
    ) -> list[StoredUpdate]:
        async with self.db.execute(
            "SELECT seq, doc, data, author, signature, ts, meta FROM updates "
            "WHERE doc = ? AND seq > ? ORDER BY seq LIMIT ?",
            (doc, after_seq, limit),
        ) as cur:
            return [
                StoredUpdate(int(r[0]), r[1], bytes(r[2]), r[3], bytes(r[4]), float(r[5]), r[6])
                async for r in cur
            ]

    async def recent(self, limit: int) -> list[StoredUpdate]:
        async with self.db.execute(
            "SELECT seq, doc, data, author, signature, ts, meta FROM updates "
            "ORDER BY seq DESC LIMIT ?",
            (limit,),
        ) as cur:
            return [
                StoredUpdate(int(r[0]), r[1], bytes(r[2]), r[3], bytes(r[4]), float(r[5]), r[6])
                async for r in cur
            ]

    async def stats(self) -> StoreStats:
        async with self.db.execute("SELECT COUNT(*) FROM updates") as cur:
            row = await cur.fetchone()
        n_updates = int(row[0]) if row else 0
        async with self.db.execute("SELECT COUNT(*) FROM snapshots") as cur:
            row = await cur.fetchone()
        n_snaps = int(row[0]) if row else 0
        size = await asyncio.to_thread(_db_size, self.path)
        return StoreStats(
            str(self.path),
            n_updates,
            n_snaps,
            size,
            SCHEMA_VERSION,
            commits=self.commits,
            commit_seconds=self.commit_seconds,
        )

    async def known_digests(self, digests: Sequence[bytes]) -> set[bytes]:
        out: set[bytes] = set()
        for i in range(0, len(digests), 500):
            chunk = list(digests[i : i + 500])
            marks = ",".join("?" * len(chunk))
            async with self.db.execute(
                f"SELECT digest FROM updates WHERE digest IN ({marks})", chunk
            ) as cur:
                out |= {bytes(r[0]) async for r in cur}
        return out

    async def clock_summary(self, doc: str) -> dict[int, int]:
        async with self.db.execute(
            "SELECT client, MAX(clock_end) FROM update_clocks WHERE doc = ? GROUP BY client",
            (doc,),
        ) as cur:
            return {int(r[0]): int(r[1]) async for r in cur}

    async def client_authors(self, doc: str, clients: Sequence[int]) -> dict[int, str]:
        out: dict[int, str] = {}
        for client in clients:
            async with self.db.execute(
                "SELECT author FROM update_clocks WHERE doc = ? AND client = ? "
                "ORDER BY seq LIMIT 1",
                (doc, client),
            ) as cur:
                row = await cur.fetchone()
            if row:
                out[client] = str(row[0])
        return out

    async def updates_for_gap(
        self, doc: str, gap: Mapping[int, int], limit: int = 10_000
    ) -> list[StoredUpdate]:
        seqs: set[int] = set()
        # One query per batch of clients, not per client: after a partition every operator
        # change is its own client id, and a query per client costs a thread hop each.
        pairs = list(gap.items())
        for i in range(0, len(pairs), _GAP_BATCH):
            batch = pairs[i : i + _GAP_BATCH]
            values = ",".join(["(?, ?)"] * len(batch))
            params: list[Any] = [v for pair in batch for v in pair]
            async with self.db.execute(
                f"WITH gap(client, after) AS (VALUES {values}) "
                "SELECT c.seq FROM gap JOIN update_clocks c "
                "ON c.doc = ? AND c.client = gap.client AND c.clock_end > gap.after",
                [*params, doc],
            ) as cur:
                seqs |= {int(r[0]) async for r in cur}
        ordered = sorted(seqs)[:limit]
        out: list[StoredUpdate] = []
        for i in range(0, len(ordered), 500):
            chunk = ordered[i : i + 500]
            marks = ",".join("?" * len(chunk))
            async with self.db.execute(
                f"SELECT {_COLUMNS} FROM updates WHERE seq IN ({marks}) ORDER BY seq", chunk
            ) as cur:
                out += [_row(r) async for r in cur]
        return out


def _update_rows(
    batch: list[_Pending], next_seq: int
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[list[int]], int]:
    """The ``updates`` and ``update_clocks`` rows of a batch numbered from ``next_seq``, each
    item's seqs, and the seq after them."""
    rows: list[tuple[Any, ...]] = []
    clocks: list[tuple[Any, ...]] = []
    results: list[list[int]] = []
    for p in batch:
        seqs = []
        for u in p.updates:
            digest = update_digest(u.doc, u.data, u.author, u.signature, u.meta)
            rows.append((next_seq, u.doc, u.data, u.author, u.signature, u.ts, u.meta, digest))
            clocks += [(next_seq, u.doc, *c, u.author) for c in clock_rows(u.data)]
            seqs.append(next_seq)
            next_seq += 1
        results.append(seqs)
    return rows, clocks, results, next_seq


def _write(
    conn: sqlite3.Connection,
    rows: list[tuple[Any, ...]],
    clocks: list[tuple[Any, ...]],
    clients: list[tuple[Any, ...]],
    drops: list[tuple[str, int]],
    riders: list[Rider],
) -> None:
    """A state commit's statements (run on the connection's thread, inside its transaction)."""
    if clients:
        conn.executemany(
            "INSERT INTO local_clients (doc, client, author, fingerprint) "
            "VALUES (?,?,?,?) ON CONFLICT(doc) DO UPDATE SET client = excluded.client, "
            "author = excluded.author, fingerprint = excluded.fingerprint",
            clients,
        )
    if rows:
        conn.executemany(
            "INSERT INTO updates (seq, doc, data, author, signature, ts, meta, digest) "
            "VALUES (?,?,?,?,?,?,?,?)",
            rows,
        )
    if clocks:
        conn.executemany(
            "INSERT INTO update_clocks (seq, doc, client, clock_start, clock_end, author) "
            "VALUES (?,?,?,?,?,?)",
            clocks,
        )
    if drops:
        conn.executemany("DELETE FROM outbox WHERE topic = ? AND seq <= ?", drops)
    if riders:
        conn.executemany("INSERT OR REPLACE INTO outbox (topic, seq, data) VALUES (?,?,?)", riders)


# Clients per gap query: two bound variables each, well under SQLite's variable limit.
_GAP_BATCH = 400


def _row(r: Any) -> StoredUpdate:
    return StoredUpdate(int(r[0]), r[1], bytes(r[2]), r[3], bytes(r[4]), float(r[5]), r[6])


def _db_size(path: Path) -> int:
    size = 0
    for suffix in ("", "-wal"):
        p = Path(str(path) + suffix)
        if p.exists():
            size += p.stat().st_size
    return size
