"""Durable SQLite plumbing shared by the state store (``crdt/store.py``) and the audit store
(``audit/store.py``): open a file with the durability pragmas and a versioned schema, and one
writer task that group-commits whatever was queued meanwhile (one fsync for all of it).

Also the *riders* a commit can carry for another store (see docs/architecture.md, "Audit
entries ride the state commit"): rows a caller wants durable in the same transaction as the
state change it is making, kept in the state file's ``outbox`` table until their own store has
them. :data:`COMMIT_RIDERS` names, for the task making a change, where those rows come from.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Generic, NamedTuple, Protocol, TypeVar

import aiosqlite

from noderuntime.errors import StoreCorruptError, StoreError

T = TypeVar("T")
R = TypeVar("R")


async def open_db(
    path: Path,
    *,
    what: str,
    version: int,
    schema: str,
    migrate: Callable[[aiosqlite.Connection, int], Awaitable[None]] | None = None,
    check: bool = False,
) -> aiosqlite.Connection:
    """Open ``path`` in WAL mode with ``synchronous=FULL`` (the WAL is fsynced at every commit,
    so a commit survives power loss, not only a crash), create ``schema``, run ``migrate(db,
    found_version)`` and stamp ``version`` (``PRAGMA user_version``).

    A file from a newer noderuntime is refused. ``check`` runs ``quick_check`` and raises
    :class:`StoreCorruptError` if it fails; so does a file SQLite cannot read at all.
    """
    db: aiosqlite.Connection | None = None
    try:
        db = await aiosqlite.connect(path, isolation_level=None)
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA synchronous=FULL")
        await db.execute("PRAGMA busy_timeout=5000")
        async with db.execute("PRAGMA user_version") as cur:
            row = await cur.fetchone()
        found = int(row[0]) if row else 0
        if found > version:
            raise StoreError(
                f"{path} was written by a newer noderuntime ({what} schema {found}, this one "
                f"knows {version}); upgrade noderuntime or restore a backup"
            )
        await db.executescript(schema)
        if migrate is not None:
            await migrate(db, found)
        await db.execute(f"PRAGMA user_version={version}")
        if check:
            async with db.execute("PRAGMA quick_check") as cur:
                result = await cur.fetchone()
            if not result or result[0] != "ok":
                raise StoreCorruptError(
                    f"{path} failed its integrity check ({result[0] if result else '?'}); "
                    "restore it from a backup (see docs/operations.md)"
                )
    except BaseException as exc:
        if db is not None:
            await db.close()
        if isinstance(exc, sqlite3.DatabaseError) and check:
            raise StoreCorruptError(f"cannot open {what} database {path}: {exc}") from exc
        if isinstance(exc, sqlite3.Error):
            raise StoreError(f"cannot open {what} database {path}: {exc}") from exc
        raise
    return db


async def on_db_thread(db: aiosqlite.Connection, fn: Callable[[sqlite3.Connection], R]) -> R:
    """Run ``fn`` with the SQLite connection on ``db``'s own worker thread, in order with the
    statements already queued there: one thread hop for a whole transaction, where each
    ``execute`` is one (a hop costs both threads tens of microseconds; a state commit has up to
    seven statements). ``fn`` must not touch the event loop.

    aiosqlite has no public way to do this; it is its ``_execute`` (the method behind every
    call) and ``_conn``, used only here and checked by ``tests/unit/test_sqlitedb.py``.
    """

    def call() -> R:
        return fn(db._conn)

    result: R = await db._execute(call)  # type: ignore[no-untyped-call]
    return result


def commit_or_roll_back(conn: sqlite3.Connection, statements: Callable[[], object]) -> None:
    """``BEGIN IMMEDIATE``, ``statements()``, ``COMMIT``; rolled back if anything fails (for a
    function run by :func:`on_db_thread` on a connection opened by :func:`open_db`)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        statements()
        conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise


