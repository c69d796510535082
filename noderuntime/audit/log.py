"""The node's audit log: :class:`Audit`, what every part records into.

``record(kind, actor, **fields)`` is synchronous and never waits: the entry is chained at once
(call order is chain order) and committed by a background writer that groups everything
recorded meanwhile into one commit, on its own SQLite file. ``flush()`` waits until everything
recorded so far is in that file; the daemon flushes at shutdown, tests wherever they read back.

A control-API write's entry rides the write's own commit instead (``ride``; docs/architecture.md,
"Audit entries ride the state commit"): chained when the write is queued, it goes into the
state file's outbox in the same transaction as the write, together with every entry not yet
durable anywhere, so a write never survives a crash without its entry, and the chain in the
outbox continues the one in ``audit.db`` without a gap. Entries that rode are copied to
``audit.db`` at most every ``RIDDEN_COMMIT_EVERY_S`` (they are durable already), and opening
the log copies over whatever a crash left only in the outbox.

A checkpoint (signed head) is taken every ``checkpoint_every_s`` when entries were added, at
shutdown and before pruning; ``on_checkpoint`` hands it to whoever publishes it to hubs.
Retention is by size: once the log uses more than ``max_bytes``, the oldest entries go, down to
three quarters of it, after a checkpoint pins the last one removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from noderuntime.audit.chain import (
    GENESIS,
    MAX_LINKS,
    AuditKind,
    ChainVerifier,
    Checkpoint,
    Entry,
    Verdict,
    canonical,
    chain_entry,
    sign_checkpoint,
)
from noderuntime.audit.store import AuditStore
from noderuntime.errors import StoreError
from noderuntime.identity.keys import verify as verify_signature
from noderuntime.sqlitedb import Rider, read_outbox

# Each checkpoint is also published in the node's document (~550 B), whose signed history every
# hub keeps: at most 96 a day (~50 KB) from a busy node, none from an idle one.
CHECKPOINT_EVERY_S = 900.0
DEFAULT_MAX_BYTES = 64 << 20
# Retention prunes down to this share of max_bytes, so it runs now and then, not per entry.
PRUNE_TO = 0.75
VERIFY_PAGE = 5000
RETRY_MIN_S, RETRY_MAX_S = 0.5, 30.0
# At most one audit commit (one fsync) this often: entries recorded meanwhile share it. A second
# fsync stream beside the state store's cost busy nodes 28 % of their durable writes/s at 16
# writers (bench/audit_cost.py); the first entry after a quiet spell still commits at once.
COMMIT_EVERY_S = 0.1
# How often entries already durable in the state file's outbox are copied to audit.db (one fsync
# of audit.db and one outbox delete riding the next state commit).
RIDDEN_COMMIT_EVERY_S = 1.0
# The outbox topic audit entries ride under.
OUTBOX_TOPIC = "audit"


class AuditSink(Protocol):
    """What a part of the node needs to audit something: one call that never blocks."""

    def record(self, kind: AuditKind, actor: str, **fields: Any) -> None: ...


class RideSink(AuditSink, Protocol):
    """An audit log whose entries can ride the state commits they describe."""

    def ride(self, kind: AuditKind, actor: str, **fields: Any) -> Ride | None:
        """An entry to chain when (and if) a change is queued in the context the caller sets
        :data:`~noderuntime.sqlitedb.COMMIT_RIDERS` to; None where entries cannot ride."""


class Outbox(Protocol):
    """Where ridden entries wait (the state store): told when audit.db holds them."""

    def drop_riders(self, topic: str, through_seq: int) -> None: ...


class NullAudit:
    """Records nothing: for parts run without a node (tests, one-shot commands)."""

    def record(self, kind: AuditKind, actor: str, **fields: Any) -> None:
        return None

    def ride(self, kind: AuditKind, actor: str, **fields: Any) -> Ride | None:
        return None


class MemoryAudit:
    """Keeps (kind, actor, fields) in a list: for tests that check what a part audits."""

    def __init__(self) -> None:
        self.records: list[tuple[AuditKind, str, dict[str, Any]]] = []

    def record(self, kind: AuditKind, actor: str, **fields: Any) -> None:
        self.records.append((kind, actor, fields))

    def of(self, kind: AuditKind) -> list[dict[str, Any]]:
        return [{"actor": a, **f} for k, a, f in self.records if k is kind]

    def ride(self, kind: AuditKind, actor: str, **fields: Any) -> Ride | None:
        return None


class Ride:
    """One control-API write's entry, chained the first time the write queues a commit
    (:meth:`prepare`); ``chained`` says whether it was. ``close`` ends the write: a commit
    queued later (by a task it started) carries pending entries but chains nothing."""

    def __init__(self, log: Audit, kind: AuditKind, actor: str, fields: dict[str, Any]) -> None:
        self._log = log
        self._entry: tuple[AuditKind, str, dict[str, Any]] | None = (kind, actor, fields)
        self.chained = False

    def prepare(self) -> Audit:
        if self._entry is not None:
            self._log._chain(*self._entry)
            self._entry = None
            self.chained = True
        return self._log

    def close(self) -> None:
        self._entry = None


_SCALARS = (str, int, float, bool, type(None))


def _plain(fields: dict[str, Any]) -> dict[str, Any]:
    """Fields as they will read back from disk (JSON types only), so the hash still matches."""
    if all(type(v) in _SCALARS for v in fields.values()):
        return fields  # the usual case, and on every write: no round trip needed
    out = json.loads(json.dumps(fields, default=str))
    assert isinstance(out, dict)
    return out


def _escaped(value: Any) -> Any:
    """``value`` with every string's unencodable characters written as backslash escapes."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return {_escaped(k): _escaped(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_escaped(v) for v in value]
    return value


