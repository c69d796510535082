"""The node's live CRDT documents, with durable, signed writes and read-only snapshots.

Invariants:
- A write returns only after its signed update is committed to the store (durable before
  acknowledged). Listeners are told after the commit, never before.
- Writes to one document are appended in the order they were made: the mutation and the enqueue
  happen with no ``await`` between them, and the store commits its queue in order.
- Nothing is reported as stored, equal or unchanged before it is durable. Each document is
  held twice: the *working* doc takes mutations and ingests at once (so queued writes build on
  each other and group-commit), the *durable* doc takes an update only when its commit is
  durable. Every reader (:meth:`StateStore.snapshot`, :meth:`StateStore.read`, state vectors,
  :meth:`StateStore.prepare`, compaction) sees the durable doc, so an "unchanged" answer, a
  view or an export never shows a change a crash could still take away, and no item id of a
  change that is not durable ever leaves the process (the reuse of client ids relies on it).
- A write whose mutation changes nothing returns only once the writes queued before it on the
  same document are durable: what it found in the working doc is then on disk.
- Readers get a :class:`StateSnapshot` built from the documents; nothing outside this package
  holds a live ``Doc``.
- If a commit fails, the affected document is rebuilt from the store so memory never keeps a
  change the disk does not have.
- Every update this store produces carries a clock range (see :mod:`noderuntime.crdt.clocks`):
  a write that only deletes is anchored with a tiny counter in the ``_anchor`` map, so
  state-vector anti-entropy can see it.
- Each document is written with one CRDT client id for as long as the store is the same copy
  (saved in the store; see ``docs/architecture.md``, "Client ids"), so the delete set every
  update carries does not fragment over one id per restart. A new id is taken when the store
  cannot vouch for the clock: nothing saved, another copy of the file, stored updates of that
  id that do not load, a store the guard finds lost or accepted as restored
  (:meth:`StateStore.renew_client_ids`), or an update from elsewhere that uses the id.
- Remote updates enter through :meth:`StateStore.ingest` only: idempotent (content digest),
  structurally checked, trial-applied on a scratch document, durable before listeners hear of
  them. Signature and ACL checks are the caller's (``noderuntime.sync.verify``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from pycrdt import Doc

from noderuntime.crdt import schema
from noderuntime.crdt.clocks import (
    UpdateClocks,
    UpdateFormatError,
    decode_state_vector,
    gap,
    parse_update,
)
from noderuntime.crdt.envelope import signing_input, size_problem
from noderuntime.crdt.mutation import (
    EMPTY_UPDATE,
    IngestResult,
    Listener,
    Mutation,
    Origin,
    UpdateListener,
    WriteResult,
    apply_update_safely,
    change_meta,
    copy_doc,
    mutate_anchored,
)
from noderuntime.crdt.store import (
    LoadedDoc,
    NewUpdate,
    StoredUpdate,
    StoreStats,
    UpdateStore,
    update_digest,
)
from noderuntime.errors import StoreError, UpdateRejectedError
from noderuntime.identity.keys import Identity

# What callers take from here (some defined in .mutation, named as the state's since before).
__all__ = ["IngestResult", "Origin", "StateStore", "WriteResult", "apply_update_safely"]
_T = TypeVar("_T")


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
        # Working docs (mutations, ingests) and durable docs (every reader); see the invariants.
        self._docs: dict[str, Doc[Any]] = {}
        self._durable: dict[str, Doc[Any]] = {}
        # Per document, the latest queued commit: a no-op write waits for it.
        self._tail: dict[str, asyncio.Future[list[int]]] = {}
        # Per document, the working doc's client id if the store has it saved (else None).
        self._client_saved: dict[str, int | None] = {}
        self._listeners: list[Listener] = []
        self._update_listeners: list[UpdateListener] = []
        self._stored_sv: dict[str, dict[int, int]] = {}
        self._client_owner: dict[tuple[str, int], str] = {}
        self._ingest_lock = asyncio.Lock()
        self._ingests: set[asyncio.Future[list[IngestResult]]] = set()
        self.ingested = 0
        self.duplicates = 0
        self._generation = 0
        # Per document: how often its durable view changed, and its view as of then.
        self._doc_generation: dict[str, int] = {}
        self._views: dict[str, tuple[int, Any, schema.Bad]] = {}
        self._quarantine_logged: frozenset[schema.Quarantined] = frozenset()
        self._quarantined: tuple[int, tuple[schema.Quarantined, ...]] | None = None
        self._snapshot: schema.StateSnapshot | None = None
        self._pending: dict[str, int] = {}
        self._last_seq: dict[str, int] = {}
        self._since_snapshot: dict[str, int] = {}
        self.load_problems = 0
        self.writes = 0
        self.last_write_at: float | None = None
        # The latest local write that was not stored: {"at", "message"}; kept after recovery.
        self.last_write_error: dict[str, Any] | None = None

    async def __aenter__(self) -> StateStore:
        await self._store.open()
        try:
            for name in (self.fleet_doc, self.site_doc, self.node_doc):
                await self._load(name)
            # Documents received from peers (a hub holds every site's and node's).
            for name in await self._store.docs():
                if name not in self._docs:
                    await self._load(name)
        except BaseException:
            await self._store.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        # An ingest shielded from its caller's cancellation may still be running or queued:
        # let it finish (it is one batch) rather than closing the database under it.
        if self._ingests:
            await asyncio.gather(*self._ingests, return_exceptions=True)
        async with self._ingest_lock:
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

    @property
    def last_seq(self) -> int:
        """The highest store sequence number of any document held."""
        return max(self._last_seq.values(), default=0)

    @property
    def doc_seqs(self) -> dict[str, int]:
        """Per document held, the highest store sequence number it has (0: nothing stored)."""
        return {name: self._last_seq.get(name, 0) for name in self._docs}

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def subscribe_updates(self, listener: UpdateListener) -> Callable[[], None]:
        """Be told of every stored update (after it is durable), with its origin."""
        self._update_listeners.append(listener)
        return lambda: self._update_listeners.remove(listener)

    def _notify(self, updates: Sequence[tuple[StoredUpdate, Origin]]) -> None:
        for listener in list(self._listeners):
            try:
                listener()
            except Exception:
                self._log.exception("state listener failed")
        for stored, origin in updates:
            for ulistener in list(self._update_listeners):
                try:
                    ulistener(stored, origin)
                except Exception:
                    self._log.exception("update listener failed")

    def holds(self, name: str) -> bool:
        return name in self._docs

    async def ensure_doc(self, name: str) -> None:
        """Hold document ``name`` from now on (empty until updates arrive)."""
        if name not in self._docs:
            await self._load(name)

    def state_vector(self, name: str) -> bytes:
        """The document's state vector (pycrdt encoding): what it has durably integrated."""
        return self._durable[name].get_state()

    def state_vector_map(self, name: str) -> dict[int, int]:
        return decode_state_vector(self._durable[name].get_state())

    def stored_clocks(self, name: str) -> Mapping[int, int]:
        """Per client, the highest clock of any stored update of ``name`` (incl. pending)."""
        return self._stored_sv.get(name, {})

    async def missing_for(
        self, name: str, peer_sv: Mapping[int, int], limit: int = 10_000
    ) -> list[StoredUpdate]:
        """The stored signed updates of ``name`` a peer with state vector ``peer_sv`` lacks."""
        if name not in self._docs:
            return []
        need = gap(self._stored_sv.get(name, {}), peer_sv)
        if not need:
            return []
        return await self._store.updates_for_gap(name, need, limit)

    def prepare(self, name: str, mutate: Mutation) -> bytes | None:
        """The update ``mutate`` would make to ``name`` (see :meth:`prepare_change`)."""
        return self.prepare_change(name, mutate)[0]

    def prepare_change(
        self, name: str, mutate: Mutation, summary: str = ""
    ) -> tuple[bytes | None, str]:
        """The update ``mutate`` would make to ``name``, and its meta, made on a scratch copy
        (not applied).

        For changes another principal (an operator) signs: the scratch copy has a fresh client
        id, so the update merges whatever else happened to the document meanwhile. The copy is
        of the durable doc: the update leaves the node, so it must not build on (name the item
        ids of) a local change that is not durable yet.
        """
        doc = self._durable.get(name)
        if doc is None:
            raise StoreError(f"document {name!r} is not held by this node")
        scratch: Doc[Any] = Doc()
        scratch.apply_update(doc.get_update())
        data, hlc = mutate_anchored(scratch, mutate)
        meta = change_meta(summary, hlc=hlc)
        if data == EMPTY_UPDATE:
            return None, meta
        problem = size_problem(data, meta)
        if problem:
            raise UpdateRejectedError(problem)
        return data, meta

    def relay_problem(self, name: str, mutate: Mutation) -> str | None:
        """Why ``mutate`` is more than a hub's key may sign on ``name`` (see
        :func:`schema.relay_problem`), tried on a scratch copy; None: a relay."""
        doc = self._docs.get(name)
        if doc is None:
            raise StoreError(f"document {name!r} is not held by this node")
        scratch: Doc[Any] = Doc()
        scratch.apply_update(doc.get_update())
        with scratch.transaction():
            mutate(scratch)
        return schema.relay_problem(schema.relay_view(doc), schema.relay_view(scratch))

    def _note_clocks(self, name: str, data: bytes, author: str) -> None:
        try:
            ranges = parse_update(data).ranges
        except UpdateFormatError:
            return
        sv = self._stored_sv.setdefault(name, {})
        for client, (_, end) in ranges.items():
            if end > sv.get(client, 0):
                sv[client] = end
            self._client_owner.setdefault((name, client), author)

    async def ingest(
        self,
        updates: Sequence[NewUpdate],
        *,
        origin: Origin = Origin.PEER,
        create_docs: bool = False,
        relay_only: Collection[str] = (),
    ) -> list[IngestResult]:
        """Store and apply updates signed elsewhere (already verified and authorised).

        Idempotent: an update already stored is reported DUPLICATE and changes nothing.
        Durable before listeners are told. ``create_docs`` lets a hub take on documents it
        does not hold yet; otherwise updates of other documents are NOT_HELD. An update by an
        author in ``relay_only`` (a hub's key on the fleet document) is trial-applied on a
        copy of the document and refused UNAUTHORISED unless what it changes is a relay
        (:func:`schema.relay_problem`): the writer ACL cannot see inside update bytes.
        """
        # Shielded: a caller cancelled mid-way (the sync engine stopping) must not leave the
        # documents and the store's bookkeeping half-updated; the ingest finishes on its own.
        task = asyncio.ensure_future(
            self._locked_ingest(updates, origin, create_docs, frozenset(relay_only))
        )
        self._ingests.add(task)
        task.add_done_callback(self._ingests.discard)
        return await asyncio.shield(task)

    async def _locked_ingest(
        self,
        updates: Sequence[NewUpdate],
        origin: Origin,
        create_docs: bool,
        relay_only: frozenset[str],
    ) -> list[IngestResult]:
        async with self._ingest_lock:
            return await self._ingest(updates, origin, create_docs, relay_only)

    async def _ingest(
        self,
        updates: Sequence[NewUpdate],
        origin: Origin,
        create_docs: bool,
        relay_only: frozenset[str] = frozenset(),
    ) -> list[IngestResult]:
        results: list[IngestResult] = []
        digests = [update_digest(u.doc, u.data, u.author, u.signature, u.meta) for u in updates]
        known = await self._store.known_digests(digests)
        accepted: list[NewUpdate] = []
        seen: set[bytes] = set()
        broken: set[str] = set()
        for u, digest in zip(updates, digests, strict=True):
            if digest in known or digest in seen:
                results.append(IngestResult.DUPLICATE)
                self.duplicates += 1
                continue
            if u.doc not in self._docs:
                if not create_docs:
                    results.append(IngestResult.NOT_HELD)
                    continue
                await self._load(u.doc)
            try:
                clocks = parse_update(u.data)
            except UpdateFormatError:
                results.append(IngestResult.MALFORMED)
                continue
            if not clocks.anchored:
                results.append(IngestResult.UNANCHORED)
                continue
            if self._docs[u.doc].client_id in clocks.ranges and self._foreign_use(u, clocks):
                results.append(IngestResult.CLIENT_CONFLICT)
                continue
            if await self._client_conflict(u.doc, list(clocks.ranges), u.author):
                results.append(IngestResult.CLIENT_CONFLICT)
                continue
            scratch: Doc[Any] = Doc()
            if u.author in relay_only:
                # The copy carries the document so the update's changes can be read whole.
                scratch.apply_update(self._docs[u.doc].get_update())
            err = apply_update_safely(scratch, u.data)
            if err is None and u.author in relay_only:
                before = schema.relay_view(self._docs[u.doc])
                problem = schema.relay_problem(before, schema.relay_view(scratch))
                if problem is not None:
                    self._log.debug("update of %s by %s refused: %s", u.doc, u.author, problem)
                    results.append(IngestResult.UNAUTHORISED)
                    continue
            if err is None:
                err = apply_update_safely(self._docs[u.doc], u.data)
                if err is not None:
                    broken.add(u.doc)
            if err is not None:
                self._log.debug("update of %s by %s refused by pycrdt: %s", u.doc, u.author, err)
                results.append(IngestResult.CORRUPT)
                continue
            for client in clocks.ranges:
                self._client_owner.setdefault((u.doc, client), u.author)
            seen.add(digest)
            accepted.append(u)
            results.append(IngestResult.APPLIED)
        if accepted:
            docs = {u.doc for u in accepted}
            try:
                await asyncio.shield(self._enqueue(accepted, origin))
            except asyncio.CancelledError:
                raise
            except BaseException:
                self._log.error("received updates were not stored; reloading from disk")
                for name in docs | broken:
                    await self._reload(name)
                raise
            self.ingested += len(accepted)
        for name in broken:
            # A live apply failed part-way: rebuild the document from what the disk holds.
            await self._load(name)
        if broken:
            self._bump(broken)
        for name in {u.doc for u in accepted}:
            if self._since_snapshot[name] >= self._compact_every and not self._pending[name]:
                await self._compact(name)
        return results

    def _enqueue(self, updates: Sequence[NewUpdate], origin: Origin) -> asyncio.Future[list[int]]:
        """Queue ``updates`` (already in the working docs) for commit; see :meth:`_committed`.

        Synchronous, so the caller's mutation and this enqueue have no ``await`` between them.
        """
        fut = self._store.enqueue(updates)
        for name in {u.doc for u in updates}:
            self._pending[name] = self._pending.get(name, 0) + 1
            self._tail[name] = fut
        if fut.done():
            # Awaiting a done future does not yield: bring the durable doc up to date first.
            self._committed(updates, origin, fut)
        else:
            # Registered before anyone awaits the future, so it runs before they resume, and
            # it runs even if they were cancelled meanwhile (the commit still happens).
            fut.add_done_callback(lambda f: self._committed(updates, origin, f))
        return fut

    def _committed(
        self,
        updates: Sequence[NewUpdate],
        origin: Origin,
        fut: asyncio.Future[list[int]],
    ) -> None:
        """The commit of ``updates`` ended: on success they join the durable docs, then
        listeners are told."""
        for name in {u.doc for u in updates}:
            self._pending[name] -= 1
        if fut.cancelled() or fut.exception() is not None:
            return  # the waiting caller reloads the working doc from disk
        stored: list[tuple[StoredUpdate, Origin]] = []
        for u, seq in zip(updates, fut.result(), strict=True):
            self._last_seq[u.doc] = max(self._last_seq.get(u.doc, 0), seq)
            self._since_snapshot[u.doc] = self._since_snapshot.get(u.doc, 0) + 1
            self._note_clocks(u.doc, u.data, u.author)
            durable = self._durable.get(u.doc)
            if durable is not None:
                err = apply_update_safely(durable, u.data)
                if err:  # it applied to the working doc; a failure here is a bug, not input
                    self._log.error("durable view of %s refused update %d: %s", u.doc, seq, err)
            stored.append(
                (StoredUpdate(seq, u.doc, u.data, u.author, u.signature, u.ts, u.meta), origin)
            )
        if origin is Origin.LOCAL:
            self.writes += len(updates)
            self.last_write_at = max(u.ts for u in updates)
        self._bump({u.doc for u in updates})
        self._notify(stored)

    def _save_client(self, name: str, client: int) -> None:
        """Queue saving ``name``'s client id; it commits with (or before) the write after it."""

        def saved(fut: asyncio.Future[list[int]]) -> None:
            if fut.cancelled() or fut.exception() is not None:
                return  # the write queued after it fails too; the next write tries again
            if self._docs.get(name) is not None and self._docs[name].client_id == client:
                self._client_saved[name] = client

        self._store.save_client(name, client, self._identity.name).add_done_callback(saved)

    async def _settled(self, name: str) -> None:
        """Return once every write to ``name`` queued so far is durable (raise if one failed)."""
        tail = self._tail.get(name)
        if tail is None or tail.done():
            return
        try:
            await asyncio.shield(tail)
        except StoreError as exc:
            raise StoreError(f"an earlier change to {name} was not stored: {exc}") from exc

    def _foreign_use(self, u: NewUpdate, clocks: UpdateClocks) -> bool:
        """An update from elsewhere uses the client id this node writes ``u.doc`` with.

        Our own updates come back as duplicates, so this is a copy of the store writing
        (a cloned disk, a restored snapshot of the machine): stop using the id. True if the
        update also reuses clocks this node has written (two contents for one item id: refused).
        """
        doc = self._docs[u.doc]
        client = doc.client_id
        ours = decode_state_vector(doc.get_state()).get(client, 0)
        self._log.error(
            "%s: an update signed by %s uses this node's client id %d (a copied store or a "
            "restored machine snapshot?); writing with a new id from now on",
            u.doc,
            u.author,
            client,
        )
        self._new_client(u.doc)
        return clocks.ranges[client][0] < ours

    async def _client_conflict(self, doc: str, clients: list[int], author: str) -> bool:
        unknown = [c for c in clients if (doc, c) not in self._client_owner]
        if unknown:
            for client, owner in (await self._store.client_authors(doc, unknown)).items():
                self._client_owner[(doc, client)] = owner
        return any(self._client_owner.get((doc, c), author) != author for c in clients)

    async def _reload(self, name: str) -> None:
        """Rebuild ``name`` from disk after a failed commit.

        Appends queued behind the failed one may still commit; wait for them, or the rebuilt
        doc would miss updates that are durable on disk.
        """
        await self._store.drain()
        await self._load(name)

    async def _load(self, name: str) -> None:
        loaded: LoadedDoc = await self._store.load(name)
        client = await self._store.local_client(name, self._identity.name)
        doc: Doc[Any] = Doc() if client is None else Doc(client_id=client)
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
        stored_sv = await self._store.clock_summary(name)
        if client is not None and decode_state_vector(doc.get_state()).get(
            client, 0
        ) != stored_sv.get(client, 0):
            # The clock would continue from less than this id has stored: not safe to reuse.
            self._log.warning("%s: its stored updates do not all load; new client id", name)
            doc, client = copy_doc(doc), None
        self._docs[name] = doc
        self._durable[name] = copy_doc(doc)
        self._client_saved[name] = client
        self._stored_sv[name] = stored_sv
        self._last_seq[name] = loaded.updates[-1].seq if loaded.updates else loaded.snapshot_seq
        self._since_snapshot[name] = len(loaded.updates)
        self._bump([name])
        if len(loaded.updates) >= self._compact_every:
            await self._compact(name)

    def renew_client_ids(self, why: str) -> None:
        """Write every document with a new client id from now on (saved at its next write).

        For a store that may not hold everything this node wrote: one found lost, truncated or
        damaged, or accepted as it is after a restore or a reset. Peers may hold updates of
        the old ids past the store's clock; a new id cannot collide with them.
        """
        self._log.warning("taking new CRDT client ids: %s", why)
        for name in self._docs:
            self._new_client(name)

    def _new_client(self, name: str) -> None:
        self._docs[name] = copy_doc(self._docs[name])
        self._client_saved[name] = None

    def _bump(self, docs: Iterable[str]) -> None:
        """The durable view of ``docs`` changed: a new generation, and their views are stale."""
        self._generation += 1
        self._snapshot = None
        for name in docs:
            self._doc_generation[name] = self._doc_generation.get(name, 0) + 1

    def _view(self, name: str, read: Callable[[Doc[Any], schema.Bad], _T]) -> tuple[_T, schema.Bad]:
        """``read`` of one durable document, remembered until that document changes: a write
        to the fleet document must not make every snapshot decode the site and node ones."""
        generation = self._doc_generation.get(name, 0)
        cached = self._views.get(name)
        if cached is not None and cached[0] == generation:
            return cached[1], cached[2]
        bad: schema.Bad = []
        value = read(self._durable[name], bad)
        self._views[name] = (generation, value, bad)
        return value, bad

    def _report_quarantine(
        self, records: Sequence[schema.Quarantined], docs: Sequence[str]
    ) -> None:
        """Log each record of ``docs`` set aside once, at error level, not once per read."""
        current = frozenset(records)
        logged = frozenset(r for r in self._quarantine_logged if r.doc not in docs)
        for record in current - self._quarantine_logged:
            self._log.error(
                "record %s %s %.200r set aside (%s); everything else goes on. Remove it with "
                "`noderuntime record rm %s %s KEY`",
                record.doc,
                record.map,
                record.key,
                record.reason,
                record.doc,
                record.map,
            )
        self._quarantine_logged = logged | current

    def quarantined(self) -> tuple[schema.Quarantined, ...]:
        """Every record set aside in every document held (a hub holds others' documents too),
        this node's own first; read again only after a change."""
        own = self.snapshot().quarantined
        if self._quarantined is None or self._quarantined[0] != self._generation:
            others = [
                n for n in self._durable if n not in (self.fleet_doc, self.site_doc, self.node_doc)
            ]
            found = [q for n in sorted(others) for q in schema.unreadable(n, self._durable[n])]
            self._report_quarantine(found, others)
            self._quarantined = (self._generation, (*own, *found))
        return self._quarantined[1]

    def snapshot(self) -> schema.StateSnapshot:
        if self._snapshot is None or self._snapshot.generation != self._generation:
            fleet, fleet_bad = self._view(self.fleet_doc, schema.read_fleet)
            site, site_bad = self._view(self.site_doc, schema.read_site)
            node, node_bad = self._view(self.node_doc, schema.read_node)
            bad = {self.fleet_doc: fleet_bad, self.site_doc: site_bad, self.node_doc: node_bad}
            self._snapshot = schema.StateSnapshot(
                generation=self._generation,
                fleet=fleet,
                site_overrides=site,
                node=node,
                quarantined=tuple(
                    schema.Quarantined(doc, name, key, reason)
                    for doc, entries in bad.items()
                    for name, key, reason in entries
                ),
            )
            self._report_quarantine(
                self._snapshot.quarantined, (self.fleet_doc, self.site_doc, self.node_doc)
            )
        return self._snapshot

    def read(self, name: str, reader: Callable[[Doc[Any]], _T]) -> _T:
        """Run a read-only function over one durable document (inside this package's callers)."""
        return reader(self._durable[name])

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
        data, hlc = mutate_anchored(doc, mutate)
        if data == EMPTY_UPDATE:
            # The mutation found what it wanted in the working doc: answer once that is durable.
            await self._settled(name)
            return WriteResult(name, None, 0)
        if self._client_saved.get(name) != doc.client_id:
            self._save_client(name, doc.client_id)
        ts = self._clock()
        meta = change_meta(summary, on_behalf, hlc)
        problem = size_problem(data, meta)
        if problem:
            # The live doc already holds the change; disk does not: undo it from there.
            await self._reload(name)
            raise UpdateRejectedError(problem)
        update = NewUpdate(
            doc=name,
            data=data,
            author=self._identity.name,
            signature=self._identity.sign(signing_input(name, data, meta)),
            ts=ts,
            meta=meta,
        )
        try:
            # No await between the mutation and this call: the store queues in call order.
            # A cancelled caller leaves it queued; it commits and joins the durable doc.
            (seq,) = await asyncio.shield(self._enqueue([update], Origin.LOCAL))
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self.last_write_error = {"at": ts, "message": f"write to {name} not stored: {exc}"}
            self._log.error("write to %s was not stored; reloading it from disk", name)
            await self._reload(name)
            raise
        if self._since_snapshot[name] >= self._compact_every and not self._pending[name]:
            await self._compact(name)
        return WriteResult(name, seq, len(data))

    async def _compact(self, name: str) -> None:
        # The durable doc holds exactly the log up to _last_seq, so the snapshot covers that
        # prefix (callers also wait for no write of this doc in flight).
        doc = self._durable[name]
        upto = self._last_seq.get(name, 0)
        await self._store.write_snapshot(name, doc.get_update(), upto)
        self._since_snapshot[name] = 0
        self._log.debug("snapshot of %s written up to seq %d", name, upto)

    async def store_stats(self) -> StoreStats:
        return await self._store.stats()

    @property
    def store_error(self) -> str | None:
        """Why the latest commit to disk failed; None while commits succeed."""
        return self._store.last_error

    async def client_authors(self, name: str, clients: Sequence[int]) -> dict[int, str]:
        """Who signed the updates that first wrote with each of ``clients`` in ``name``."""
        if not clients:
            return {}
        return await self._store.client_authors(name, clients)

    async def history(self, limit: int = 200) -> list[StoredUpdate]:
        """The newest signed updates of every document (who changed what, when)."""
        return await self._store.recent(limit)
