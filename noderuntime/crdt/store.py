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
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite

from noderuntime.crdt.clocks import UpdateFormatError, parse_update
from noderuntime.errors import StoreCorruptError, StoreError

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
SCHEMA_VERSION = 3

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
    future: asyncio.Future[list[int]]
    clients: Sequence[tuple[str, int, str]] = ()  # (doc, client, author) to save


class SQLiteStore(UpdateStore):
    """The real store: one SQLite file in WAL mode, fsync on every commit (power-safe)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: aiosqlite.Connection | None = None
        self._queue: list[_Pending] = []
        self._wakeup = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._closing = False
        self._committing = False
        self._idle = asyncio.Event()
        self._fingerprint = ""

    async def open(self) -> None:
        try:
            self._db = await aiosqlite.connect(self.path, isolation_level=None)
            await self._db.execute("PRAGMA journal_mode=WAL")
            # FULL: the WAL is fsynced at every commit, so an acknowledged update survives
            # power loss, not only a process crash.
            await self._db.execute("PRAGMA synchronous=FULL")
            await self._db.execute("PRAGMA busy_timeout=5000")
            async with self._db.execute("PRAGMA user_version") as cur:
                row = await cur.fetchone()
            version = int(row[0]) if row else 0
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path} was written by a newer noderuntime (schema {version}, "
                    f"this one knows {SCHEMA_VERSION}); upgrade noderuntime or restore a backup"
                )
            await self._db.executescript(_SCHEMA)
            if version < 2:
                await self._migrate_v1_to_v2()
            await self._db.executescript(_SCHEMA_V2_INDEXES)
            await self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            async with self._db.execute("PRAGMA quick_check") as cur:
                check = await cur.fetchone()
            if not check or check[0] != "ok":
                raise StoreCorruptError(
                    f"{self.path} failed its integrity check ({check[0] if check else '?'}); "
                    "restore it from a backup (see docs/operations.md)"
                )
        except sqlite3.DatabaseError as exc:
            await self.close()
            raise StoreCorruptError(f"cannot open state database {self.path}: {exc}") from exc
        except sqlite3.Error as exc:
            await self.close()
            raise StoreError(f"cannot open state database {self.path}: {exc}") from exc
        except StoreError:
            await self.close()
            raise
        self._fingerprint = await asyncio.to_thread(store_fingerprint, self.path)
        self._closing = False
        self._writer = asyncio.create_task(self._write_loop(), name="store-writer")

    async def _migrate_v1_to_v2(self) -> None:
        """Add the digest column and index every stored update's clocks (one transaction)."""
        db = self.db
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
        if self._writer is not None:
            # Let queued writes finish (they were promised durability), then stop the writer.
            self._closing = True
            self._wakeup.set()
            try:
                await self._writer
            finally:
                self._writer = None
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
        return self._enqueue(_Pending(updates, asyncio.get_running_loop().create_future()))

    def save_client(self, doc: str, client: int, author: str) -> asyncio.Future[list[int]]:
        fut = asyncio.get_running_loop().create_future()
        return self._enqueue(_Pending((), fut, [(doc, client, author)]))

    def _enqueue(self, pending: _Pending) -> asyncio.Future[list[int]]:
        fut = pending.future
        if self._writer is None or self._writer.done() or self._closing:
            fut.set_exception(StoreError("state database is not open"))
            return fut
        if not pending.updates and not pending.clients:
            fut.set_result([])
            return fut
        self._queue.append(pending)
        self._wakeup.set()
        return fut

    async def local_client(self, doc: str, author: str) -> int | None:
        async with self.db.execute(
            "SELECT client FROM local_clients WHERE doc = ? AND author = ? AND fingerprint = ?",
            (doc, author, self._fingerprint),
        ) as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else None

    async def drain(self) -> None:
        while (self._queue or self._committing) and self._writer and not self._writer.done():
            self._idle.clear()
            await self._idle.wait()

    async def _write_loop(self) -> None:
        while True:
            if not self._queue:
                if self._closing:
                    return
                await self._wakeup.wait()
                self._wakeup.clear()
                continue
            batch, self._queue = self._queue, []
            self._committing = True
            started = time.monotonic()
            try:
                results = await self._commit(batch)
                self.commits += 1
                self.commit_seconds += time.monotonic() - started
            except sqlite3.Error as exc:
                self.last_error = f"commit failed: {exc}"
                err = StoreError(f"cannot write to state database {self.path}: {exc}")
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(err)
                continue
            finally:
                self._committing = False
                self._idle.set()
            self.last_error = None
            for p, seqs in zip(batch, results, strict=True):
                if not p.future.done():
                    p.future.set_result(seqs)

    async def _commit(self, batch: list[_Pending]) -> list[list[int]]:
        db = self.db
        results: list[list[int]] = []
        await db.execute("BEGIN IMMEDIATE")
        try:
            async with db.execute("SELECT COALESCE(MAX(seq), 0) FROM updates") as cur:
                row = await cur.fetchone()
            next_seq = int(row[0]) + 1 if row else 1
            rows = []
            clocks = []
            clients = [(*c, self._fingerprint) for p in batch for c in p.clients]
            if clients:
                await db.executemany(
                    "INSERT INTO local_clients (doc, client, author, fingerprint) "
                    "VALUES (?,?,?,?) ON CONFLICT(doc) DO UPDATE SET client = excluded.client, "
                    "author = excluded.author, fingerprint = excluded.fingerprint",
                    clients,
                )
            for p in batch:
                seqs = []
                for u in p.updates:
                    digest = update_digest(u.doc, u.data, u.author, u.signature, u.meta)
                    rows.append(
                        (next_seq, u.doc, u.data, u.author, u.signature, u.ts, u.meta, digest)
                    )
                    clocks += [(next_seq, u.doc, *c, u.author) for c in clock_rows(u.data)]
                    seqs.append(next_seq)
                    next_seq += 1
                results.append(seqs)
            if rows:
                await db.executemany(
                    "INSERT INTO updates (seq, doc, data, author, signature, ts, meta, digest) "
                    "VALUES (?,?,?,?,?,?,?,?)",
                    rows,
                )
            if clocks:
                await db.executemany(
                    "INSERT INTO update_clocks (seq, doc, client, clock_start, clock_end, author) "
                    "VALUES (?,?,?,?,?,?)",
                    clocks,
                )
            await db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                await db.execute("ROLLBACK")
            raise
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