class Audit:
    """The hash-chained audit log of one node (an async context manager)."""

    def __init__(
        self,
        store: AuditStore,
        *,
        node: str,
        sign: Callable[[bytes], bytes],
        public_key: bytes,
        clock: Callable[[], float] = time.time,
        log: logging.Logger | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
        checkpoint_every_s: float = CHECKPOINT_EVERY_S,
        outbox_path: Path | None = None,
    ) -> None:
        self.store = store
        self.node = node
        self._sign = sign
        self.public_key = public_key
        self._clock = clock
        self._log = log or logging.getLogger(__name__)
        self.max_bytes = max_bytes
        self.checkpoint_every_s = checkpoint_every_s
        # Told of every checkpoint taken (the daemon publishes it for hubs to witness).
        self.on_checkpoint: Callable[[Checkpoint], None] | None = None
        self._head_seq = 0
        self._head = GENESIS
        # Chained, not yet in audit.db: being committed there, then waiting (seq order).
        self._inflight: list[Entry] = []
        self._pending: list[Entry] = []
        self._durable_seq = 0
        self._durable = asyncio.Condition()
        self._wakeup = asyncio.Event()
        self._urgent = asyncio.Event()  # commit now: a flush, or a state commit rolled back
        self._plain = asyncio.Event()  # an entry that rides nothing was recorded
        # Riding: the state file holding the outbox (read at open), and the store that drops
        # rows from it once audit.db has them (set once the state store is open).
        self._outbox_path = outbox_path
        self.outbox: Outbox | None = None
        self._outboxed_seq = 0  # entries up to here were pulled into a state commit
        self._ridden_seq = 0  # ... and up to here such a commit is durable
        self._dropped_seq = 0
        self._plain_seq = 0  # the newest entry recorded without a ride
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._checkpointed_seq = 0
        self.last_error: str | None = None
        self.last_checkpoint: Checkpoint | None = None

    async def __aenter__(self) -> Audit:
        await self.store.open()
        last = await self.store.last()
        cps = await self.store.checkpoints()
        if last is not None:
            self._head_seq, self._head = last.seq, last.hash
        elif cps:  # every entry pruned: the chain continues from the newest checkpoint
            self._head_seq, self._head = cps[-1].seq, cps[-1].head
        await self._recover()
        self._durable_seq = self._outboxed_seq = self._ridden_seq = self._head_seq
        self._dropped_seq = self._plain_seq = self._head_seq
        if cps:
            self.last_checkpoint = cps[-1]
            self._checkpointed_seq = cps[-1].seq
        self._stop.clear()
        self._tasks = [
            asyncio.create_task(self._write_loop(), name="audit-writer"),
            asyncio.create_task(self._checkpoint_loop(), name="audit-checkpoints"),
        ]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        self._wakeup.set()
        with contextlib.suppress(Exception):
            await asyncio.gather(*self._tasks)
        self._tasks = []
        with contextlib.suppress(StoreError):
            await self.checkpoint()
        await self.store.close()

    # --- recording ---------------------------------------------------------------------------

    def record(self, kind: AuditKind, actor: str, **fields: Any) -> None:
        self._plain_seq = self._chain(kind, actor, fields).seq
        self._wakeup.set()
        self._plain.set()

    def ride(self, kind: AuditKind, actor: str, **fields: Any) -> Ride:
        return Ride(self, kind, actor, fields)

    def _chain(self, kind: AuditKind, actor: str, fields: dict[str, Any]) -> Entry:
        plain = _plain(fields)
        try:
            e = chain_entry(self._head, self._head_seq + 1, self._clock(), kind.value, actor, plain)
        except UnicodeEncodeError:
            # A lone surrogate (JSON's "\ud800" decodes to one) cannot be UTF-8: a peer's text
            # in a rejection's detail must not make recording raise. Kept visibly escaped.
            actor, plain = _escaped(actor), _escaped(plain)
            e = chain_entry(self._head, self._head_seq + 1, self._clock(), kind.value, actor, plain)
        self._head_seq, self._head = e.seq, e.hash
        self._pending.append(e)
        return e

    # RiderLog (sqlitedb.py): called by the state store's writer inside its transaction.

    def pull(self) -> list[Rider]:
        """Every entry not yet durable anywhere, for the outbox: the outbox and audit.db then
        hold a chain without a gap whatever a crash interrupts."""
        after = max(self._outboxed_seq, self._durable_seq)
        out = []
        # Both lists hold consecutive seqs, oldest first: start past what already rode.
        for waiting in (self._inflight, self._pending):
            if waiting and waiting[-1].seq > after:
                skip = max(after + 1 - waiting[0].seq, 0)
                out += [Rider(OUTBOX_TOPIC, e.seq, _outbox_row(e)) for e in waiting[skip:]]
        if out:
            self._outboxed_seq = out[-1].seq
        return out

    def settled(self, riders: Sequence[Rider], ok: bool) -> None:
        if not riders:
            return
        if ok:
            self._ridden_seq = max(self._ridden_seq, riders[-1].seq)
            self._wakeup.set()  # they go on to audit.db at the ridden pace
            return
        # Rolled back: the next pull sends them again, and audit.db takes them now.
        self._outboxed_seq = min(self._outboxed_seq, riders[0].seq - 1)
        self._urgent.set()

    @property
    def head_seq(self) -> int:
        return self._head_seq

    async def flush(self) -> None:
        """Return once everything recorded before this call is in audit.db."""
        target = self._head_seq
        self._urgent.set()
        async with self._durable:
            await self._durable.wait_for(lambda: self._durable_seq >= target or not self._tasks)

    def _commit_every(self) -> float:
        """How long the writer may wait after a commit: longer while everything waiting is
        durable in the outbox already (or on its way there with the write it describes)."""
        if self._plain_seq > max(self._outboxed_seq, self._durable_seq):
            return COMMIT_EVERY_S
        return RIDDEN_COMMIT_EVERY_S

    async def _write_loop(self) -> None:
        delay = RETRY_MIN_S
        last_commit = -RIDDEN_COMMIT_EVERY_S
        while True:
            if not self._pending:
                if self._stop.is_set():
                    return
                await self._wakeup.wait()
                self._wakeup.clear()
                continue
            wait = last_commit + self._commit_every() - time.monotonic()
            if wait > 0 and not self._stop.is_set() and not self._urgent.is_set():
                # Woken early by a plain record (it may shorten the wait), a flush or stop.
                self._plain.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await _first(self._stop, self._urgent, self._plain)
                continue
            self._urgent.clear()
            last_commit = time.monotonic()
            self._inflight, self._pending = self._pending, []
            try:
                await self.store.append(self._inflight)
            except StoreError as exc:
                # Kept in order, in memory, and tried again: a gap would break the chain.
                self._pending = self._inflight + self._pending
                self._inflight = []
                self.last_error = str(exc)
                self._log.error("audit entries not stored yet: %s", exc)
                if self._stop.is_set():
                    return
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._stop.wait()
                delay = min(delay * 2, RETRY_MAX_S)
                continue
            batch, self._inflight = self._inflight, []
            delay = RETRY_MIN_S
            self.last_error = None
            async with self._durable:
                self._durable_seq = batch[-1].seq
                self._durable.notify_all()
            through = min(self._durable_seq, self._ridden_seq)
            if self.outbox is not None and through > self._dropped_seq:
                self.outbox.drop_riders(OUTBOX_TOPIC, through)
                self._dropped_seq = through

    async def _recover(self) -> None:
        """Copy to audit.db the entries a crash left only in the state file's outbox: those
        that continue the chain from its head (older ones are there already; a row that does
        not link, from another copy of the state file, is left alone)."""
        if self._outbox_path is None:
            return
        try:
            rows = await asyncio.to_thread(
                read_outbox, self._outbox_path, OUTBOX_TOPIC, self._head_seq
            )
        except StoreError as exc:
            # A damaged state file is set aside by the state store; the node still starts.
            self._log.error("audit outbox not read: %s", exc)
            return
        found = []
        for r in rows:
            e = _outbox_entry(r.data)
            if e is None or e.seq != self._head_seq + 1 or not _links(self._head, e):
                if e is None or e.seq > self._head_seq:
                    self._log.error("audit outbox entry %d does not continue the chain", r.seq)
                break
            found.append(e)
            self._head_seq, self._head = e.seq, e.hash
        if found:
            await self.store.append(found)
            self._log.warning(
                "audit entries %d-%d were only in the state file's outbox; copied to the log",
                found[0].seq,
                found[-1].seq,
            )

    async def _checkpoint_loop(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.checkpoint_every_s):
                    await self._stop.wait()
            if self._stop.is_set():
                return
            try:
                await self.checkpoint()
                await self.enforce_retention()
            except StoreError as exc:
                self.last_error = str(exc)
                self._log.error("audit checkpoint failed: %s", exc)

    # --- checkpoints, retention, verification ------------------------------------------------

    async def checkpoint(self, *, at_seq: int | None = None) -> Checkpoint | None:
        """Sign the chain's head (or the entry at ``at_seq``); None if nothing new to sign."""
        await self.flush()
        seq = self._durable_seq if at_seq is None else at_seq
        if seq == 0 or (at_seq is None and seq == self._checkpointed_seq):
            return None
        entry = await self.store.entry(seq)
        if entry is None:
            return None
        cps = await self.store.checkpoints()
        links = []
        for cp in [c for c in cps if c.seq < seq][-MAX_LINKS:]:
            # Read back from the entries: a rewritten log shows here, not the old signed head.
            linked = await self.store.entry(cp.seq)
            links.append((cp.seq, linked.hash if linked is not None else cp.head))
        cp = sign_checkpoint(
            Checkpoint(self.node, seq, entry.hash, self._clock(), tuple(links)), self._sign
        )
        await self.store.add_checkpoint(cp)
        if at_seq is None:
            self._checkpointed_seq = seq
            self.last_checkpoint = cp
            if self.on_checkpoint is not None:
                self.on_checkpoint(cp)
        return cp

    async def enforce_retention(self) -> int:
        """Prune the oldest entries once the log is over ``max_bytes``; how many went."""
        used = await self.store.used_bytes()
        if used <= self.max_bytes:
            return 0
        verdict = await self.verify()
        if not verdict.ok:
            # Never prune evidence of tampering away; it stays until someone looks.
            self._log.error("audit log over its size but not pruned: %s", verdict.broken)
            return 0
        span = verdict.last_seq - verdict.first_seq + 1
        keep = int(span * PRUNE_TO * self.max_bytes / used)
        cut = verdict.last_seq - max(keep, 1)
        if cut < verdict.first_seq:
            return 0
        await self.checkpoint(at_seq=cut)
        gone = await self.store.prune_through(cut)
        self.record(AuditKind.AUDIT_PRUNED, f"node:{self.node}", through=cut, entries=gone)
        self._log.info("audit log pruned through entry %d (%d entries)", cut, gone)
        return gone

    def check_signature(self, cp: Checkpoint) -> bool:
        return verify_signature(self.public_key, cp.signature, cp.message())

    async def verify(self) -> Verdict:
        await self.flush()
        return await verify_store(self.store, self.public_key)

    async def _wait_past(self, seq: int) -> None:
        async with self._durable:
            await self._durable.wait_for(lambda: self._durable_seq > seq)

    async def follow(self, after_seq: int) -> AsyncIterator[Entry]:
        """Entries after ``after_seq`` as they become durable, until cancelled."""
        while True:
            page = await self.store.entries(after_seq=after_seq, limit=VERIFY_PAGE)
            for e in page:
                yield e
                after_seq = e.seq
            if page:
                continue
            await self._wait_past(after_seq)


