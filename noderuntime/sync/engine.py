"""The replication engine: signed CRDT updates over the node's local nats-server.

What it does (protocol and subjects: :mod:`noderuntime.sync.protocol`, docs/sync.md):

- **Broadcast.** Every update this node stores that did not come from a peer (its own writes,
  operator-signed submissions) is published on its document's update subject as its author
  signed it. Leaf links route subjects across the fleet tree, so nothing is re-broadcast.
- **Anti-entropy.** On every (re)connect to the local server, every ``antiEntropySeconds``
  (jittered), and shortly after a peer's heartbeats reappear (a healed link), the node sends
  its state vector for each document it holds — to one chosen peer's inbox, or to the
  document's state subject when it knows no peer yet. A receiver answers with exactly the
  stored signed updates the sender lacks (an index lookup, O(missing)) and, if the sender has
  something it lacks, with its own state vector. Bytes scale with the gap.
- **Heartbeats.** Signed, ephemeral (never CRDT writes): node, site, role, time, health and
  workload summary, store sequence, sovereignty. A node that sees a peer come up answers at
  once with a heartbeat of its own (rate-limited), so the peer need not wait for our next tick.
- **Leaf-link changes.** Given the local server's monitoring port, the engine watches
  ``/leafz`` (:mod:`noderuntime.sync.linkwatch`); when a leaf link comes up it publishes a
  heartbeat at once and runs a debounced anti-entropy round, so a healed link is repaired
  without waiting for a heartbeat. Without a monitoring port (an external NATS) heartbeats
  alone reveal a heal.
- **Verify before decoding.** See :mod:`noderuntime.sync.verify`. Everything refused is counted
  by cause and logged once per cause per minute; a message can't crash or stall the engine (one
  bounded queue, one worker, every handler guarded).

The decisions live in pure modules: the peer table (:mod:`~noderuntime.sync.peers`), who holds
what and where it goes (:mod:`~noderuntime.sync.scopes`), anti-entropy planning
(:mod:`~noderuntime.sync.antientropy`), the credential relay
(:mod:`~noderuntime.sync.credentials`) and the queues (:mod:`~noderuntime.sync.inbox`).
Handling a received message is :mod:`~noderuntime.sync.receive`, sending is
:mod:`~noderuntime.sync.outbound`. This module wires them to the store and to a
:class:`~noderuntime.sync.channel.Channel` — nats-py (:mod:`~noderuntime.sync.nats_channel`)
in the daemon, an in-memory bus (:class:`~noderuntime.sync.channel.MemoryHub`) in unit tests —
and runs the loops: connect, the inbox worker, the broadcast sender, heartbeats,
anti-entropy and the leaf-link watch.

Lifecycle: ``async with SyncEngine(...)`` starts the connect loop and the workers; the local
server may come and go (the channel reconnects forever).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from noderuntime.aio import raise_if_cancelled
from noderuntime.audit.log import AuditSink
from noderuntime.crdt.state import Origin, StateStore
from noderuntime.crdt.store import StoredUpdate
from noderuntime.identity.keys import Identity
from noderuntime.sync import protocol
from noderuntime.sync.acl import ROLE_HUB, Trust
from noderuntime.sync.antientropy import StateReplies, plan_round, wire
from noderuntime.sync.channel import Channel
from noderuntime.sync.counters import Counters
from noderuntime.sync.credentials import CredentialRelay
from noderuntime.sync.fleetevents import (
    FleetEvent,
    FleetEvents,
    SendLimit,
    classify,
    event_payload,
)
from noderuntime.sync.inbox import (
    INBOX_LIMIT,
    TRIM_AFTER_BYTES,
    Inbox,
    Outbox,
    give_back_memory,
)
from noderuntime.sync.instances import CLONES_KEY, Instances
from noderuntime.sync.linkwatch import LinkWatch, read_slow_clients
from noderuntime.sync.nats_channel import NatsChannel
from noderuntime.sync.outbound import Outbound
from noderuntime.sync.peers import PEER_TIMEOUT_HEARTBEATS, PeerStats, PeerTable
from noderuntime.sync.protocol import WireUpdate
from noderuntime.sync.receive import Receiver
from noderuntime.sync.remotelogs import LogReader, Recorder, RemoteLogs
from noderuntime.sync.resync import RESYNC_KEY, ResyncWatch, plan_resync
from noderuntime.sync.scopes import Scopes
from noderuntime.sync.settings import SyncSettings
from noderuntime.sync.verify import Cause, Rejections

HEAL_DEBOUNCE_S = 0.1
# Fleet event sends in flight at once; more are dropped (a stuck link must not pile them up).
MAX_EVENT_SENDS = 64
# Reading the local server's slow-consumer count after a disconnect (linkwatch.py).
SLOW_READ_TRIES = 5
SLOW_READ_RETRY_S = 1.0

__all__ = ["SyncEngine", "SyncSettings"]


class SyncEngine:
    """Replicates a :class:`StateStore`'s documents with peers through a channel.

    Give it ``nats_url`` (and the server's ``nats_token``) to sync through nats-py, as the
    daemon does, or any other ``channel``.
    """

    def __init__(
        self,
        state: StateStore,
        trust: Trust,
        identity: Identity,
        settings: SyncSettings,
        *,
        nats_url: str | None = None,
        nats_token: str | None = None,
        channel: Channel | None = None,
        log: logging.Logger | None = None,
        clock: Callable[[], float] = time.time,
        health: Callable[[], Mapping[str, Any]] | None = None,
        monitor_port: int | None = None,
        resync: ResyncWatch | None = None,
        log_reader: LogReader | None = None,
        log_record: Recorder | None = None,
        audit: AuditSink | None = None,
    ) -> None:
        self.state = state
        self.trust = trust
        self.identity = identity
        self.settings = settings
        self.log = log or logging.getLogger(__name__)
        if channel is None:
            if nats_url is None:
                raise ValueError("SyncEngine needs a channel or a nats_url")
            channel = NatsChannel(
                nats_url,
                name=f"noderuntime-sync-{settings.node_id}",
                token=nats_token,
                log=self.log,
                pending_msgs=INBOX_LIMIT,
                # Each subscription's own queue only bridges to the inbox (handed over at once):
                # a fraction of it, or nine subscriptions could hold nine inboxes' worth.
                pending_bytes=settings.max_inbox_bytes // 8,
            )
        self.channel = channel
        self.clock = clock
        # The local nats-server's monitoring port (loopback), watched for leaf-link changes;
        # None (an external NATS): heal detection by heartbeats only.
        self.monitor_port = monitor_port
        self.rejections = Rejections(self.log, audit=audit)
        self.counters = Counters()
        self.table = PeerTable(settings.heartbeat_interval_s * PEER_TIMEOUT_HEARTBEATS)
        self.scopes = Scopes(settings, trust, self.table)
        self.relay = CredentialRelay(trust, clock, on_evict=self._evicted)
        # A held node's watch for its documents coming back (noderuntime.sync.resync).
        self.resync = resync
        replies = StateReplies(on_evict=self._evicted)
        # Fleet events (issue 12): a hub keeps what nodes send; every node may send its own.
        self.fleet_events = FleetEvents(clock) if settings.role == "hub" else None
        # Remote logs (issue 12): a hub forwards operators' requests, a node answers them.
        self.remote_logs = RemoteLogs(
            fleet=settings.fleet,
            site=settings.site,
            node_id=settings.node_id,
            sovereign=settings.sovereign,
            identity=identity,
            trust=trust,
            publish=lambda subject, data: self.out.publish(subject, data),
            clock=clock,
            log=self.log,
            reader=log_reader,
            record=log_record,
        )
        self._event_limit = SendLimit(clock)
        self._event_tasks: set[asyncio.Task[None]] = set()
        self.out = Outbound(
            channel,
            settings,
            identity,
            state,
            self.scopes,
            self.counters,
            replies,
            log=self.log,
            clock=clock,
            health=self._health_with_resync(health),
        )
        self.instances = Instances(
            settings.node_id,
            self.out.boot,
            self.table.timeout_s,
            uptime=self.out.uptime,
            on_evict=self._evicted,
        )
        self.receiver = Receiver(
            state=state,
            trust=trust,
            settings=settings,
            table=self.table,
            scopes=self.scopes,
            relay=self.relay,
            replies=replies,
            out=self.out,
            counters=self.counters,
            rejections=self.rejections,
            on_heal=self._heal,
            log=self.log,
            clock=clock,
            instances=self.instances,
            resync=resync,
            fleet_events=self.fleet_events,
            remote_logs=self.remote_logs,
        )
        self.inbox = Inbox(settings.max_inbox_bytes)
        self.outbox = Outbox()
        self.connected_since: float | None = None
        self.last_anti_entropy: float | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._healed: set[str] = set()
        self._link_healed = False
        self._heal_task: asyncio.Task[None] | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._closing = False
        # The local server's (id, slow-consumer client drops) when last read.
        # Slow-consumer drops already counted, per run of the local server (its server id).
        self._slow_seen: dict[str, int] = {}

    def _health_with_resync(
        self, health: Callable[[], Mapping[str, Any]] | None
    ) -> Callable[[], Mapping[str, Any]]:
        def payload() -> Mapping[str, Any]:
            out = dict(health()) if health is not None else {}
            if self.resync is not None and self.resync.active:
                out[RESYNC_KEY] = True
            if self.settings.role == ROLE_HUB:
                # Twins reach a hub but not each other (its server takes one leaf link per
                # server name): the hub tells them (noderuntime.sync.instances).
                clones = self.instances.announce(self.clock())
                if clones:
                    out[CLONES_KEY] = clones
            return out

        return payload

    def _evicted(self) -> None:
        self.counters.table_evictions += 1

    @property
    def connected(self) -> bool:
        return self.out.connected

    @property
    def peers(self) -> dict[str, PeerStats]:
        """Every peer heard from, by node id."""
        return self.table.peers

    # --- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> SyncEngine:
        self._closing = False
        self._unsubscribe = self.state.subscribe_updates(self._on_stored)
        s = self.settings
        subjects = protocol.subscriptions(s.fleet, role=s.role, site=s.site, node_id=s.node_id)
        for coro, name in (
            (self.channel.open(subjects, self), "sync-connect"),
            (self._worker(), "sync-worker"),
            (self._sender(), "sync-sender"),
            (self._heartbeat_loop(), "sync-heartbeat"),
            (self._anti_entropy_loop(), "sync-anti-entropy"),
        ):
            self._tasks.append(asyncio.create_task(coro, name=name))
        if self.monitor_port is not None:
            watch = LinkWatch(self.monitor_port, self._links_up)
            self._tasks.append(asyncio.create_task(watch.run(), name="sync-links"))
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._closing = True
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        tasks = self._tasks + ([self._heal_task] if self._heal_task else [])
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(BaseException):
                await t
        self._tasks = []
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5):
                await self.channel.close()
        self.out.connected = False

    async def wait_connected(self, within_s: float = 10.0) -> None:
        deadline = time.monotonic() + within_s
        while not self.connected:
            if time.monotonic() > deadline:
                raise TimeoutError(f"sync engine did not connect to {self.channel.address}")
            await asyncio.sleep(0.02)

    # --- the channel's events (a ChannelListener) -------------------------------------------

    async def on_connected(self, *, again: bool) -> None:
        self.out.connected = True
        if self.monitor_port is not None and not self._slow_seen:
            baseline = await read_slow_clients(self.monitor_port)
            if baseline is not None:
                self._slow_seen = dict((baseline,))
        self.connected_since = self.clock()
        self.counters.connects += 1
        if again:
            self.log.info("sync reconnected to %s", self.channel.address)
            self._spawn(self.anti_entropy())
            return
        self.log.info("sync connected to %s", self.channel.address)
        await self.out.send_heartbeat()
        await self.anti_entropy()

    async def on_disconnected(self) -> None:
        if self.connected and not self._closing:
            self.counters.disconnects += 1
            self.log.warning("sync lost the local NATS server %s; retrying", self.channel.address)
            if self.monitor_port is not None:
                self._spawn(self._count_slow_consumer(self.monitor_port))
        self.out.connected = False

    async def _count_slow_consumer(self, port: int) -> None:
        """Whether the local server dropped us as a slow consumer (a burst it could not hand
        us fast enough): then what it held for us is lost, counted as ``overload``, and the
        reconnect's anti-entropy round brings it again."""
        # The server is busiest right after such a drop (it was pushing a burst), so its
        # monitor may not answer at once: a drop missed here would never be counted.
        now = None
        for attempt in range(SLOW_READ_TRIES):
            if attempt:
                await asyncio.sleep(SLOW_READ_RETRY_S)
            now = await read_slow_clients(port)
            if now is not None:
                break
        if now is None:
            self.log.warning(
                "sync: the local NATS server's monitor did not answer; whether it dropped us as "
                "a slow consumer is unknown"
            )
            return
        # Without a baseline for this run of the server (its monitor did not answer when we
        # connected), every drop it counted is ours: the engine is its only client.
        dropped = now[1] - self._slow_seen.get(now[0], 0)
        self._slow_seen = dict((now,))
        if dropped > 0:
            self.counters.slow_consumer_drops += dropped
            self.rejections.reject(
                Cause.OVERLOAD,
                "the local NATS server dropped our connection as a slow consumer (a burst of "
                "more than it buffers for us); anti-entropy will heal",
            )

    async def on_dropped(self, subject: str) -> None:
        self.counters.inbound_dropped += 1
        self.rejections.reject(Cause.OVERLOAD, f"slow consumer: a message on {subject} dropped")

    async def on_message(self, subject: str, data: bytes) -> None:
        if self.inbox.offer(subject, data):
            return
        self.counters.inbound_dropped += 1
        self.counters.inbound_dropped_bytes += len(data)
        self.rejections.reject(Cause.OVERLOAD, "inbound queue full; anti-entropy will heal")

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task: asyncio.Task[None] = asyncio.create_task(self._guard(coro))
        self._tasks.append(task)
        task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[None]) -> None:
        if task in self._tasks:
            self._tasks.remove(task)

    async def _guard(self, coro: Coroutine[Any, Any, None]) -> None:
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.log.warning("sync task failed: %s", exc)

    # --- inbound --------------------------------------------------------------------------

    async def _worker(self) -> None:
        while True:
            _subject, data = await self.inbox.get()
            try:
                await self.handle(data)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.rejections.reject(Cause.INTERNAL, f"{type(exc).__name__}: {exc}")
            except BaseException as exc:  # pycrdt's PanicException
                if isinstance(exc, (KeyboardInterrupt, SystemExit, GeneratorExit)):
                    raise
                self.rejections.reject(Cause.INTERNAL, f"{type(exc).__name__}: {exc}")
            finally:
                self.inbox.done(data)
            raise_if_cancelled()
            if self.inbox.high_water >= TRIM_AFTER_BYTES and self.inbox.empty():
                self.inbox.high_water = 0
                give_back_memory()
            # Let the transport read on: a queue of messages handled without a pause would
            # starve the socket, and the server drops a client that does not read.
            await asyncio.sleep(0)

    async def handle(self, data: bytes) -> None:
        """Handle one received message (public for tests and the fuzzer)."""
        await self.receiver.handle(data)

    # --- heals ----------------------------------------------------------------------------

    def _heal(self, node: str | None) -> None:
        if node is not None:
            self._healed.add(node)
        if self._heal_task is None or self._heal_task.done():
            self._heal_task = asyncio.create_task(self._after_heal())

    async def _after_heal(self) -> None:
        # Debounce: many peers reappear at once when a link heals; sync once, with one of them.
        await asyncio.sleep(HEAL_DEBOUNCE_S)
        healed, self._healed = self._healed, set()
        link, self._link_healed = self._link_healed, False
        with contextlib.suppress(Exception):
            await self.anti_entropy(prefer=healed, link_healed=link)

    async def _links_up(self, count: int) -> None:
        self.counters.link_ups += count
        try:
            await self.link_up()
        except Exception as exc:
            self.log.debug("link-up round failed: %s", exc)

    async def link_up(self) -> None:
        """A leaf link of the local server came up: announce ourselves, then repair.

        The heartbeat lets peers behind the link see us now (they answer with theirs); the
        debounced round that follows targets peers heard from meanwhile, and for documents
        none of them holds announces our state vector on the document's state subject, so a
        peer that never looked down (a short cut) is reached too.
        """
        if not self.connected:
            return
        await self.out.answer_heartbeat()
        self._link_healed = True
        self._heal(None)

    # --- outbound -------------------------------------------------------------------------

    def _on_stored(self, update: StoredUpdate, origin: Origin) -> None:
        if origin is Origin.PEER:
            return
        if not self.outbox.offer(update):
            self.counters.broadcast_dropped += 1

    async def _sender(self) -> None:
        while True:
            items = await self.outbox.take()
            if not self.connected:
                self.counters.broadcast_dropped += len(items)
                continue
            by_doc: dict[str, list[WireUpdate]] = {}
            for u in items:
                by_doc.setdefault(u.doc, []).append(wire(u))
            for name, updates in by_doc.items():
                subject = self.scopes.update_subject(name)
                if subject is None:
                    self.counters.broadcast_dropped += len(updates)
                    continue
                await self.out.send_updates(subject, name, updates)
                self.counters.updates_broadcast += len(updates)

    async def anti_entropy(
        self, prefer: set[str] | None = None, *, link_healed: bool = False
    ) -> None:
        """Announce our state vector of every document we hold, to one peer each.

        Whom: :func:`noderuntime.sync.antientropy.plan_round` (``prefer``: peers whose link
        just healed; ``link_healed``: a leaf link of ours came up).
        """
        if not self.connected:
            return
        await self.out.send_credentials(self.relay.known())
        self.last_anti_entropy = self.clock()
        plan = plan_round(
            list(self.state.doc_names),
            self.scopes,
            self.clock(),
            prefer=prefer,
            link_healed=link_healed,
            choose=random.choice,
        )
        if self.resync is not None and self.resync.active:
            # Every document to every live hub too: one of them must give them all back.
            planned = {(a.doc, a.target.node_id if a.target else "") for a in plan}
            plan += [
                a
                for a in plan_resync(self.state.doc_names, self.scopes, self.clock())
                if (a.doc, a.target.node_id if a.target else "") not in planned
            ]
        for a in plan:
            await self.out.send_state(a.doc, target=a.target, subject=a.inbox)

    async def _anti_entropy_loop(self) -> None:
        while True:
            interval = self.settings.anti_entropy_interval_s
            await asyncio.sleep(interval * random.uniform(0.8, 1.2))
            try:
                await self.anti_entropy()
            except Exception as exc:
                self.log.warning("anti-entropy round failed: %s", exc)
            raise_if_cancelled()

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.heartbeat_interval_s)
            self.receiver.log_peer_changes(self.table.due(self.clock()))
            try:
                await self.out.send_heartbeat()
            except Exception as exc:
                self.log.debug("heartbeat failed: %s", exc)
            raise_if_cancelled()

    # --- views ----------------------------------------------------------------------------

    def heartbeat_payload(self) -> dict[str, Any]:
        return self.out.heartbeat_payload()

    def peer_views(self) -> list[dict[str, Any]]:
        return self.table.views(self.clock())

    def publish_event(self, workload: str, kind: str, message: str, ts: float) -> None:
        """Send a reconciler event to the hubs if it is a fleet transition (fleetevents.py).

        Never blocks the caller: the send is a task, dropped if not connected or over budget.
        A sovereign node sends none (its workloads' story stays in its site).
        """
        s = self.settings
        transition = classify(kind, message)
        if transition is None or s.sovereign or not self.connected:
            return
        if self.fleet_events is not None:
            # A hub's own transitions go straight into its buffer.
            self.fleet_events.add(
                FleetEvent(ts, self.clock(), s.node_id, s.site, workload, transition, kind, message)
            )
            return
        if not self._event_limit.allow() or len(self._event_tasks) >= MAX_EVENT_SENDS:
            return
        payload = event_payload(
            node=s.node_id,
            site=s.site,
            workload=workload,
            transition=transition,
            kind=kind,
            message=message,
            ts=ts,
        )
        task = asyncio.create_task(self._send_event(payload), name="sync-event")
        self._event_tasks.add(task)
        task.add_done_callback(self._event_tasks.discard)

    async def _send_event(self, payload: bytes) -> None:
        try:
            await self.out.send_event(payload)
        except Exception as exc:
            self.log.debug("fleet event not sent: %s", exc)

    def status(self) -> dict[str, Any]:
        now = self.clock()
        return {
            "enabled": True,
            "fleet": self.settings.fleet,
            "nats_url": self.channel.address,
            "connected": self.connected,
            "connected_since": self.connected_since,
            "sovereign": self.settings.sovereign,
            "peers_up": len(self.table.up(now)),
            "peers_known": len(self.peers),
            "last_anti_entropy": self.last_anti_entropy,
            "counters": dict(vars(self.counters)),
            # This start's instance id (in its heartbeats), to tell two instances apart.
            "instance": self.out.boot,
            # Node ids heard with two live instances at once (a cloned enrolment).
            "clones": self.instances.clones(now),
            # Why this instance sends nothing (it is a clone's newcomer), or None.
            "suspended": self.out.suspended,
            "rejections": dict(self.rejections.counts),
            "rejected_total": self.rejections.total,
        }
