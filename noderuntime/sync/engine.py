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
- **Leaf-link changes.** Given the local server's monitoring port, the engine polls ``/leafz``
  on loopback (every ``LINK_POLL_INTERVAL_S``); when a leaf link comes up it publishes a
  heartbeat at once and runs a debounced anti-entropy round, so a healed link is repaired
  without waiting for a heartbeat. Without a monitoring port (an external NATS) heartbeats
  alone reveal a heal.
- **Verify before decoding.** See :mod:`noderuntime.sync.verify`. Everything refused is counted
  by cause and logged once per cause per minute; a message can't crash or stall the engine (one
  bounded queue, one worker, every handler guarded).

Lifecycle: ``async with SyncEngine(...)`` starts the connect loop and the workers; the local
server may come and go (nats-py reconnects forever).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import nats
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from noderuntime.crdt.clocks import UpdateFormatError, decode_state_vector, units_behind
from noderuntime.crdt.state import IngestResult, Origin, StateStore
from noderuntime.crdt.store import NewUpdate, StoredUpdate
from noderuntime.errors import NatsServerError
from noderuntime.identity.keys import Identity
from noderuntime.identity.principals import node_id_of, node_principal
from noderuntime.sync import protocol
from noderuntime.sync.acl import (
    ROLE_HUB,
    DocKind,
    DocRef,
    MemberLike,
    Trust,
    doc_site,
    holds,
    may_read,
    parse_doc,
)
from noderuntime.sync.natsserver import http_get_json
from noderuntime.sync.protocol import (
    CredentialRequestMsg,
    CredentialsMsg,
    HeartbeatMsg,
    ProtocolError,
    StateMsg,
    UpdatesMsg,
    WireUpdate,
)
from noderuntime.sync.verify import Cause, Rejections, check_signed, check_update, keys_of

HEARTBEAT_INTERVAL_S = 2.0
ANTI_ENTROPY_INTERVAL_S = 10.0
PEER_TIMEOUT_HEARTBEATS = 3
HEAL_DEBOUNCE_S = 0.1
# A link-up or peer-up answer heartbeat goes out at most this often (on top of the ticks).
HEARTBEAT_ANSWER_MIN_INTERVAL_S = 0.25
# How often the local server's /leafz is polled (loopback; ~1 KB per link).
LINK_POLL_INTERVAL_S = 0.5
STATE_REPLY_MIN_INTERVAL_S = 0.5
INBOX_LIMIT = 10_000
# 10,000 messages of up to 1 MiB each would be 10 GiB: bound what waits by bytes too.
INBOX_BYTES_LIMIT = 64 * 1024 * 1024
OUTBOX_LIMIT = 100_000
CONNECT_BACKOFF_MAX_S = 5.0

_INGEST_CAUSES = {
    IngestResult.MALFORMED: Cause.MALFORMED,
    IngestResult.UNANCHORED: Cause.UNANCHORED,
    IngestResult.CLIENT_CONFLICT: Cause.CLIENT_CONFLICT,
    IngestResult.CORRUPT: Cause.CORRUPT,
}


@dataclass(frozen=True)
class SyncSettings:
    fleet: str
    node_id: str
    site: str
    role: str = "node"
    sovereign: bool = False
    heartbeat_interval_s: float = HEARTBEAT_INTERVAL_S
    anti_entropy_interval_s: float = ANTI_ENTROPY_INTERVAL_S
    max_message_bytes: int = protocol.DEFAULT_MAX_MESSAGE_BYTES
    max_update_bytes: int = protocol.DEFAULT_MAX_UPDATE_BYTES
    max_inbox_bytes: int = INBOX_BYTES_LIMIT

    def __post_init__(self) -> None:
        protocol.check_token(self.fleet)
        protocol.check_token(self.site)
        protocol.check_token(self.node_id)

    @property
    def principal(self) -> str:
        return node_principal(self.node_id)


