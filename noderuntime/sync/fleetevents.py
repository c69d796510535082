"""Fleet events (issue 12 §1): transitions of workloads on every node, seen at a hub within
seconds. Ephemeral, never CRDT writes: history must not grow with telemetry.

A node publishes a signed EVENT message (the heartbeat's layout: sender, time, JSON payload,
Ed25519 signature) on ``nr.<fleet>.ev.<site>.<node>`` for each transition the reconciler
records that an operator watches: a crash, unhealthy, recovered, or a rollout step. A hub
subscribes to ``nr.<fleet>.ev.>``. Pure parts here; the engine wires them.

Bounds, at both ends:

- a sender publishes at most ``SEND_BURST`` events at once and ``SEND_RATE_PER_S`` a second
  (a workload flapping in a crash loop cannot flood a metered link); the rest are counted;
- a receiver takes at most ``RECEIVE_BURST``/``RECEIVE_RATE_PER_S`` per sender, remembers
  ``REPLAY_MEMORY`` signatures (a replayed event is dropped), refuses an event older than
  ``MAX_AGE_S`` by its clock, and keeps the newest ``BUFFER_EVENTS`` in a ring.
"""

from __future__ import annotations

import asyncio
import collections
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from noderuntime.sync.bounded import Budget, LruTable

BUFFER_EVENTS = 1000
REPLAY_MEMORY = 4096
MAX_AGE_S = 120.0
MAX_PAYLOAD_BYTES = 4096
MAX_MESSAGE_CHARS = 512
SEND_RATE_PER_S = 5.0
SEND_BURST = 20.0
RECEIVE_RATE_PER_S = 10.0
RECEIVE_BURST = 40.0
MAX_SENDERS = 4096

# Reconciler event kinds worth a fleet event (phase and health transitions, rollout steps).
WATCHED_KINDS = frozenset({"phase", "health", "rollout"})


def classify(kind: str, message: str) -> str | None:
    """The fleet transition a reconciler event stands for, or None if it is not one.

    ``phase`` events read ``"<old> -> <new> <why>"``; ``health`` events ``"health is now X"``.
    """
    if kind == "rollout":
        return "rollout"
    if kind == "health":
        return "unhealthy" if "now unhealthy" in message else None
    if kind != "phase":
        return None
    old, sep, rest = message.partition(" -> ")
    new = rest.split(" ", 1)[0] if sep else ""
    if new == "Failed":
        return "crash"
    if new == "Unhealthy":
        return "unhealthy"
    if new == "Running" and old in ("Failed", "Unhealthy"):
        return "recovered"
    return None


def event_payload(
    *, node: str, site: str, workload: str, transition: str, kind: str, message: str, ts: float
) -> bytes:
    return json.dumps(
        {
            "node": node,
            "site": site,
            "workload": workload,
            "transition": transition,
            "kind": kind,
            "message": message[:MAX_MESSAGE_CHARS],
            "ts": ts,
        },
        sort_keys=True,
    ).encode()


@dataclass(frozen=True)
class FleetEvent:
    ts: float  # when it happened, by the sender's clock
    received: float  # when this node got it
    node: str
    site: str | None
    workload: str
    transition: str
    kind: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "ts": self.ts,
            "received": self.received,
            "node": self.node,
            "site": self.site,
            "workload": self.workload,
            "transition": self.transition,
            "kind": self.kind,
            "message": self.message,
        }


def parse_event(
    payload: Mapping[str, Any], *, node: str, site: str | None, received: float
) -> FleetEvent | None:
    """The event a verified payload carries (its ``node`` must be the signer's), or None."""
    if payload.get("node") != node:
        return None
    fields = ("workload", "transition", "kind", "message")
    if not all(isinstance(payload.get(f), str) for f in fields):
        return None
    ts = payload.get("ts")
    if not isinstance(ts, int | float):
        return None
    return FleetEvent(
        ts=float(ts),
        received=received,
        node=node,
        site=site,
        workload=str(payload["workload"])[:256],
        transition=str(payload["transition"])[:32],
        kind=str(payload["kind"])[:32],
        message=str(payload["message"])[:MAX_MESSAGE_CHARS],
    )


class SendLimit:
    """The sender's own budget: excess events are dropped and counted, never queued."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._budget = Budget(SEND_RATE_PER_S, SEND_BURST, clock)
        self.dropped = 0

    def allow(self) -> bool:
        if self._budget.take():
            return True
        self.dropped += 1
        return False


class FleetEvents:
    """The receiver's side: admission (replay, age, per-sender budget) and the bounded ring.

    ``wait_newer`` lets a follower block until an event newer than the one it saw arrives.
    """

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.events: collections.deque[tuple[int, FleetEvent]] = collections.deque(
            maxlen=BUFFER_EVENTS
        )
        self._seq = 0
        self._seen: LruTable[bytes, None] = LruTable(REPLAY_MEMORY)
        self._budgets: LruTable[str, Budget] = LruTable(MAX_SENDERS)
        self._changed = asyncio.Event()
        self.refused: collections.Counter[str] = collections.Counter()

    def admit(self, signature: bytes, sender: str, sent_at: float) -> str | None:
        """None if an event signed ``signature`` by ``sender`` at ``sent_at`` may be taken,
        else why not (``replayed``, ``stale``, ``overload``)."""
        if signature in self._seen:
            return "replayed"
        if abs(self.clock() - sent_at) > MAX_AGE_S:
            return "stale"
        budget = self._budgets.get(sender)
        if budget is None:
            budget = Budget(RECEIVE_RATE_PER_S, RECEIVE_BURST, self.clock)
            self._budgets[sender] = budget
        if not budget.take():
            return "overload"
        self._seen[signature] = None
        return None

    def refuse(self, why: str) -> None:
        self.refused[why] += 1

    def add(self, event: FleetEvent) -> None:
        self._seq += 1
        self.events.append((self._seq, event))
        self._changed.set()
        self._changed = asyncio.Event()

    def since(self, seq: int) -> list[tuple[int, FleetEvent]]:
        return [(s, e) for s, e in self.events if s > seq]

    @property
    def last_seq(self) -> int:
        return self._seq

    async def wait_newer(self, seq: int) -> None:
        while self._seq <= seq:
            await self._changed.wait()
