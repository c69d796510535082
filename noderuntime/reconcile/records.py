"""Status records: built from each pass, written when they change, in writes that fit.

Invariants:
- Records are written on transitions only (phase, container, restarts, health, message, ...):
  every write is a signed CRDT update that stays in history.
- ``since`` is when the current phase began for the current container: kept while both stay,
  reset when either changes (a re-created container is a new one, even if Running again).
- No write exceeds the update bound (``MAX_UPDATE_BYTES``, what sync carries): changes are
  split into writes of at most ``STATUS_WRITE_BUDGET_BYTES`` of records, and messages are
  clipped, so no size of fleet can make a pass fail.
- A write that fails loses nothing: the records stay ``live`` (views show them, with the
  store's problem beside them) and each pass compares them with what is stored, so the next
  pass writes them again; the loop retries with back-off while writes fail.
- The loop is not woken by its own status writes: they are made with ``WRITING_STATUS`` set,
  and the store tells listeners in the writer's context (a commit callback captures it).
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from noderuntime.crdt import schema
from noderuntime.crdt.envelope import MAX_UPDATE_BYTES
from noderuntime.crdt.state import StateStore
from noderuntime.errors import UpdateRejectedError
from noderuntime.reconcile.status import Derived

# A quarter of the bound: the CRDT's own bytes per entry (ids, lengths, the delete set of the
# value replaced) are a few dozen at most, next to a few hundred of JSON.
STATUS_WRITE_BUDGET_BYTES = MAX_UPDATE_BYTES // 4
ENTRY_OVERHEAD_BYTES = 64
# Messages carry runtime errors, which we do not control; a record stays small whatever they say.
STATUS_MESSAGE_MAX_CHARS = 1000

# True in the context of a status write by the loop (see the module's invariants).
WRITING_STATUS: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "noderuntime_writing_status", default=False
)

Changes = dict[str, schema.StatusRecord | None]


def clip(message: str) -> str:
    if len(message) <= STATUS_MESSAGE_MAX_CHARS:
        return message
    return message[: STATUS_MESSAGE_MAX_CHARS - 1] + "…"


def status_record(
    d: Derived,
    prev: schema.StatusRecord | None,
    *,
    now: float,
    restarts: int,
    health: str | None,
    spec_hash: str,
    enabled: bool,
    enabled_at: float | None,
    runtime_down: bool,
) -> schema.StatusRecord:
    """The record for a derived status; ``prev`` is the last one (shown or stored)."""
    rec = schema.StatusRecord(
        phase=d.phase.value,
        # While the runtime is down nobody knows which container runs: keep the last known.
        container_id=(prev.container_id if prev else None) if runtime_down else d.container_id,
        restarts=restarts,
        health=health,
        since=now,
        message=clip(d.message),
        spec_hash=spec_hash,
        exit_code=d.exit_code,
        retry_at=d.retry_at,
        enabled=enabled,
        enabled_at=enabled_at if enabled else None,
    )
    if prev is not None and prev.phase == rec.phase and prev.container_id == rec.container_id:
        rec = replace(rec, since=prev.since)
    return rec


def changes_to_store(
    records: Mapping[str, schema.StatusRecord], stored: Mapping[str, schema.StatusRecord]
) -> Changes:
    """What to write so the store holds ``records``: changed ones, and deletes of the rest."""
    out: Changes = {name: rec for name, rec in records.items() if stored.get(name) != rec}
    out.update({name: None for name in stored if name not in records})
    return out


def split_changes(changes: Changes, budget_bytes: int = STATUS_WRITE_BUDGET_BYTES) -> list[Changes]:
    """``changes`` in batches of at most ``budget_bytes`` of records (one record at least)."""
    batches: list[Changes] = []
    batch: Changes = {}
    size = 0
    for name, rec in sorted(changes.items()):
        cost = len(name.encode()) + ENTRY_OVERHEAD_BYTES
        cost += len(rec.to_json().encode()) if rec is not None else 0
        if batch and size + cost > budget_bytes:
            batches.append(batch)
            batch, size = {}, 0
        batch[name] = rec
        size += cost
    if batch:
        batches.append(batch)
    return batches


# How the node's own status writes are summarised in the history (readers hide them).
STATUS_SUMMARY_PREFIX = "status "


def summary(changes: Changes) -> str:
    text = STATUS_SUMMARY_PREFIX + ", ".join(
        f"{name} {rec.phase}" if rec is not None else f"{name} removed"
        for name, rec in sorted(changes.items())
    )
    return text[:200]


class StatusWriter:
    """Keeps the records the loop last derived and gets them into the node document."""

    def __init__(
        self,
        state: StateStore,
        *,
        log: logging.Logger,
        on_problem: Callable[[str], None],
        budget_bytes: int = STATUS_WRITE_BUDGET_BYTES,
    ) -> None:
        self._state = state
        self._log = log
        self._on_problem = on_problem  # told when writes start failing or work again (events)
        self._budget = budget_bytes
        # The records of the last pass, stored or not: what is observed now.
        self.live: dict[str, schema.StatusRecord] = {}
        # Why the latest status write failed; None once one succeeds.
        self.error: str | None = None
        self.failures = 0

    def previous(self, name: str) -> schema.StatusRecord | None:
        """The last record of ``name``: what the loop derived, else what is stored."""
        return self.live.get(name) or self._state.snapshot().node.status.get(name)

    async def store(self, records: Mapping[str, schema.StatusRecord]) -> bool:
        """Make the node document hold ``records`` (and no others); False if a write failed."""
        self.live = dict(records)
        changes = changes_to_store(records, self._state.snapshot().node.status)
        try:
            for batch in split_changes(changes, self._budget):
                await self._write(batch)
        except Exception as exc:
            # Disk full, a closed store, or a bug: the records stay live and the next pass
            # tries again. Nothing here may end the pass for every other workload.
            self.failures += 1
            if self.error is None:
                self._log.error("status could not be stored (will retry): %s", exc)
                self._on_problem(f"status could not be stored (will retry): {exc}")
            self.error = str(exc) or type(exc).__name__
            return False
        if self.error is not None:
            self._log.info("status is stored again")
            self._on_problem("status is stored again")
        self.error = None
        self.failures = 0
        return True

    async def _write(self, changes: Changes) -> None:
        def mutate(doc: Any) -> None:
            for name, rec in changes.items():
                if rec is None:
                    schema.delete_status(doc, name)
                else:
                    schema.put_status(doc, name, rec)

        token = WRITING_STATUS.set(True)
        try:
            await self._state.write(self._state.node_doc, mutate, summary=summary(changes))
        except UpdateRejectedError:
            if len(changes) == 1:
                raise
            # The estimate was wrong for these records: halve until each part fits.
            names = sorted(changes)
            half = len(names) // 2
            await self._write({n: changes[n] for n in names[:half]})
            await self._write({n: changes[n] for n in names[half:]})
        finally:
            WRITING_STATUS.reset(token)