@dataclass
class PeerStats:
    """What this node knows of another node, from its heartbeats and messages."""

    node_id: str
    site: str | None = None
    role: str | None = None
    sovereign: bool = False
    up_since: float | None = None
    last_heard: float | None = None
    last_heartbeat_ts: float = 0.0
    # Highest heartbeat counter seen per boot of the peer (replay check; see _fresh_heartbeat).
    boots: dict[str, int] = field(default_factory=dict)
    heartbeat: dict[str, Any] = field(default_factory=dict)
    bytes_in: int = 0
    messages_in: int = 0
    updates_in: int = 0
    bytes_out: int = 0
    last_sync: float | None = None
    behind_by: dict[str, int] = field(default_factory=dict)  # units it lacks, per doc
    ahead_by: dict[str, int] = field(default_factory=dict)  # units we lack, per doc

    def is_up(self, now: float, timeout: float) -> bool:
        return self.last_heard is not None and now - self.last_heard <= timeout

    def view(self, now: float, timeout: float) -> dict[str, Any]:
        return {
            "node": self.node_id,
            "site": self.site,
            "role": self.role,
            "sovereign": self.sovereign,
            "up": self.is_up(now, timeout),
            "up_since": self.up_since,
            "last_heard": self.last_heard,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "messages_in": self.messages_in,
            "updates_in": self.updates_in,
            "last_sync": self.last_sync,
            "behind_by": sum(self.behind_by.values()),
            "ahead_by": sum(self.ahead_by.values()),
        }


# How often a node re-sends its credentials when it meets members that may not know it.
CREDENTIAL_PUSH_INTERVAL_S = 2.0


@dataclass
class Counters:
    messages_in: int = 0
    bytes_in: int = 0
    messages_out: int = 0
    bytes_out: int = 0
    updates_broadcast: int = 0
    updates_applied: int = 0
    duplicates: int = 0
    repairs_sent: int = 0
    state_sent: int = 0
    state_received: int = 0
    heartbeats_sent: int = 0
    heartbeats_received: int = 0
    broadcast_dropped: int = 0
    connects: int = 0
    disconnects: int = 0
    # Heartbeats/state vectors from a member whose credential has not reached us yet: normal
    # for a few seconds after a node joins, so not counted as rejections (updates still are).
    awaiting_credentials: int = 0
    credentials_requested: int = 0
    updates_undeliverable: int = 0
    # Messages dropped because the inbound queue was full (also counted as `overload`).
    inbound_dropped: int = 0
    inbound_dropped_bytes: int = 0
    # Leaf links of the local server seen coming up (0 without a monitoring port).
    link_ups: int = 0


