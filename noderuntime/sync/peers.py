"""The peer table: what this node knows of every other node, from its heartbeats and messages.

Pure data and decisions, no I/O: the engine feeds it what it verified and reads views from it.

- A peer is **up** while its last fresh heartbeat is at most ``PEER_TIMEOUT_HEARTBEATS``
  heartbeat intervals old (the table's ``timeout_s``); ``up_since`` is when it last came up.
  Its transitions up and down, with the time each happened, come from
  :class:`noderuntime.sync.liveness.PeerLiveness` (the same rule), so both are logged.
- A heartbeat is **fresh** by its (boot, n) counter, not its time, once this node has accepted
  one of that boot; the first one of a boot must be at most ``HEARTBEAT_MAX_AGE_S`` old by our
  clock (:func:`heartbeat_freshness`).
- Only verified messages reach the table; its counters are per peer (bytes and messages in,
  bytes out, updates applied) and the gap to it per document (``behind_by``/``ahead_by``).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from noderuntime import codec
from noderuntime.sync.liveness import PeerLiveness, Transition

PEER_TIMEOUT_HEARTBEATS = 3
MAX_BOOTS_REMEMBERED = 16
# How old (by the receiver's clock) the first heartbeat of a boot, or a state vector, may be.
# A receiver that restarted remembers no counters, so without this a replayed heartbeat of a
# node that has stopped would show it up. Generous: clocks a few minutes apart still sync; a
# peer whose clock is further behind ours is refused (``stale``, its lag in the log).
HEARTBEAT_MAX_AGE_S = 300.0
MAX_HEARTBEAT_PAYLOAD_BYTES = 64 * 1024


class Freshness(enum.Enum):
    FRESH = "fresh"
    REPLAYED = "replayed"  # seen before (its counter, or its time for peers without one)
    STALE = "stale"  # older than HEARTBEAT_MAX_AGE_S by our clock


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
    # Highest heartbeat counter seen per boot of the peer (replay check; see heartbeat_freshness).
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

    def received(self, size: int) -> None:
        """A verified message of ``size`` bytes came from this peer."""
        self.bytes_in += size
        self.messages_in += 1


class PeerTable:
    """Every peer heard from, by node id; ``timeout_s`` decides who is up."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.peers: dict[str, PeerStats] = {}
        self.liveness = PeerLiveness(timeout_s)

    def peer(self, node_id: str) -> PeerStats:
        """The peer's entry, created on first sight."""
        peer = self.peers.get(node_id)
        if peer is None:
            peer = self.peers[node_id] = PeerStats(node_id)
        return peer

    def get(self, node_id: str) -> PeerStats | None:
        return self.peers.get(node_id)

    def is_up(self, peer: PeerStats, now: float) -> bool:
        return peer.is_up(now, self.timeout_s)

    def up(self, now: float) -> list[PeerStats]:
        return [p for p in self.peers.values() if p.is_up(now, self.timeout_s)]

    def views(self, now: float) -> list[dict[str, Any]]:
        return [p.view(now, self.timeout_s) for _, p in sorted(self.peers.items())]

    def heard_heartbeat(
        self,
        peer: PeerStats,
        *,
        site: str | None,
        role: str,
        ts: float,
        payload: dict[str, Any],
        size: int,
        now: float,
    ) -> list[Transition]:
        """Record a verified, fresh heartbeat; the peer's transitions if it was down until now
        (a down one first if no :meth:`due` noticed its silence, then the up one)."""
        was_up = peer.is_up(now, self.timeout_s)
        peer.last_heard = now
        peer.last_heartbeat_ts = ts
        peer.heartbeat = payload
        peer.received(size)
        peer.site = site or peer.site
        peer.role = role
        peer.sovereign = bool(payload.get("sovereign", False))
        if not was_up:
            peer.up_since = now
        return self.liveness.heard(peer.node_id, now)

    def due(self, now: float) -> list[Transition]:
        """Peers that went silent since the last call, each down as of when it happened."""
        return self.liveness.due(now)


def parse_heartbeat_payload(raw: bytes) -> dict[str, Any] | None:
    """A heartbeat's JSON payload as a dict, or None if it is not one (bounded decoding)."""
    try:
        payload = codec.loads(raw, max_bytes=MAX_HEARTBEAT_PAYLOAD_BYTES)
    except codec.DecodeError:
        return None
    return payload if isinstance(payload, dict) else None


def heartbeat_freshness(
    peer: PeerStats, ts: float, payload: Mapping[str, Any], now: float
) -> Freshness:
    """Whether a signed heartbeat is new rather than replayed; remembers it if so.

    Judged by its (boot, n) counter, not its time, once a heartbeat of that boot was accepted:
    a peer whose clock steps backwards (NTP after a dead RTC battery) would otherwise have every
    later heartbeat refused and stay down for as long as the step. A boot never seen is a
    restart of the peer, or a receiver that restarted and remembers nothing: its heartbeat must
    then be at most ``HEARTBEAT_MAX_AGE_S`` old by our clock, or an old capture replayed would
    pass. The last few boots are remembered so their old heartbeats stay refused. Peers that
    send no counter are judged by time alone.
    """
    boot, n = payload.get("boot"), payload.get("n")
    if not isinstance(boot, str) or not isinstance(n, int) or isinstance(n, bool):
        if ts <= peer.last_heartbeat_ts:
            return Freshness.REPLAYED
        return Freshness.STALE if now - ts > HEARTBEAT_MAX_AGE_S else Freshness.FRESH
    last = peer.boots.get(boot)
    if last is not None and n <= last:
        return Freshness.REPLAYED
    if last is None and now - ts > HEARTBEAT_MAX_AGE_S:
        return Freshness.STALE
    peer.boots.pop(boot, None)
    peer.boots[boot] = n  # newest last, so the oldest boot is forgotten first
    while len(peer.boots) > MAX_BOOTS_REMEMBERED:
        del peer.boots[next(iter(peer.boots))]
    return Freshness.FRESH
