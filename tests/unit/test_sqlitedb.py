"""``sqlitedb.on_db_thread``: a whole transaction in one hop to aiosqlite's worker thread. It
relies on aiosqlite internals (no public API does this), so an aiosqlite upgrade that changes
them fails here, not in a commit."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from noderuntime.sqlitedb import commit_or_roll_back, on_db_thread, open_db

SCHEMA = "CREATE TABLE IF NOT EXISTS t (k INTEGER PRIMARY KEY, v TEXT NOT NULL);"


async def test_runs_on_the_connections_thread_in_order_with_queued_statements(
    tmp_path: Path,
) -> None:
    db = await open_db(tmp_path / "x.db", what="test", version=1, schema=SCHEMA)
    try:
        await db.execute("INSERT INTO t VALUES (1, 'queued before')")

        def insert(conn: sqlite3.Connection) -> str:
            commit_or_roll_back(conn, lambda: conn.execute("INSERT INTO t VALUES (2, 'in fn')"))
            return threading.current_thread().name

        thread = await on_db_thread(db, insert)
        assert thread != threading.current_thread().name
        async with db.execute("SELECT k, v FROM t ORDER BY k") as cur:
            assert [tuple(r) async for r in cur] == [(1, "queued before"), (2, "in fn")]
    finally:
        await db.close()


async def test_a_failing_statement_rolls_the_whole_transaction_back(tmp_path: Path) -> None:
    db = await open_db(tmp_path / "x.db", what="test", version=1, schema=SCHEMA)
    try:

        def two_inserts(conn: sqlite3.Connection) -> None:
            def statements() -> None:
                conn.execute("INSERT INTO t VALUES (1, 'first')")
                conn.execute("INSERT INTO t VALUES (1, 'same key')")

            commit_or_roll_back(conn, statements)

        with pytest.raises(sqlite3.IntegrityError):
            await on_db_thread(db, two_inserts)
        assert not db.in_transaction
        async with db.execute("SELECT COUNT(*) FROM t") as cur:
            assert await cur.fetchone() == (0,)
    finally:
        await db.close()