class SyncEngine:
    """Replicates a :class:`StateStore`'s documents with peers through NATS."""

    def __init__(
        self,
        state: StateStore,
        trust: Trust,
        identity: Identity,
        settings: SyncSettings,
        *,
        nats_url: str,
        nats_token: str | None = None,
        log: logging.Logger | None = None,
        clock: Callable[[], float] = time.time,
        health: Callable[[], Mapping[str, Any]] | None = None,
        monitor_port: int | None = None,
    ) -> None:
        self.state = state
        self.trust = trust
        self.identity = identity
        self.settings = settings
        self.nats_url = nats_url
        self._nats_token = nats_token
        self.log = log or logging.getLogger(__name__)
        self.clock = clock
        self._health = health
        # The local nats-server's monitoring port (loopback), watched for leaf-link changes;
        # None (an external NATS): heal detection by heartbeats only.
        self.monitor_port = monitor_port
        self._links: set[tuple[str, object]] = set()
        self._last_answer_heartbeat = -HEARTBEAT_ANSWER_MIN_INTERVAL_S
        self._link_healed = False
        self.rejections = Rejections(self.log)
        self.counters = Counters()
        self.peers: dict[str, PeerStats] = {}
        self.connected = False
        self.connected_since: float | None = None
        self.last_anti_entropy: float | None = None
        self._nc: NatsClient | None = None
        self._inbox: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(INBOX_LIMIT)
        self._inbox_bytes = 0  # queued and in hand
        self._outbox: asyncio.Queue[StoredUpdate] = asyncio.Queue(OUTBOX_LIMIT)
        self._tasks: list[asyncio.Task[None]] = []
        self._last_credential_push = -CREDENTIAL_PUSH_INTERVAL_S
        # Authors whose credential we lack (updates refused as unknown_author): asked for, and
        # a repair round follows once any of them is learnt.
        self._missing_authors: set[str] = set()
        self._last_request: dict[str, float] = {}
        self._last_answer: dict[str, float] = {}
        self._undeliverable_logged: set[str] = set()
        # Heartbeats are numbered per process start, so replays are told from a clock step.
        self._boot = secrets.token_hex(8)
        self._heartbeat_n = 0
        self._unsubscribe: Callable[[], None] | None = None
        self._sovereign_sites: set[str] = {settings.site} if settings.sovereign else set()
        self._healed: set[str] = set()
        self._heal_task: asyncio.Task[None] | None = None
        self._last_state_reply: dict[tuple[str, str], float] = {}
        self._closing = False

    # --- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> SyncEngine:
        self._closing = False
        self._unsubscribe = self.state.subscribe_updates(self._on_stored)
        for coro, name in (
            (self._connect_loop(), "sync-connect"),
            (self._worker(), "sync-worker"),
            (self._sender(), "sync-sender"),
            (self._heartbeat_loop(), "sync-heartbeat"),
            (self._anti_entropy_loop(), "sync-anti-entropy"),
        ):
            self._tasks.append(asyncio.create_task(coro, name=name))
        if self.monitor_port is not None:
            self._tasks.append(
                asyncio.create_task(self._link_watch_loop(self.monitor_port), name="sync-links")
            )
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
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._nc.close(), 5)
            self._nc = None
        self.connected = False

    async def wait_connected(self, within_s: float = 10.0) -> None:
        deadline = time.monotonic() + within_s
        while not self.connected:
            if time.monotonic() > deadline:
                raise TimeoutError(f"sync engine did not connect to {redact_url(self.nats_url)}")
            await asyncio.sleep(0.02)

    # --- connection -----------------------------------------------------------------------

    async def _connect_loop(self) -> None:
        backoff = 0.1
        while not self._closing:
            try:
                nc = await nats.connect(
                    self.nats_url,
                    name=f"noderuntime-sync-{self.settings.node_id}",
                    allow_reconnect=True,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=0.5,
                    connect_timeout=2,
                    disconnected_cb=self._on_disconnected,
                    reconnected_cb=self._on_reconnected,
                    error_cb=self._on_error,
                    pending_size=16 * 1024 * 1024,
                    token=self._nats_token,
                )
            except Exception as exc:
                self.log.debug("cannot reach local NATS at %s: %s", redact_url(self.nats_url), exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, CONNECT_BACKOFF_MAX_S)
                continue
            self._nc = nc
            s = self.settings
            for subject in protocol.subscriptions(
                s.fleet, role=s.role, site=s.site, node_id=s.node_id
            ):
                await nc.subscribe(subject, cb=self._on_msg)
            await nc.flush()
            self._mark_connected()
            self.log.info("sync connected to %s", redact_url(self.nats_url))
            await self._send_heartbeat()
            await self.anti_entropy()
            return

    def _mark_connected(self) -> None:
        self.connected = True
        self.connected_since = self.clock()
        self.counters.connects += 1

    async def _on_disconnected(self) -> None:
        if self.connected and not self._closing:
            self.counters.disconnects += 1
            self.log.warning(
                "sync lost the local NATS server %s; retrying", redact_url(self.nats_url)
            )
        self.connected = False

    async def _on_reconnected(self) -> None:
        self._mark_connected()
        self.log.info("sync reconnected to %s", redact_url(self.nats_url))
        self._spawn(self.anti_entropy())

    async def _on_error(self, exc: Exception) -> None:
        self.log.debug("nats: %s", exc)

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.create_task(self._guard(coro))
        self._tasks.append(task)
        task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[None]) -> None:
        if task in self._tasks:
            self._tasks.remove(task)

    async def _guard(self, coro: Any) -> None:
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.log.warning("sync task failed: %s", exc)

    async def _publish(self, subject: str, data: bytes, peer: PeerStats | None = None) -> None:
        nc = self._nc
        if nc is None or not self.connected:
            return
        try:
            await nc.publish(subject, data)
        except Exception as exc:
            self.log.debug("publish to %s failed: %s", subject, exc)
            return
        self.counters.messages_out += 1
        self.counters.bytes_out += len(data)
        if peer is not None:
            peer.bytes_out += len(data)

    # --- inbound --------------------------------------------------------------------------

    async def _on_msg(self, msg: Msg) -> None:
        size = len(msg.data)
        if self._inbox_bytes + size <= self.settings.max_inbox_bytes:
            try:
                self._inbox.put_nowait((msg.subject, msg.data))
            except asyncio.QueueFull:
                pass
            else:
                self._inbox_bytes += size
                return
        self.counters.inbound_dropped += 1
        self.counters.inbound_dropped_bytes += size
        self.rejections.reject(Cause.OVERLOAD, "inbound queue full; anti-entropy will heal")

    async def _worker(self) -> None:
        while True:
            _subject, data = await self._inbox.get()
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
                self._inbox_bytes -= len(data)

    async def handle(self, data: bytes) -> None:
        """Handle one received message (public for tests and the fuzzer)."""
        self.counters.messages_in += 1
        self.counters.bytes_in += len(data)
        try:
            msg = protocol.decode(
                data,
                max_bytes=self.settings.max_message_bytes,
                max_update_bytes=self.settings.max_update_bytes,
            )
        except ProtocolError as exc:
            self.rejections.reject(Cause(exc.cause), str(exc))
            return
        if isinstance(msg, UpdatesMsg):
            await self._handle_updates(msg, len(data))
        elif isinstance(msg, CredentialsMsg):
            if self._handle_credentials(msg):
                # Someone new: make sure they learn us too (they may lack our credential).
                await self._push_credentials()
        elif isinstance(msg, CredentialRequestMsg):
            await self._answer_credential_request(msg)
        elif isinstance(msg, StateMsg):
            await self._handle_state(msg, len(data))
        else:
            await self._handle_heartbeat(msg, len(data))

    def _peer(self, node_id: str) -> PeerStats:
        peer = self.peers.get(node_id)
        if peer is None:
            peer = self.peers[node_id] = PeerStats(node_id)
        return peer

    def _site_of_node(self, node_id: str) -> str | None:
        if node_id == self.settings.node_id:
            return self.settings.site
        member = self.trust.member(node_principal(node_id))
        if member is not None and member.site:
            return member.site
        peer = self.peers.get(node_id)
        return peer.site if peer else None

    def _doc_site(self, doc: DocRef) -> str | None:
        return doc_site(doc, self._site_of_node(doc.ident) if doc.kind is DocKind.NODE else None)

    def _may_hold(self, doc: DocRef) -> bool:
        s = self.settings
        site = self._doc_site(doc)
        if not holds(doc, role=s.role, site=s.site, node_id=s.node_id, site_of_doc=site):
            return False
        return not (site is not None and site != s.site and site in self._sovereign_sites)

    async def _handle_updates(self, msg: UpdatesMsg, size: int) -> None:
        if msg.sender == self.settings.node_id:
            return  # our own broadcast, echoed back by the server
        doc = parse_doc(msg.doc)
        if doc is None:
            self.rejections.reject(Cause.BAD_DOC, f"{msg.doc!r}")
            return
        if msg.sender in self.peers:
            peer = self.peers[msg.sender]
            peer.bytes_in += size
            peer.messages_in += 1
        if not self._may_hold(doc):
            site = self._doc_site(doc)
            if site in self._sovereign_sites:
                self.rejections.reject(Cause.SOVEREIGN, f"{doc.name} of sovereign site {site}")
            return
        accepted: list[NewUpdate] = []
        unknown: set[str] = set()
        for u in msg.updates:
            _, cause = check_update(doc, u, self.trust)
            if cause is not None:
                self.rejections.reject(cause, f"update of {doc.name} by {u.author!r}")
                if cause is Cause.UNKNOWN_AUTHOR:
                    unknown.add(u.author)
                continue
            accepted.append(NewUpdate(doc.name, u.data, u.author, u.signature, u.ts, u.meta))
        if unknown:
            await self._request_credentials(unknown)
        if not accepted:
            return
        results = await self.state.ingest(
            accepted, origin=Origin.PEER, create_docs=self.settings.role == ROLE_HUB
        )
        for new, result in zip(accepted, results, strict=True):
            if result is IngestResult.APPLIED:
                self.counters.updates_applied += 1
                if msg.sender in self.peers:
                    self.peers[msg.sender].updates_in += 1
            elif result is IngestResult.DUPLICATE:
                self.counters.duplicates += 1
            elif result in _INGEST_CAUSES:
                self.rejections.reject(
                    _INGEST_CAUSES[result], f"update of {doc.name} by {new.author!r}"
                )

    async def _handle_state(self, msg: StateMsg, size: int) -> None:
        member, cause = check_signed(msg.sender, msg.signature, msg.signed, self.trust)
        if cause is not None or member is None:
            await self._unknown_sender(cause, f"state from {msg.sender!r}", msg.sender)
            return
        node = node_id_of(member.principal)
        if node is None or node == self.settings.node_id:
            return
        self.counters.state_received += 1
        peer = self._peer(node)
        peer.bytes_in += size
        peer.messages_in += 1
        if member.site:
            peer.site = member.site
        peer.role = member.role
        if msg.target and msg.target != self.settings.node_id:
            return
        doc = parse_doc(msg.doc)
        if doc is None:
            self.rejections.reject(Cause.BAD_DOC, f"{msg.doc!r}")
            return
        try:
            peer_sv = decode_state_vector(msg.state_vector)
        except UpdateFormatError:
            self.rejections.reject(Cause.MALFORMED, f"state vector from {node}")
            return
        if not self.state.holds(doc.name):
            if not (self.settings.role == ROLE_HUB and self._may_hold(doc) and peer_sv):
                return
            await self.state.ensure_doc(doc.name)
        site = self._doc_site(doc)
        if not may_read(
            doc,
            member,
            site_of_doc=site,
            sovereign=site is not None and site in self._sovereign_sites,
        ):
            self.rejections.reject(Cause.SOVEREIGN, f"{node} asked for {doc.name}")
            return
        peer.last_sync = self.clock()
        ours = self.state.state_vector_map(doc.name)
        peer.behind_by[doc.name] = units_behind(ours, peer_sv)
        ahead = units_behind(peer_sv, ours)
        peer.ahead_by[doc.name] = ahead
        inbox = self._inbox_of(member)
        if inbox is None:
            return
        missing = await self.state.missing_for(doc.name, peer_sv)
        if missing:
            wire = [_wire(u) for u in missing]
            for data in self._batches(doc.name, wire):
                await self._publish(inbox, data, peer)
            self.counters.repairs_sent += len(missing)
        if ahead > 0:
            key = (node, doc.name)
            now = time.monotonic()
            if now - self._last_state_reply.get(key, -1e9) >= STATE_REPLY_MIN_INTERVAL_S:
                self._last_state_reply[key] = now
                await self._send_state(doc.name, target=peer, subject=inbox)

    def _inbox_of(self, member: MemberLike) -> str | None:
        node = node_id_of(member.principal)
        site = member.site or (self.peers[node].site if node in self.peers else None)
        if node is None or not site:
            return None
        return protocol.inbox_subject(self.settings.fleet, site, node)

    def _handle_credentials(self, msg: CredentialsMsg) -> bool:
        """Learn the credentials in ``msg``; True if any member was new to us."""
        before = len(self.trust.members())
        learnt: set[str] = set()
        for blob in msg.credentials:
            try:
                member = self.trust.add(blob)  # verified against the fleet root; a no-op when known
            except Exception as exc:  # CredentialError, or the disk: a peer's bytes never crash us
                self.rejections.reject(Cause.BAD_CREDENTIAL, str(exc))
                continue
            learnt.add(member.principal)
        found = learnt & self._missing_authors
        if found:
            # Their updates were refused; the next exchange brings them again.
            self._missing_authors -= found
            self._schedule_heal()
        return len(self.trust.members()) > before

    async def _request_credentials(self, principals: set[str]) -> None:
        """Ask everyone for the credentials of ``principals`` (each at most every
        CREDENTIAL_PUSH_INTERVAL_S): their author may be offline or gone, but every member
        that verified their updates holds the credential."""
        self._missing_authors |= principals
        now = self.clock()
        due = sorted(
            p
            for p in principals
            if now - self._last_request.get(p, -1e9) >= CREDENTIAL_PUSH_INTERVAL_S
        )[: protocol.MAX_REQUESTED]
        if not due:
            return
        for p in due:
            self._last_request[p] = now
        await self._publish(
            protocol.credentials_subject(self.settings.fleet),
            protocol.encode_credential_request(due),
        )
        self.counters.credentials_requested += len(due)

    async def _answer_credential_request(self, msg: CredentialRequestMsg) -> None:
        # Every member that knows one answers, so a requester is served while any of them is
        # reachable; answering a principal at most every CREDENTIAL_PUSH_INTERVAL_S bounds the
        # cost of a node that keeps asking.
        now = self.clock()
        blobs: list[bytes] = []
        for principal in msg.principals:
            if now - self._last_answer.get(principal, -1e9) < CREDENTIAL_PUSH_INTERVAL_S:
                continue
            found = [m.blob for m in keys_of(self.trust, principal) if m.blob is not None]
            if found:
                self._last_answer[principal] = now
                blobs += found
        if blobs:
            await self._send_blobs(blobs)

    async def _push_credentials(self) -> None:
        """Send our credentials now, at most once per CREDENTIAL_PUSH_INTERVAL_S."""
        now = self.clock()
        if now - self._last_credential_push < CREDENTIAL_PUSH_INTERVAL_S:
            return
        self._last_credential_push = now
        await self._send_credentials()

    async def _unknown_sender(
        self, cause: Cause | None, what: str, principal: str | None = None
    ) -> None:
        if cause in (None, Cause.UNKNOWN_AUTHOR):
            self.counters.awaiting_credentials += 1
            await self._push_credentials()
            if principal is not None and node_id_of(principal) is not None:
                await self._request_credentials({principal})
        else:
            self.rejections.reject(cause, what)

    def _known_credentials(self) -> list[bytes]:
        """Our own credential and every operator's and hub's we know, pushed periodically.

        Other nodes' credentials are relayed on request (:meth:`_request_credentials`), so
        the periodic push stays small however large the fleet.
        """
        blobs: list[bytes] = []
        own = self.trust.node
        if own is not None and own.blob is not None:
            blobs.append(own.blob)
        for m in self.trust.members():
            if m.blob is not None and m.role in ("operator", "hub") and m.blob not in blobs:
                blobs.append(m.blob)
        return blobs

    async def _send_credentials(self) -> None:
        await self._send_blobs(self._known_credentials())

    async def _send_blobs(self, blobs: list[bytes]) -> None:
        subject = protocol.credentials_subject(self.settings.fleet)
        for data in protocol.batch_credentials(blobs, self.settings.max_message_bytes):
            await self._publish(subject, data)

    async def _handle_heartbeat(self, msg: HeartbeatMsg, size: int) -> None:
        member, cause = check_signed(msg.sender, msg.signature, msg.signed, self.trust)
        if cause is not None or member is None:
            await self._unknown_sender(cause, f"heartbeat from {msg.sender!r}", msg.sender)
            return
        node = node_id_of(member.principal)
        if node is None or node == self.settings.node_id:
            return
        peer = self._peer(node)
        try:
            payload = json.loads(msg.payload)
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            self.rejections.reject(Cause.MALFORMED, f"heartbeat payload from {node}")
            return
        if not _fresh_heartbeat(peer, msg.ts, payload):
            self.rejections.reject(Cause.REPLAYED, f"old heartbeat from {node}")
            return
        self.counters.heartbeats_received += 1
        now = self.clock()
        was_up = peer.is_up(now, self._peer_timeout)
        peer.last_heard = now
        peer.last_heartbeat_ts = msg.ts
        peer.heartbeat = payload
        peer.bytes_in += size
        peer.messages_in += 1
        peer.site = member.site or peer.site
        peer.role = member.role
        peer.sovereign = bool(payload.get("sovereign", False))
        if peer.sovereign and peer.site:
            self._sovereign_sites.add(peer.site)
        if not was_up:
            peer.up_since = now
            self.log.info("sync: peer %s (site %s) is up", node, peer.site)
            self._healed.add(node)
            self._schedule_heal()
            # It may not know we are up either: tell it now rather than at our next tick.
            await self._answer_heartbeat()

    @property
    def _peer_timeout(self) -> float:
        return self.settings.heartbeat_interval_s * PEER_TIMEOUT_HEARTBEATS

    def _schedule_heal(self) -> None:
        if self._heal_task is None or self._heal_task.done():
            self._heal_task = asyncio.create_task(self._after_heal())

    async def _after_heal(self) -> None:
        # Debounce: many peers reappear at once when a link heals; sync once, with one of them.
        await asyncio.sleep(HEAL_DEBOUNCE_S)
        healed, self._healed = self._healed, set()
        link, self._link_healed = self._link_healed, False
        with contextlib.suppress(Exception):
            await self.anti_entropy(prefer=healed, link_healed=link)

    async def _answer_heartbeat(self) -> None:
        """An extra heartbeat now, at most every HEARTBEAT_ANSWER_MIN_INTERVAL_S."""
        now = time.monotonic()
        if now - self._last_answer_heartbeat < HEARTBEAT_ANSWER_MIN_INTERVAL_S:
            return
        self._last_answer_heartbeat = now
        await self._send_heartbeat()

    async def _link_watch_loop(self, port: int) -> None:
        """Poll the local server's ``/leafz``; a link that comes up triggers :meth:`link_up`.

        A link is its connection id within one run of the server (``server_id``), so a server
        restart makes every link new. A poll that fails changes nothing.
        """
        while True:
            try:
                leafz = await http_get_json(port, "/leafz", timeout_s=2.0)
                server = str(leafz.get("server_id", ""))
                links = {(server, e.get("id")) for e in leafz.get("leafs") or []}
            except (OSError, NatsServerError, ValueError, TimeoutError, AttributeError):
                await asyncio.sleep(LINK_POLL_INTERVAL_S)
                continue
            new = links - self._links
            self._links = links
            if new:
                self.counters.link_ups += len(new)
                try:
                    await self.link_up()
                except Exception as exc:
                    self.log.debug("link-up round failed: %s", exc)
            await asyncio.sleep(LINK_POLL_INTERVAL_S)

    async def link_up(self) -> None:
        """A leaf link of the local server came up: announce ourselves, then repair.

        The heartbeat lets peers behind the link see us now (they answer with theirs); the
        debounced round that follows targets peers heard from meanwhile, and for documents
        none of them holds announces our state vector on the document's state subject, so a
        peer that never looked down (a short cut) is reached too.
        """
        if not self.connected:
            return
        await self._answer_heartbeat()
        self._link_healed = True
        self._schedule_heal()

    # --- outbound -------------------------------------------------------------------------

    def _on_stored(self, update: StoredUpdate, origin: Origin) -> None:
        if origin is Origin.PEER:
            return
        try:
            self._outbox.put_nowait(update)
        except asyncio.QueueFull:
            self.counters.broadcast_dropped += 1

    async def _sender(self) -> None:
        while True:
            items = [await self._outbox.get()]
            while not self._outbox.empty():
                items.append(self._outbox.get_nowait())
            if not self.connected:
                self.counters.broadcast_dropped += len(items)
                continue
            by_doc: dict[str, list[WireUpdate]] = {}
            for u in items:
                by_doc.setdefault(u.doc, []).append(_wire(u))
            for name, wire in by_doc.items():
                subject = self._update_subject(name)
                if subject is None:
                    self.counters.broadcast_dropped += len(wire)
                    continue
                for data in self._batches(name, wire):
                    await self._publish(subject, data)
                self.counters.updates_broadcast += len(wire)

    def _batches(self, name: str, wire: list[WireUpdate]) -> list[bytes]:
        s = self.settings
        ok = [
            u
            for u in wire
            if protocol.deliverable(
                u, s.max_message_bytes, s.max_update_bytes, sender=s.node_id, doc=name
            )
        ]
        if len(ok) < len(wire):
            # Stored before writes were bounded (or limits differ): never sendable, and a
            # message holding one would be refused whole by every receiver.
            self.counters.updates_undeliverable += len(wire) - len(ok)
            if name not in self._undeliverable_logged:
                self._undeliverable_logged.add(name)
                self.log.warning(
                    "sync: %d update(s) of %s exceed what receivers accept (%d bytes); "
                    "they are not sent",
                    len(wire) - len(ok),
                    name,
                    s.max_update_bytes,
                )
        return protocol.batch_updates(s.node_id, name, ok, s.max_message_bytes, s.max_update_bytes)

    def _suffix(self, name: str) -> str | None:
        doc = parse_doc(name)
        if doc is None:
            return None
        site = self._site_of_node(doc.ident) if doc.kind is DocKind.NODE else None
        return protocol.doc_suffix(doc, site)

    def _update_subject(self, name: str) -> str | None:
        suffix = self._suffix(name)
        return protocol.update_subject(self.settings.fleet, suffix) if suffix else None

    async def _send_state(
        self, name: str, *, target: PeerStats | None = None, subject: str | None = None
    ) -> None:
        sv = self.state.state_vector(name)
        part = protocol.state_signed_part(
            self.settings.principal, name, target.node_id if target else "", self.clock(), sv
        )
        data = part + self.identity.sign(protocol.signing_bytes(part))
        if subject is None:
            suffix = self._suffix(name)
            if suffix is None:
                return
            subject = protocol.state_subject(self.settings.fleet, suffix)
        await self._publish(subject, data, target)
        self.counters.state_sent += 1
        if target is not None:
            # It answers this with what we lack: a reply to its own state vector that arrives
            # meanwhile (both sides start a round when a link heals) need not ask again, which
            # would make it compute and send the same repair twice.
            self._last_state_reply[(target.node_id, name)] = time.monotonic()

    def _holders(self, doc: DocRef, now: float) -> list[PeerStats]:
        site = self._doc_site(doc)
        out = []
        for p in self.peers.values():
            if not p.is_up(now, self._peer_timeout) or p.role is None or p.site is None:
                continue
            if not holds(doc, role=p.role, site=p.site, node_id=p.node_id, site_of_doc=site):
                continue
            if site in self._sovereign_sites and p.site != site:
                continue
            out.append(p)
        return out

    async def anti_entropy(
        self, prefer: set[str] | None = None, *, link_healed: bool = False
    ) -> None:
        """Announce our state vector of every document we hold, to one peer each.

        The peer is one of ``prefer`` (peers whose link just healed) if any holds the document,
        else a random live holder; with none known — or after a leaf link of ours came up
        (``link_healed``) and no ``prefer`` peer holds it — the announcement goes to everyone
        subscribed to the document's state subject.
        """
        if not self.connected:
            return
        await self._send_credentials()
        self.last_anti_entropy = self.clock()
        now = self.clock()
        for name in list(self.state.doc_names):
            doc = parse_doc(name)
            if doc is None or not self._may_hold(doc):
                continue
            holders = self._holders(doc, now)
            preferred = [p for p in holders if prefer and p.node_id in prefer]
            pool = preferred or ([] if link_healed else holders)
            if not pool:
                await self._send_state(name)
                continue
            peer = random.choice(pool)
            member = self.trust.member(node_principal(peer.node_id))
            inbox = self._inbox_of(member) if member is not None else None
            if inbox is None:
                await self._send_state(name)
            else:
                await self._send_state(name, target=peer, subject=inbox)

    async def _anti_entropy_loop(self) -> None:
        while True:
            interval = self.settings.anti_entropy_interval_s
            await asyncio.sleep(interval * random.uniform(0.8, 1.2))
            try:
                await self.anti_entropy()
            except Exception as exc:
                self.log.warning("anti-entropy round failed: %s", exc)

    def heartbeat_payload(self) -> dict[str, Any]:
        s = self.settings
        payload: dict[str, Any] = {
            "node": s.node_id,
            "site": s.site,
            "role": s.role,
            "time": self.clock(),
            "sovereign": s.sovereign,
            "seq": self.state.last_seq,
        }
        if self._health is not None:
            try:
                payload.update(self._health())
            except Exception as exc:
                self.log.debug("health summary failed: %s", exc)
        self._heartbeat_n += 1
        payload["boot"] = self._boot
        payload["n"] = self._heartbeat_n
        return payload

    async def _send_heartbeat(self) -> None:
        s = self.settings
        payload = json.dumps(self.heartbeat_payload(), sort_keys=True, default=str).encode()
        part = protocol.heartbeat_signed_part(s.principal, self.clock(), payload)
        data = part + self.identity.sign(protocol.signing_bytes(part))
        await self._publish(protocol.heartbeat_subject(s.fleet, s.site, s.node_id), data)
        self.counters.heartbeats_sent += 1

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.heartbeat_interval_s)
            try:
                await self._send_heartbeat()
            except Exception as exc:
                self.log.debug("heartbeat failed: %s", exc)

    # --- views ----------------------------------------------------------------------------

    def peer_views(self) -> list[dict[str, Any]]:
        now = self.clock()
        return [p.view(now, self._peer_timeout) for _, p in sorted(self.peers.items())]

    def status(self) -> dict[str, Any]:
        now = self.clock()
        c = self.counters
        return {
            "enabled": True,
            "fleet": self.settings.fleet,
            "nats_url": redact_url(self.nats_url),
            "connected": self.connected,
            "connected_since": self.connected_since,
            "sovereign": self.settings.sovereign,
            "peers_up": sum(1 for p in self.peers.values() if p.is_up(now, self._peer_timeout)),
            "peers_known": len(self.peers),
            "last_anti_entropy": self.last_anti_entropy,
            "counters": dict(vars(c)),
            "rejections": dict(self.rejections.counts),
            "rejected_total": self.rejections.total,
        }