class GroupCommit(Generic[T, R]):
    """One writer task: items queued meanwhile are committed together by ``commit(batch)``,
    which returns one result per item; each caller's future resolves once its batch is durable
    (or fails with :class:`StoreError`). Queueing is synchronous, so call order is commit order.
    """

    def __init__(
        self,
        commit: Callable[[list[T]], Awaitable[list[R]]],
        *,
        what: str,
        path: Path,
        name: str,
    ) -> None:
        self._commit = commit
        self._what = what
        self._path = path
        self._name = name
        self._queue: list[tuple[T, asyncio.Future[R]]] = []
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._committing = False
        #: Why the latest commit failed; None once one succeeds.
        self.last_error: str | None = None
        #: Commits made and the seconds they took in all (fsync included), for metrics.
        self.commits = 0
        self.commit_seconds = 0.0

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done() and not self._closing

    def start(self) -> None:
        self._closing = False
        self._task = asyncio.create_task(self._loop(), name=self._name)

    def submit(self, item: T) -> asyncio.Future[R]:
        fut: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        if not self.running:
            fut.set_exception(StoreError(f"{self._what} database is not open"))
            return fut
        self._queue.append((item, fut))
        self._wakeup.set()
        return fut

    async def drain(self) -> None:
        """Return once everything queued has been committed or has failed."""
        while (self._queue or self._committing) and self._task and not self._task.done():
            self._idle.clear()
            await self._idle.wait()

    async def close(self) -> None:
        """Commit what is queued (it was promised durability), then stop the writer."""
        if self._task is None:
            return
        self._closing = True
        self._wakeup.set()
        try:
            await self._task
        finally:
            self._task = None

    async def _loop(self) -> None:
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
                results = await self._commit([item for item, _ in batch])
                self.commits += 1
                self.commit_seconds += time.monotonic() - started
            except sqlite3.Error as exc:
                self.last_error = f"commit failed: {exc}"
                err = StoreError(f"cannot write to {self._what} database {self._path}: {exc}")
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(err)
                continue
            finally:
                self._committing = False
                self._idle.set()
            self.last_error = None
            for (_, fut), result in zip(batch, results, strict=True):
                if not fut.done():
                    fut.set_result(result)


# --- riders: another store's rows made durable by the state commit --------------------------

# The state file's outbox (one B-tree: a row costs a commit one page, not a table's and an
# index's). Rows leave it once their own store has them (``drop``); a row whose
# drop was lost is harmless, its reader skips what it already holds (by ``seq``).
OUTBOX_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    topic TEXT NOT NULL,
    seq INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (topic, seq)
) WITHOUT ROWID;
"""


class Rider(NamedTuple):
    """One row for the outbox: ``data`` under (``topic``, ``seq``); a later one replaces it.
    A tuple in column order: made for every audited write, and bound as it is."""

    topic: str
    seq: int
    data: bytes


class RiderLog(Protocol):
    """A store whose rows ride state commits (the audit log)."""

    def pull(self) -> Sequence[Rider]:
        """Every row not yet durable anywhere; called inside the commit's transaction, so rows
        reach the outbox in the order they were made, without gaps."""

    def settled(self, riders: Sequence[Rider], ok: bool) -> None:
        """The commit that carried ``riders`` is durable (``ok``) or was rolled back; called
        before the next commit pulls."""


class RiderSource(Protocol):
    """What a change is made on behalf of (a control-API write and its audit entry)."""

    def prepare(self) -> RiderLog:
        """Called when a change is queued: make the rows that must be durable with it (once
        per source) and name the log they are pulled from at commit."""


#: Set by whoever makes a change on someone's behalf (the control API, per request): commits
#: queued in this context carry that source's rows in the same transaction.
COMMIT_RIDERS: contextvars.ContextVar[RiderSource | None] = contextvars.ContextVar(
    "commit_riders", default=None
)


def read_outbox(path: Path, topic: str, after_seq: int) -> list[Rider]:
    """The rows of ``topic`` after ``after_seq`` in the outbox of the file at ``path``, in seq
    order; none if there is no such file or table. Blocking: run it in a thread, before the
    file's own store opens it."""
    if not path.exists():
        return []
    try:
        with contextlib.closing(sqlite3.connect(path)) as db:
            rows = db.execute(
                "SELECT seq, data FROM outbox WHERE topic = ? AND seq > ? ORDER BY seq",
                (topic, after_seq),
            ).fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return []
        raise StoreError(f"cannot read the outbox of {path}: {exc}") from exc
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read the outbox of {path}: {exc}") from exc
    return [Rider(topic, int(seq), bytes(data)) for seq, data in rows]
