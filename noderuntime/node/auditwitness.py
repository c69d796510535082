"""At a hub: witness the audit checkpoints in the node documents it holds (audit/witness.py).

Told of every stored update; one from a peer to a ``node/<id>`` document is looked at once
the update is durable, in a task of its own (one at a time, latest per node wins): the check
reads and writes the hub's audit store, which the update listener must not wait for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from noderuntime.audit.chain import AuditKind, Checkpoint
from noderuntime.audit.log import Audit
from noderuntime.audit.store import WitnessAlert
from noderuntime.audit.witness import is_newer, judge
from noderuntime.crdt import schema
from noderuntime.crdt.mutation import Origin
from noderuntime.crdt.state import StateStore
from noderuntime.crdt.store import StoredUpdate
from noderuntime.errors import StoreError

NODE_DOC_PREFIX = schema.node_doc("")


class AuditWitness:
    """Checks each node's published checkpoint against the one this hub saw before."""

    def __init__(
        self,
        state: StateStore,
        audit: Audit,
        *,
        own_doc: str,
        clock: Callable[[], float] = time.time,
        log: logging.Logger | None = None,
    ) -> None:
        self.state = state
        self.audit = audit
        self.own_doc = own_doc
        self._clock = clock
        self._log = log or logging.getLogger(__name__)
        self._dirty: set[str] = set()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._unsubscribe: Callable[[], None] | None = None
        # Per node, the last checkpoint found bad: reported once, not at every update.
        self._reported: dict[str, Checkpoint] = {}

    async def __aenter__(self) -> AuditWitness:
        self._unsubscribe = self.state.subscribe_updates(self._heard)
        self._dirty.update(d for d in self.state.doc_names if self._watched(d))
        self._task = asyncio.create_task(self._run(), name="audit-witness")
        self._wakeup.set()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _watched(self, doc: str) -> bool:
        return doc.startswith(NODE_DOC_PREFIX) and doc != self.own_doc

    def _heard(self, update: StoredUpdate, origin: Origin) -> None:
        if origin is Origin.PEER and self._watched(update.doc):
            self._dirty.add(update.doc)
            self._wakeup.set()

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._dirty:
                doc = self._dirty.pop()
                try:
                    await self.check(doc)
                except StoreError as exc:
                    self._log.error("audit witness: %s", exc)

    async def check(self, doc: str) -> WitnessAlert | None:
        """Judge ``doc``'s published checkpoint; the alert raised, if any."""
        if not self.state.holds(doc):
            return None
        raw = self.state.read(doc, schema.audit_checkpoint)
        if raw is None:
            return None
        try:
            new = Checkpoint.from_dict(raw)
        except ValueError:
            return None
        if new.node != doc[len(NODE_DOC_PREFIX) :]:
            return None
        store = self.audit.store
        seen = await store.witnessed(new.node)
        reason = judge(seen, new)
        if reason is not None:
            if self._reported.get(new.node) == new:
                return None
            self._reported[new.node] = new
            alert = WitnessAlert(new.node, self._clock(), reason)
            await store.add_alert(alert)
            self.audit.record(AuditKind.WITNESS_ALERT, f"node:{new.node}", reason=reason)
            self._log.error("%s", reason)
            return alert
        if is_newer(seen, new):
            await store.save_witnessed(new, self._clock())
        return None