async def _first(*events: asyncio.Event) -> None:
    """Return once any of ``events`` is set."""
    waits = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()


def _outbox_row(e: Entry) -> bytes:
    """An entry as it waits in the outbox: its hash, then the bytes that were hashed."""
    body = e.body or canonical([e.seq, e.ts, e.kind, e.actor, dict(e.fields)])
    return e.hash + body


def _outbox_entry(data: bytes) -> Entry | None:
    try:
        seq, ts, kind, actor, fields = json.loads(data[32:])
        return Entry(int(seq), float(ts), str(kind), str(actor), fields, data[:32])
    except (ValueError, TypeError):
        return None


def _links(prev: bytes, e: Entry) -> bool:
    """Whether ``e`` is the entry that follows a chain whose head is ``prev``."""
    return chain_entry(prev, e.seq, e.ts, e.kind, e.actor, e.fields).hash == e.hash


async def verify_store(store: AuditStore, public_key: bytes) -> Verdict:
    """Verify a whole stored log, read in pages, against the node's public key."""

    def check(cp: Checkpoint) -> bool:
        return verify_signature(public_key, cp.signature, cp.message())

    verifier = ChainVerifier(await store.checkpoints(), check)
    after = 0
    while True:
        page = await store.entries(after_seq=after, limit=VERIFY_PAGE)
        if not page or not all(verifier.feed(e) for e in page):
            break
        after = page[-1].seq
    return verifier.finish()
