"""A full check of a store file, for `noderuntime doctor` (the node itself only checks what it
loads: a quick check and the updates after each snapshot); and what the node does with a store
file it cannot open at all (:func:`is_damaged`, :func:`set_aside`).

Read-only: opens ``state.db`` with ``mode=ro`` while the node may be running (WAL readers do not
block the writer). Checks SQLite's own ``PRAGMA integrity_check``; that every stored update still
has the content digest it was stored with (a flipped bit that pycrdt would happily decode into
something else); that every update decodes (the strict v1 parser, then a replay into a scratch
document, in order, per document); and that every snapshot decodes.
"""

from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pycrdt import Doc

from noderuntime.crdt.clocks import UpdateFormatError, parse_update
from noderuntime.crdt.state import apply_update_safely
from noderuntime.crdt.store import update_digest
from noderuntime.errors import StoreCorruptError, StoreError

# What a store file set aside is called: state.db.damaged-20261203-081500 (+ -wal, -shm).
DAMAGED_SUFFIX = ".damaged-"

# Problems listed one by one; beyond this many, only counted.
MAX_LISTED = 5


@dataclass
class StoreInspection:
    integrity: list[str] = field(default_factory=list)  # integrity_check lines other than "ok"
    bad_updates: list[str] = field(default_factory=list)  # "seq N of DOC: why"
    bad_snapshots: list[str] = field(default_factory=list)
    seqs: dict[str, int] = field(default_factory=dict)  # highest stored seq per document
    updates: int = 0

    @property
    def ok(self) -> bool:
        return not (self.integrity or self.bad_updates or self.bad_snapshots)

    def problems(self) -> list[str]:
        out = [f"integrity check: {line}" for line in self.integrity[:MAX_LISTED]]
        if self.bad_updates:
            shown = "; ".join(self.bad_updates[:MAX_LISTED])
            more = len(self.bad_updates) - MAX_LISTED
            out.append(
                f"{len(self.bad_updates)} stored update(s) could not be decoded or were "
                f"altered ({shown}{f'; and {more} more' if more > 0 else ''})"
            )
        out += [f"snapshot of {doc} could not be decoded" for doc in self.bad_snapshots]
        return out


def inspect_store(db: Path) -> StoreInspection:
    """Check ``db`` throughout; raises sqlite3.Error if it cannot be read at all."""
    out = StoreInspection()
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        out.integrity = [
            str(r[0]) for r in conn.execute("PRAGMA integrity_check") if str(r[0]) != "ok"
        ]
        columns = {r[1] for r in conn.execute("PRAGMA table_info(updates)")}
        digest = "digest" if "digest" in columns else "NULL"
        docs: dict[str, Doc[Any]] = {}
        for seq, doc, data, author, signature, meta, stored in conn.execute(
            f"SELECT seq, doc, data, author, signature, meta, {digest} FROM updates ORDER BY seq"
        ):
            out.updates += 1
            out.seqs[doc] = max(out.seqs.get(doc, 0), int(seq))
            why = _problem(bytes(data), str(doc), str(author), bytes(signature), str(meta), stored)
            if why is None:
                why = apply_update_safely(docs.setdefault(doc, Doc()), bytes(data))
            if why is not None:
                out.bad_updates.append(f"seq {seq} of {doc}: {why}")
        for doc, upto, data in conn.execute("SELECT doc, upto_seq, data FROM snapshots"):
            out.seqs[doc] = max(out.seqs.get(doc, 0), int(upto))
            if apply_update_safely(Doc(), bytes(data)) is not None:
                out.bad_snapshots.append(str(doc))
    finally:
        conn.close()
    return out


def _problem(
    data: bytes, doc: str, author: str, signature: bytes, meta: str, stored: bytes | None
) -> str | None:
    if stored is not None and bytes(stored) != update_digest(doc, data, author, signature, meta):
        return "its content no longer matches the digest it was stored with"
    try:
        parse_update(data)
    except UpdateFormatError as exc:
        return f"not a well-formed update ({exc})"
    return None


def is_damaged(err: StoreError) -> bool:
    """Whether ``err`` says the file's content is bad (not a database, malformed, failed its
    integrity check), as opposed to a condition that may pass (locked, I/O error, no space,
    permissions: sqlite3.OperationalError) or a newer schema."""
    cause = err.__cause__
    if cause is None:
        return isinstance(err, StoreCorruptError)  # the quick check said so
    return isinstance(cause, sqlite3.DatabaseError) and not isinstance(
        cause, sqlite3.OperationalError
    )


def set_aside(db: Path, now: float | None = None) -> Path:
    """Rename ``db`` (and its -wal/-shm) out of the way, kept for a look; returns the new name."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(time.time() if now is None else now))
    aside = db.with_name(f"{db.name}{DAMAGED_SUFFIX}{stamp}")
    for suffix in ("", "-wal", "-shm"):
        src = Path(f"{db}{suffix}")
        if src.exists():
            os.replace(src, Path(f"{aside}{suffix}"))
    return aside
