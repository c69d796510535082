"""The node's audit log: :class:`Audit`, what every part records into.

``record(kind, actor, **fields)`` is synchronous and never waits: the entry is chained at once
(call order is chain order) and committed by a background writer that groups everything
recorded meanwhile into one commit, on its own SQLite file. A control-API write therefore pays
for its audit entry with a hash and a queue append, not an fsync of its own (``bench/
durable_updates.py`` measures it). ``flush()`` waits until everything recorded so far is
durable; the daemon flushes at shutdown, tests wherever they read back.

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
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

from noderuntime.audit.chain import (
    GENESIS,
    MAX_LINKS,
    AuditKind,
    ChainVerifier,
    Checkpoint,
    Entry,
    Verdict,
    chain_entry,
    sign_checkpoint,
)
from noderuntime.audit.store import AuditStore
from noderuntime.errors import StoreError
from noderuntime.identity.keys import verify as verify_signature

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


class AuditSink(Protocol):
    """What a part of the node needs to audit something: one call that never blocks."""

    def record(self, kind: AuditKind, actor: str, **fields: Any) -> None: ...


class NullAudit:
    """Records nothing: for parts run without a node (tests, one-shot commands)."""

    def record(self, kind: AuditKind, actor: str, **fields: Any) -> None:
        return None


class MemoryAudit:
    """Keeps (kind, actor, fields) in a list: for tests that check what a part audits."""

    def __init__(self) -> None:
        self.records: list[tuple[AuditKind, str, dict[str, Any]]] = []

    def record(self, kind: AuditKind, actor: str, **fields: Any) -> None:
        self.records.append((kind, actor, fields))

    def of(self, kind: AuditKind) -> list[dict[str, Any]]:
        return [{"actor": a, **f} for k, a, f in self.records if k is kind]


_SCALARS = (str, int, float, bool, type(None))


def _plain(fields: dict[str, Any]) -> dict[str, Any]:
    """Fields as they will read back from disk (JSON types only), so the hash still matches."""
    if all(type(v) in _SCALARS for v in fields.values()):
        return fields  # the usual case, and on every write: no round trip needed
    out = json.loads(json.dumps(fields, default=str))
    assert isinstance(out, dict)
    return out


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
        self._pending: list[Entry] = []
        self._durable_seq = 0
        self._durable = asyncio.Condition()
        self._wakeup = asyncio.Event()
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
        self._durable_seq = self._head_seq
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
        e = chain_entry(
            self._head, self._head_seq + 1, self._clock(), kind.value, actor, _plain(fields)
        )
        self._head_seq, self._head = e.seq, e.hash
        self._pending.append(e)
        self._wakeup.set()

    @property
    def head_seq(self) -> int:
        return self._head_seq

    async def flush(self) -> None:
        """Return once everything recorded before this call is durable."""
        target = self._head_seq
        async with self._durable:
            await self._durable.wait_for(lambda: self._durable_seq >= target or not self._tasks)

    async def _write_loop(self) -> None:
        delay = RETRY_MIN_S
        last_commit = -COMMIT_EVERY_S
        while True:
            if not self._pending:
                if self._stop.is_set():
                    return
                await self._wakeup.wait()
                self._wakeup.clear()
                continue
            wait = last_commit + COMMIT_EVERY_S - time.monotonic()
            if wait > 0 and not self._stop.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await self._stop.wait()
            last_commit = time.monotonic()
            batch = self._pending
            self._pending = []
            try:
                await self.store.append(batch)
            except StoreError as exc:
                # Kept in order, in memory, and tried again: a gap would break the chain.
                self._pending = batch + self._pending
                self.last_error = str(exc)
                self._log.error("audit entries not stored yet: %s", exc)
                if self._stop.is_set():
                    return
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._stop.wait()
                delay = min(delay * 2, RETRY_MAX_S)
                continue
            delay = RETRY_MIN_S
            self.last_error = None
            async with self._durable:
                self._durable_seq = batch[-1].seq
                self._durable.notify_all()

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
