"""Everything this node sends: encoded, signed where the protocol says, counted, and published
on the channel only while it is connected (a message that cannot go now is not queued:
anti-entropy repairs whatever it would have carried).

- Updates go out as they were signed, in as few messages as the size bounds allow; an update
  no receiver would accept is counted as undeliverable and logged once per document.
- State vectors and heartbeats are signed with the node's identity.
- An extra ("answer") heartbeat goes out at most every ``HEARTBEAT_ANSWER_MIN_INTERVAL_S`` on
  top of the ticks, when a peer comes up or a leaf link does.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from noderuntime.crdt.state import StateStore
from noderuntime.errors import ChannelError
from noderuntime.identity.keys import Identity
from noderuntime.sync import protocol
from noderuntime.sync.antientropy import StateReplies, batch_deliverable
from noderuntime.sync.channel import Channel
from noderuntime.sync.counters import Counters
from noderuntime.sync.peers import PeerStats
from noderuntime.sync.protocol import WireUpdate
from noderuntime.sync.scopes import Scopes
from noderuntime.sync.settings import SyncSettings

HEARTBEAT_ANSWER_MIN_INTERVAL_S = 0.25


class Outbound:
    def __init__(
        self,
        channel: Channel,
        settings: SyncSettings,
        identity: Identity,
        state: StateStore,
        scopes: Scopes,
        counters: Counters,
        replies: StateReplies,
        *,
        log: logging.Logger,
        clock: Callable[[], float],
        health: Callable[[], Mapping[str, Any]] | None = None,
    ) -> None:
        self.channel = channel
        self.settings = settings
        self.identity = identity
        self.state = state
        self.scopes = scopes
        self.counters = counters
        self.replies = replies
        self.log = log
        self.clock = clock
        self._health = health
        self.connected = False
        self._undeliverable_logged: set[str] = set()
        # Heartbeats are numbered per process start, so replays are told from a clock step;
        # the start's random id and how long it has run tell two instances of one node apart
        # (noderuntime.sync.instances).
        self.boot = secrets.token_hex(8)
        self._started = time.monotonic()
        self._heartbeat_n = 0
        # Why this instance sends nothing (a live twin of it started earlier), or None.
        self.suspended: str | None = None
        self._last_answer_heartbeat = -HEARTBEAT_ANSWER_MIN_INTERVAL_S

    def uptime(self) -> float:
        """Seconds since this instance started (monotonic: no wall clock is trusted here)."""
        return time.monotonic() - self._started

    async def publish(self, subject: str, data: bytes, peer: PeerStats | None = None) -> None:
        if not self.connected or self.suspended is not None:
            return
        try:
            await self.channel.publish(subject, data)
        except ChannelError as exc:
            self.log.debug("publish to %s failed: %s", subject, exc)
            return
        self.counters.messages_out += 1
        self.counters.bytes_out += len(data)
        if peer is not None:
            peer.bytes_out += len(data)

    async def send_updates(
        self, subject: str, doc: str, updates: Sequence[WireUpdate], peer: PeerStats | None = None
    ) -> None:
        for data in self._batches(doc, updates):
            await self.publish(subject, data, peer)

    def _batches(self, doc: str, updates: Sequence[WireUpdate]) -> list[bytes]:
        s = self.settings
        messages, left_out = batch_deliverable(
            s.node_id, doc, updates, s.max_message_bytes, s.max_update_bytes
        )
        if left_out:
            self.counters.updates_undeliverable += left_out
            if doc not in self._undeliverable_logged:
                self._undeliverable_logged.add(doc)
                self.log.warning(
                    "sync: %d update(s) of %s exceed what receivers accept (%d bytes); "
                    "they are not sent",
                    left_out,
                    doc,
                    s.max_update_bytes,
                )
        return messages

    async def send_state(
        self, doc: str, *, target: PeerStats | None = None, subject: str | None = None
    ) -> None:
        """Our state vector of ``doc``: to ``subject`` (``target``'s inbox), else to the
        document's state subject."""
        sv = self.state.state_vector(doc)
        part = protocol.state_signed_part(
            self.settings.principal, doc, target.node_id if target else "", self.clock(), sv
        )
        data = part + self.identity.sign(protocol.signing_bytes(part))
        if subject is None:
            subject = self.scopes.state_subject(doc)
            if subject is None:
                return
        await self.publish(subject, data, target)
        self.counters.state_sent += 1
        if target is not None:
            # It answers this with what we lack: no need to answer its own state vector too.
            self.replies.sent(target.node_id, doc)

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
        payload["boot"] = self.boot
        payload["n"] = self._heartbeat_n
        payload["uptime"] = round(self.uptime(), 1)
        return payload

    async def send_event(self, payload: bytes) -> None:
        """Publish one fleet event (signed like a heartbeat; :mod:`.fleetevents`)."""
        s = self.settings
        part = protocol.event_signed_part(s.principal, self.clock(), payload)
        data = part + self.identity.sign(protocol.signing_bytes(part))
        await self.publish(protocol.event_subject(s.fleet, s.site, s.node_id), data)

    async def send_heartbeat(self) -> None:
        s = self.settings
        payload = json.dumps(self.heartbeat_payload(), sort_keys=True, default=str).encode()
        part = protocol.heartbeat_signed_part(s.principal, self.clock(), payload)
        data = part + self.identity.sign(protocol.signing_bytes(part))
        await self.publish(protocol.heartbeat_subject(s.fleet, s.site, s.node_id), data)
        self.counters.heartbeats_sent += 1

    async def answer_heartbeat(self) -> None:
        """An extra heartbeat now, at most every HEARTBEAT_ANSWER_MIN_INTERVAL_S."""
        now = time.monotonic()
        if now - self._last_answer_heartbeat < HEARTBEAT_ANSWER_MIN_INTERVAL_S:
            return
        self._last_answer_heartbeat = now
        await self.send_heartbeat()

    async def send_credentials(self, blobs: Sequence[bytes]) -> None:
        subject = protocol.credentials_subject(self.settings.fleet)
        for data in protocol.batch_credentials(blobs, self.settings.max_message_bytes):
            await self.publish(subject, data)

    async def request_credentials(self, principals: Sequence[str]) -> None:
        await self.publish(
            protocol.credentials_subject(self.settings.fleet),
            protocol.encode_credential_request(principals),
        )
        self.counters.credentials_requested += len(principals)
