"""Handling one received message: verify, decide, apply, answer.

One message at a time (the engine's single worker); every refusal is counted by cause
(:class:`~noderuntime.sync.verify.Rejections`). Per kind:

- **UPDATES**: our own echo is ignored; a document we do not hold is dropped (counted as
  ``sovereign`` when it belongs to a sovereign site elsewhere); each update is verified
  (:func:`~noderuntime.sync.verify.verify_updates`) and the accepted ones ingested as from a
  peer. Unknown authors' credentials are requested first.
- **STATE**: a signed, live message from an enrolled node; one seen before (its signature is in
  the bounded replay memory) is ``replayed``, one older than ``HEARTBEAT_MAX_AGE_S`` by the
  sender's own latest heartbeat (by our clock if we have none) is ``stale``. If it is for us and
  we hold the document, and the sender may read it, we answer with the updates it lacks
  (rate-limited per peer and document: :class:`~noderuntime.sync.antientropy.Repairs`) and, if
  it has some we lack or it is resyncing after a store loss, with our own state vector
  (:mod:`.antientropy`, :mod:`.resync`). A hub takes on a
  document it does not hold only for a sender that may write it (or another hub): an enrolled
  node cannot make it create documents by naming them.
- **HEARTBEAT**: signed and fresh (:func:`~noderuntime.sync.peers.heartbeat_freshness`), it
  refreshes the peer table; a peer that comes up calls for a repair round with it and an
  answer heartbeat.
- **CREDENTIALS / CREDENTIAL_REQUEST**: the relay's policy (:mod:`.credentials`).

A live message from a sender whose credential we lack is not a rejection: we push ours and
ask for theirs (``awaiting_credentials``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from noderuntime.crdt.clocks import UpdateFormatError, decode_state_vector, gap
from noderuntime.crdt.state import IngestResult, Origin, StateStore
from noderuntime.crdt.store import NewUpdate, StoredUpdate
from noderuntime.identity.principals import node_id_of
from noderuntime.sync import protocol
from noderuntime.sync.acl import (
    ROLE_HUB,
    DocRef,
    MemberLike,
    Trust,
    may_read,
    may_write,
    parse_doc,
    relay_only,
)
from noderuntime.sync.antientropy import (
    Repairs,
    StateReplies,
    compare,
    integrated_only,
    wire,
)
from noderuntime.sync.bounded import LruTable
from noderuntime.sync.counters import Counters
from noderuntime.sync.credentials import CredentialRelay
from noderuntime.sync.fleetevents import FleetEvents, parse_event
from noderuntime.sync.instances import CLONES_KEY, MAX_ANNOUNCED, Instances, Verdict
from noderuntime.sync.liveness import Transition
from noderuntime.sync.outbound import Outbound
from noderuntime.sync.peers import (
    HEARTBEAT_MAX_AGE_S,
    Freshness,
    PeerStats,
    PeerTable,
    heartbeat_freshness,
    parse_heartbeat_payload,
)
from noderuntime.sync.protocol import (
    CredentialRequestMsg,
    CredentialsMsg,
    EventMsg,
    HeartbeatMsg,
    LogLinesMsg,
    LogRequestMsg,
    ProtocolError,
    StateMsg,
    UpdatesMsg,
)
from noderuntime.sync.remotelogs import RemoteLogs
from noderuntime.sync.resync import RESYNC_KEY, ResyncWatch
from noderuntime.sync.scopes import Scopes
from noderuntime.sync.settings import SyncSettings
from noderuntime.sync.verify import Cause, Rejections, check_signed, verify_updates

_INGEST_CAUSES = {
    IngestResult.MALFORMED: Cause.MALFORMED,
    IngestResult.UNANCHORED: Cause.UNANCHORED,
    IngestResult.CLIENT_CONFLICT: Cause.CLIENT_CONFLICT,
    IngestResult.CORRUPT: Cause.CORRUPT,
    IngestResult.UNAUTHORISED: Cause.UNAUTHORISED,  # a hub's key authoring fleet content
}

# Called when a repair round is due: with the node whose heartbeats reappeared, or None when
# credentials we lacked arrived (the next exchange brings their updates again).
HealCallback = Callable[[str | None], None]

# Signatures of the state vectors handled lately: the same signed bytes again are a replay.
MAX_STATE_SEEN = 8192


class Receiver:
    def __init__(
        self,
        *,
        state: StateStore,
        trust: Trust,
        settings: SyncSettings,
        table: PeerTable,
        scopes: Scopes,
        relay: CredentialRelay,
        replies: StateReplies,
        out: Outbound,
        counters: Counters,
        rejections: Rejections,
        on_heal: HealCallback,
        log: logging.Logger,
        clock: Callable[[], float],
        instances: Instances,
        resync: ResyncWatch | None = None,
        fleet_events: FleetEvents | None = None,
        remote_logs: RemoteLogs | None = None,
    ) -> None:
        self.remote_logs = remote_logs
        self.state = state
        self.fleet_events = fleet_events
        self.trust = trust
        self.settings = settings
        self.table = table
        self.scopes = scopes
        self.relay = relay
        self.replies = replies
        self.out = out
        self.counters = counters
        self.rejections = rejections
        self.on_heal = on_heal
        self.log = log
        self.clock = clock
        self.resync = resync
        self.instances = instances
        # Counters of our own node id's other instances (a clone): replays of theirs are not
        # a twin either.
        self._twin = PeerStats(settings.node_id)
        self.repairs = Repairs(on_evict=self._evicted)
        self._state_seen: LruTable[bytes, None] = LruTable(MAX_STATE_SEEN, self._evicted)

    def _evicted(self) -> None:
        self.counters.table_evictions += 1

    async def handle(self, data: bytes) -> None:
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
            await self._updates(msg, len(data))
        elif isinstance(msg, CredentialsMsg):
            await self._credentials(msg)
        elif isinstance(msg, CredentialRequestMsg):
            await self._credential_request(msg)
        elif isinstance(msg, StateMsg):
            await self._state(msg, len(data))
        elif isinstance(msg, EventMsg):
            await self._event(msg)
        elif isinstance(msg, LogRequestMsg):
            if self.remote_logs is not None:
                self.remote_logs.forwarded(msg)
        elif isinstance(msg, LogLinesMsg):
            if self.remote_logs is not None:
                self.remote_logs.lines(msg)
        else:
            await self._heartbeat(msg, len(data))

    # --- updates --------------------------------------------------------------------------

    async def _updates(self, msg: UpdatesMsg, size: int) -> None:
        if msg.sender == self.settings.node_id:
            return  # our own broadcast, echoed back by the server
        doc = parse_doc(msg.doc)
        if doc is None:
            self.rejections.reject(Cause.BAD_DOC, f"{msg.doc!r}")
            return
        peer = self.table.get(msg.sender)
        if peer is not None:
            peer.received(size)
        if not self.scopes.may_hold(doc):
            site = self.scopes.doc_site(doc)
            if self.scopes.is_sovereign(site):
                self.rejections.reject(Cause.SOVEREIGN, f"{doc.name} of sovereign site {site}")
            return
        accepted, refused = verify_updates(doc, msg.updates, self.trust)
        for cause, author in refused:
            self.rejections.reject(cause, f"update of {doc.name} by {author!r}")
        unknown = {author for cause, author in refused if cause is Cause.UNKNOWN_AUTHOR}
        if unknown:
            await self.request_credentials(unknown)
        if not accepted:
            return
        results = await self.state.ingest(
            accepted,
            origin=Origin.PEER,
            create_docs=self.settings.role == ROLE_HUB,
            relay_only=relay_only(doc, (u.author for u in accepted), self.trust),
        )
        self._count_ingested(doc, msg.sender, accepted, results)

    def _count_ingested(
        self, doc: DocRef, sender: str, accepted: list[NewUpdate], results: Sequence[IngestResult]
    ) -> None:
        for new, result in zip(accepted, results, strict=True):
            if result is IngestResult.APPLIED:
                self.counters.updates_applied += 1
                peer = self.table.get(sender)
                if peer is not None:
                    peer.updates_in += 1
            elif result is IngestResult.DUPLICATE:
                self.counters.duplicates += 1
            elif result in _INGEST_CAUSES:
                self.rejections.reject(
                    _INGEST_CAUSES[result], f"update of {doc.name} by {new.author!r}"
                )

    # --- state vectors --------------------------------------------------------------------

    async def _state(self, msg: StateMsg, size: int) -> None:
        member, cause = check_signed(msg.sender, msg.signature, msg.signed, self.trust)
        if cause is not None or member is None:
            await self._unknown_sender(cause, f"state from {msg.sender!r}", msg.sender)
            return
        node = node_id_of(member.principal)
        if node is None or node == self.settings.node_id:
            return
        if msg.signature in self._state_seen:
            self.rejections.reject(Cause.REPLAYED, f"state vector from {node} seen before")
            return
        peer = self.table.peer(node)
        age = self._state_age(peer, msg.ts)
        if age > HEARTBEAT_MAX_AGE_S:
            self.rejections.reject(Cause.STALE, f"state vector from {node} {age:.0f} s old")
            return
        self._state_seen[msg.signature] = None
        self.counters.state_received += 1
        peer.received(size)
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
        if not await self._holds_for(doc, member, peer_sv, resyncing=_resyncing(peer)):
            return
        site = self.scopes.doc_site(doc)
        if not may_read(doc, member, site_of_doc=site, sovereign=self.scopes.is_sovereign(site)):
            self.rejections.reject(Cause.SOVEREIGN, f"{node} asked for {doc.name}")
            return
        await self._answer_state(doc, peer, member, peer_sv)

    def _state_age(self, peer: PeerStats, ts: float) -> float:
        """How old a state vector signed at ``ts`` is: by the sender's own clock (its latest
        heartbeat) while it is up, so a peer whose clock is off, or stepped, is judged fairly;
        by ours otherwise."""
        now = self.clock()
        if self.table.is_up(peer, now):
            return peer.last_heartbeat_ts - ts
        return now - ts

    async def _holds_for(
        self, doc: DocRef, sender: MemberLike, peer_sv: dict[int, int], *, resyncing: bool
    ) -> bool:
        """Whether we hold ``doc`` to answer a peer's state vector.

        A hub takes on a document a peer has something of, or a resyncing peer asks for (to say
        it is empty), if the peer may write it (or is a hub, which holds everything): a member
        naming documents it cannot write must not make us create them.
        """
        if self.state.holds(doc.name):
            return True
        if not (
            self.settings.role == ROLE_HUB and self.scopes.may_hold(doc) and (peer_sv or resyncing)
        ):
            return False
        if not (sender.role == ROLE_HUB or may_write(doc, sender)):
            self.rejections.reject(
                Cause.UNAUTHORISED, f"{sender.principal} announced {doc.name}; it cannot write it"
            )
            return False
        await self.state.ensure_doc(doc.name)
        return True

    async def _answer_state(
        self, doc: DocRef, peer: PeerStats, member: MemberLike, peer_sv: dict[int, int]
    ) -> None:
        peer.last_sync = self.clock()
        behind, ahead = compare(self.state.state_vector_map(doc.name), peer_sv)
        peer.behind_by[doc.name] = behind
        peer.ahead_by[doc.name] = ahead
        if self.resync is not None:
            self.resync.compared(peer.node_id, doc.name, peer_sv, ahead)
        inbox = self.scopes.inbox_of(member)
        if inbox is None:
            return
        integrated = self.state.state_vector_map(doc.name)
        missing: list[StoredUpdate] = []
        if gap(integrated, peer_sv):
            missing, held = integrated_only(
                await self.state.missing_for(doc.name, peer_sv), integrated
            )
            self.counters.repairs_held += held
        if missing and not self.repairs.due(peer.node_id, doc.name):
            self.counters.rate_limited += 1
        elif missing:
            await self.out.send_updates(inbox, doc.name, [wire(u) for u in missing], peer)
            self.counters.repairs_sent += len(missing)
        # A peer resyncing after a store loss learns from our state vector that it lacks
        # nothing more of ours (noderuntime.sync.resync), so it gets one even then.
        if (ahead > 0 or _resyncing(peer)) and self.replies.due(peer.node_id, doc.name):
            await self.out.send_state(doc.name, target=peer, subject=inbox)

    # --- heartbeats -----------------------------------------------------------------------

    async def _event(self, msg: EventMsg) -> None:
        """A fleet event: only a hub keeps them (bounded ring; never stored)."""
        if self.fleet_events is None:
            return
        member, cause = check_signed(msg.sender, msg.signature, msg.signed, self.trust)
        if cause is not None or member is None:
            await self._unknown_sender(cause, f"event from {msg.sender!r}", msg.sender)
            return
        why = self.fleet_events.admit(msg.signature, msg.sender, msg.ts)
        if why is not None:
            self.fleet_events.refuse(why)
            return
        payload = parse_heartbeat_payload(msg.payload)
        node = node_id_of(msg.sender)
        event = (
            parse_event(payload, node=node, site=member.site, received=self.clock())
            if payload is not None and node is not None
            else None
        )
        if event is None:
            self.fleet_events.refuse("malformed")
            return
        self.fleet_events.add(event)

    async def _heartbeat(self, msg: HeartbeatMsg, size: int) -> None:
        member, cause = check_signed(msg.sender, msg.signature, msg.signed, self.trust)
        if cause is not None or member is None:
            await self._unknown_sender(cause, f"heartbeat from {msg.sender!r}", msg.sender)
            return
        node = node_id_of(member.principal)
        if node is None:
            return
        payload = parse_heartbeat_payload(msg.payload)
        if payload is None:
            self.rejections.reject(Cause.MALFORMED, f"heartbeat payload from {node}")
            return
        now = self.clock()
        if node == self.settings.node_id:
            self._own_heartbeat(msg.ts, payload, now)
            return
        peer = self.table.peer(node)
        fresh = heartbeat_freshness(peer, msg.ts, payload, now)
        if fresh is Freshness.REPLAYED:
            self.rejections.reject(Cause.REPLAYED, f"old heartbeat from {node}")
            return
        if fresh is Freshness.STALE:
            self.rejections.reject(
                Cause.STALE,
                f"heartbeat from {node} signed {now - msg.ts:.0f} s ago: a replay, or its clock "
                "is behind ours",
            )
            return
        if not self._one_instance(node, msg.ts, payload, now):
            return
        if member.role == ROLE_HUB:
            self._hub_reports(node, payload.get(CLONES_KEY), now)
        self.counters.heartbeats_received += 1
        changes = self.table.heard_heartbeat(
            peer,
            site=member.site,
            role=member.role,
            ts=msg.ts,
            payload=payload,
            size=size,
            now=now,
        )
        self.scopes.learn_sovereign(peer)
        self.log_peer_changes(changes)
        if any(t.up for t in changes):
            self.on_heal(node)
            # It may not know we are up either: tell it now rather than at our next tick.
            await self.out.answer_heartbeat()

    def _one_instance(self, node: str, ts: float, payload: dict[str, Any], now: float) -> bool:
        """Track ``node``'s instances; False if this heartbeat is a clone's newcomer's."""
        boot, uptime = payload.get("boot"), _uptime(payload)
        if not isinstance(boot, str):
            return True  # a node older than instance ids
        verdict = self.instances.heard(node, boot, uptime, ts, now)
        if verdict.detected is not None:
            self.log.error(
                "sync: two live instances of node %s (%s): an enrolment used twice? Refusing "
                "the newcomer %s until an operator stops one and restarts the one to keep "
                "(docs/operations.md, Cloned enrolment)",
                node,
                ", ".join(i["instance"] for i in verdict.detected["instances"]),
                verdict.detected["newcomer"],
            )
        if not verdict.accept:
            self.rejections.reject(Cause.CLONED, f"heartbeat of {node}'s newcomer instance {boot}")
        return verdict.accept

    def _hub_reports(self, hub: str, clones: object, now: float) -> None:
        """A hub's heartbeat lists the clones it detected: is this node one of them?"""
        if not isinstance(clones, list):
            return
        for clone in clones[:MAX_ANNOUNCED]:
            if not isinstance(clone, dict) or clone.get("node") != self.settings.node_id:
                continue
            newcomer, instances = clone.get("newcomer"), clone.get("instances")
            if not isinstance(newcomer, str) or not isinstance(instances, list):
                continue
            boots = [b for b in instances if isinstance(b, str)]
            self._twin_verdict(
                self.instances.reported(newcomer, boots, now),
                f"hub {hub} hears two live instances of this node ({', '.join(boots)})",
            )

    def _twin_verdict(self, verdict: Verdict, why: str) -> None:
        if verdict.detected is not None:
            self.log.error(
                "sync: %s: the enrolment was used twice (docs/operations.md, Cloned enrolment)",
                why,
            )
        if not verdict.accept and self.out.suspended is None:
            self.out.suspended = (
                f"{why}; this one ({self.out.boot}) started later and sends nothing until an "
                "operator stops one of them and restarts the one to keep"
            )
            self.log.error("sync: suspended: %s", self.out.suspended)

    def _own_heartbeat(self, ts: float, payload: dict[str, Any], now: float) -> None:
        """A heartbeat of our own node id: our echo, or a twin of ours (a cloned enrolment)."""
        boot = payload.get("boot")
        if not isinstance(boot, str) or boot == self.out.boot:
            return
        if heartbeat_freshness(self._twin, ts, payload, now) is not Freshness.FRESH:
            return
        verdict = self.instances.heard_self(boot, _uptime(payload), ts, now)
        self._twin_verdict(verdict, f"another instance of this node ({boot}) is live")

    def log_peer_changes(self, changes: list[Transition]) -> None:
        """Log peers coming up and going down (a peer can flap at most once per timeout)."""
        for t in changes:
            peer = self.table.get(t.key)
            site = peer.site if peer is not None else None
            if t.up:
                self.log.info("sync: peer %s (site %s) is up", t.key, site)
                continue
            silent = self.clock() - (t.at - self.table.timeout_s)
            up_for = f", up for {t.at - t.up_since:.0f} s" if t.up_since is not None else ""
            self.log.warning(
                "sync: peer %s (site %s) is down: not heard from for %.0f s%s",
                t.key,
                site,
                silent,
                up_for,
            )

    # --- credentials (policy: noderuntime.sync.credentials) ---------------------------------

    async def _credentials(self, msg: CredentialsMsg) -> None:
        learnt = self.relay.learn(msg.credentials)
        for why in learnt.refused:
            self.rejections.reject(Cause.BAD_CREDENTIAL, why)
        if learnt.repair:
            # Their updates were refused; the next exchange brings them again.
            self.on_heal(None)
        if learnt.new_member:
            # Someone new: make sure they learn us too (they may lack our credential).
            await self.push_credentials()

    async def _credential_request(self, msg: CredentialRequestMsg) -> None:
        blobs = self.relay.answer(msg.principals)
        if blobs:
            await self.out.send_credentials(blobs)

    async def request_credentials(self, principals: set[str]) -> None:
        deferred = self.relay.requests_deferred
        due = self.relay.to_request(principals)
        self.counters.rate_limited += self.relay.requests_deferred - deferred
        if due:
            await self.out.request_credentials(due)

    async def push_credentials(self) -> None:
        """Send our credentials now, at most once per CREDENTIAL_PUSH_INTERVAL_S."""
        if self.relay.push_due():
            await self.out.send_credentials(self.relay.known())

    async def _unknown_sender(
        self, cause: Cause | None, what: str, principal: str | None = None
    ) -> None:
        if cause in (None, Cause.UNKNOWN_AUTHOR):
            self.counters.awaiting_credentials += 1
            await self.push_credentials()
            if principal is not None and node_id_of(principal) is not None:
                await self.request_credentials({principal})
        else:
            self.rejections.reject(cause, what)


def _resyncing(peer: PeerStats) -> bool:
    """Whether the peer's heartbeats say it is getting its documents back after a store loss."""
    return peer.heartbeat.get(RESYNC_KEY) is True


def _uptime(payload: dict[str, Any]) -> float | None:
    """How long the sender's instance has run, as its heartbeat says (None: not said)."""
    value = payload.get("uptime")
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        return None
    return float(value)
