"""The node's live CRDT documents, with durable, signed writes and read-only snapshots.

Invariants:
- A write returns only after its signed update is committed to the store (durable before
  acknowledged). Listeners are told after the commit, never before.
- Writes to one document are appended in the order they were made: the mutation and the enqueue
  happen with no ``await`` between them, and the store commits its queue in order.
- Readers get a :class:`StateSnapshot` built from the documents; nothing outside this package
  holds a live ``Doc``.
- If a commit fails, the affected document is rebuilt from the store so memory never keeps a
  change the disk does not have.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from typing import Any

from pycrdt import Doc

from noderuntime.crdt import schema
from noderuntime.crdt.envelope import signing_input
from noderuntime.crdt.store import LoadedDoc, NewUpdate, StoredUpdate, StoreStats, UpdateStore
from noderuntime.errors import StoreError
from noderuntime.identity import Identity

EMPTY_UPDATE = b"\x00\x00"

Mutation = Callable[[Doc[Any]], None]
Listener = Callable[[], None]


@dataclass(frozen=True)
class WriteResult:
    doc: str
    seq: int | None  # None when the mutation changed nothing
    size_bytes: int


def apply_update_safely(doc: Doc[Any], data: bytes) -> str | None:
    """Apply ``data`` to ``doc``; return an error description instead of raising.

    pycrdt raises ValueError/RuntimeError on bad input and, from its Rust core, a
    PanicException that derives from BaseException: none of them may take the node down.
    """
    try:
        doc.apply_update(data)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    except BaseException as exc:  # pyo3 PanicException
        if isinstance(exc, (KeyboardInterrupt, SystemExit, GeneratorExit)):
            raise
        return f"{type(exc).__name__}: {exc}"
    return None


class StateStore:
    """Owns the fleet, site and node documents of one node."""

    def __init__(
        self,
        store: UpdateStore,
        identity: Identity,
        *,
        node_id: str,
        site: str,
        compact_every: int = 1000,
        log: logging.Logger | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._identity = identity
        self.fleet_doc = schema.FLEET_DOC
        self.site_doc = schema.site_doc(site)
        self.node_doc = schema.node_doc(node_id)
        self._compact_every = compact_every
        self._log = log or logging.getLogger(__name__)
        self._clock = clock
        self._docs: dict[str, Doc[Any]] = {}
        self._listeners: list[Listener] = []
        self._generation = 0
        self._snapshot: schema.StateSnapshot | None = None
        self._pending: dict[str, int] = {}
        self._last_seq: dict[str, int] = {}
        self._since_snapshot: dict[str, int] = {}
        self.load_problems = 0
        self.writes = 0
        self.last_write_at: float | None = None

    async def __aenter__(self) -> StateStore:
        await self._store.open()
        try:
            for name in (self.fleet_doc, self.site_doc, self.node_doc):
                await self._load(name)
        except BaseException:
            await self._store.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            for name in list(self._docs):
                if self._since_snapshot.get(name, 0) > 0:
                    await self._compact(name)
        except StoreError as err:
            self._log.warning("could not snapshot documents at shutdown: %s", err)
        finally:
            await self._store.close()

    @property
    def doc_names(self) -> list[str]:
        return list(self._docs)

    @property
    def generation(self) -> int:
        return self._generation

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    async def _load(self, name: str) -> None:
        loaded: LoadedDoc = await self._store.load(name)
        doc: Doc[Any] = Doc()
        if loaded.snapshot is not None:
            err = apply_update_safely(doc, loaded.snapshot)
            if err:
                self.load_problems += 1
                self._log.error("snapshot of %s is unreadable (%s); replaying its log", name, err)
        for upd in loaded.updates:
            err = apply_update_safely(doc, upd.data)
            if err:
                self.load_problems += 1
                self._log.error("skipping unreadable update %d of %s: %s", upd.seq, name, err)
        self._docs[name] = doc
        self._last_seq[name] = loaded.updates[-1].seq if loaded.updates else loaded.snapshot_seq
        self._since_snapshot[name] = len(loaded.updates)
        self._bump()
        if len(loaded.updates) >= self._compact_every:
            await self._compact(name)

    def _bump(self) -> None:
        self._generation += 1
        self._snapshot = None

    def snapshot(self) -> schema.StateSnapshot:
        if self._snapshot is None or self._snapshot.generation != self._generation:
            self._snapshot = schema.StateSnapshot(
                generation=self._generation,
                fleet=schema.read_fleet(self._docs[self.fleet_doc]),
                site_overrides=schema.read_site(self._docs[self.site_doc]),
                node=schema.read_node(self._docs[self.node_doc]),
            )
        return self._snapshot

    def read(self, name: str, reader: Callable[[Doc[Any]], object]) -> object:
        """Run a read-only function over one live document (inside this package's callers)."""
        return reader(self._docs[name])

    async def write(
        self, name: str, mutate: Mutation, *, summary: str = "", on_behalf: str | None = None
    ) -> WriteResult:
        """Apply ``mutate`` to document ``name`` and return once it is durable.

        ``summary`` says what changed, for people reading history; ``on_behalf`` names the
        principal (a technician at the console) the node signs for. Both are signed.
        """
        doc = self._docs.get(name)
        if doc is None:
            raise StoreError(f"document {name!r} is not held by this node")
        before = doc.get_state()
        with doc.transaction():
            mutate(doc)
        data = doc.get_update(before)
        if data == EMPTY_UPDATE:
            return WriteResult(name, None, 0)
        ts = self._clock()
        meta_obj: dict[str, str] = {}
        if summary:
            meta_obj["summary"] = summary
        if on_behalf:
            meta_obj["onBehalf"] = on_behalf
        meta = json.dumps(meta_obj, sort_keys=True, separators=(",", ":"))
        update = NewUpdate(
            doc=name,
            data=data,
            author=self._identity.name,
            signature=self._identity.sign(signing_input(name, data, meta)),
            ts=ts,
            meta=meta,
        )
        self._pending[name] = self._pending.get(name, 0) + 1
        try:
            # No await between the mutation and this call: the store queues in call order.
            (seq,) = await self._store.append([update])
        except BaseException:
            self._pending[name] -= 1
            self._log.error("write to %s was not stored; reloading it from disk", name)
            await self._load(name)
            raise
        self._pending[name] -= 1
        self._last_seq[name] = max(self._last_seq.get(name, 0), seq)
        self._since_snapshot[name] = self._since_snapshot.get(name, 0) + 1
        self.writes += 1
        self.last_write_at = ts
        self._bump()
        for listener in list(self._listeners):
            try:
                listener()
            except Exception:
                self._log.exception("state listener failed")
        if self._since_snapshot[name] >= self._compact_every and not self._pending[name]:
            await self._compact(name)
        return WriteResult(name, seq, len(data))

    async def _compact(self, name: str) -> None:
        # Only called with no write of this doc in flight, so the doc equals the log up to
        # _last_seq and the snapshot covers exactly that prefix.
        doc = self._docs[name]
        upto = self._last_seq.get(name, 0)
        await self._store.write_snapshot(name, doc.get_update(), upto)
        self._since_snapshot[name] = 0
        self._log.debug("snapshot of %s written up to seq %d", name, upto)

    async def store_stats(self) -> StoreStats:
        return await self._store.stats()

    async def history(self, limit: int = 200) -> list[StoredUpdate]:
        """The newest signed updates of every document (who changed what, when)."""
        return await self._store.recent(limit)