def redact_url(url: str) -> str:
    """``url`` without its credentials (the local server's token is a secret)."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, f"***@{host}", parts.path, parts.query, parts.fragment))


MAX_BOOTS_REMEMBERED = 16


def _fresh_heartbeat(peer: PeerStats, ts: float, payload: Mapping[str, Any]) -> bool:
    """Whether a signed heartbeat is new rather than replayed.

    Judged by its (boot, n) counter, not its time: a peer whose clock steps backwards (NTP
    after a dead RTC battery) would otherwise have every later heartbeat refused and stay
    down for as long as the step. A boot never seen is new (a restart); the last few boots
    are remembered so their old heartbeats stay refused. Peers that send no counter are
    judged by time, as before.
    """
    boot, n = payload.get("boot"), payload.get("n")
    if not isinstance(boot, str) or not isinstance(n, int) or isinstance(n, bool):
        return ts > peer.last_heartbeat_ts
    if n <= peer.boots.get(boot, -1):
        return False
    peer.boots.pop(boot, None)
    peer.boots[boot] = n  # newest last, so the oldest boot is forgotten first
    while len(peer.boots) > MAX_BOOTS_REMEMBERED:
        del peer.boots[next(iter(peer.boots))]
    return True


def _wire(u: StoredUpdate) -> WireUpdate:
    return WireUpdate(u.author, u.signature, u.ts, u.meta, u.data)
