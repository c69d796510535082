"""Anti-entropy planning: whom to send our state vectors, and what to answer theirs with.

Pure decisions, no I/O (the engine signs and publishes):

- **A round** (:func:`plan_round`) announces our state vector of every document we hold to
  one peer each: one of ``prefer`` (peers whose link just healed) if any holds the document,
  else a random live holder; with none known, or after a leaf link of ours came up
  (``link_healed``) and no ``prefer`` peer holds it, to everyone subscribed to the document's
  state subject.
- **An answer** to a peer's state vector is exactly the stored updates it lacks (the engine
  asks the store: an index lookup, O(missing)), in as few messages as the size bounds allow
  (:func:`batch_deliverable`), plus our own state vector if it has something we lack — at most
  every ``STATE_REPLY_MIN_INTERVAL_S`` per peer and document (:class:`StateReplies`), counting
  the one we sent it ourselves, since both sides start a round when a link heals.
- **Only what we integrated** is sent as a repair (:func:`integrated_only`): an update waiting
  for a predecessor that never came is held, not resent at every round.
- **Repairs** to one peer for one document: a few at once, then at most one every
  ``REPAIR_MIN_INTERVAL_S`` (:class:`Repairs`), so replayed announcements cannot make us send
  the same updates again and again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from noderuntime.crdt.clocks import UpdateFormatError, parse_update, units_behind
from noderuntime.crdt.store import StoredUpdate
from noderuntime.sync import protocol
from noderuntime.sync.acl import parse_doc
from noderuntime.sync.bounded import Buckets, RateLimit
from noderuntime.sync.peers import PeerStats
from noderuntime.sync.protocol import WireUpdate
from noderuntime.sync.scopes import Scopes

STATE_REPLY_MIN_INTERVAL_S = 0.5
REPAIR_MIN_INTERVAL_S = 0.5
REPAIR_BURST = 4
# (peer, document) pairs remembered by the reply and repair limits.
MAX_REPLY_KEYS = 16_384


@dataclass(frozen=True)
class Announcement:
    """Send our state vector of ``doc`` to ``target``'s ``inbox``, or (both None) to the
    document's state subject."""

    doc: str
    target: PeerStats | None = None
    inbox: str | None = None


def plan_round(
    doc_names: Iterable[str],
    scopes: Scopes,
    now: float,
    *,
    prefer: set[str] | None = None,
    link_healed: bool = False,
    choose: Callable[[Sequence[PeerStats]], PeerStats],
) -> list[Announcement]:
    """One announcement per document we hold (see the module docstring)."""
    out: list[Announcement] = []
    for name in doc_names:
        doc = parse_doc(name)
        if doc is None or not scopes.may_hold(doc):
            continue
        holders = scopes.holders(doc, now)
        preferred = [p for p in holders if prefer and p.node_id in prefer]
        pool = preferred or ([] if link_healed else holders)
        if not pool:
            out.append(Announcement(name))
            continue
        peer = choose(pool)
        inbox = scopes.inbox_of_node(peer.node_id)
        out.append(Announcement(name) if inbox is None else Announcement(name, peer, inbox))
    return out


def compare(ours: Mapping[int, int], theirs: Mapping[int, int]) -> tuple[int, int]:
    """(units they lack, units we lack) between two decoded state vectors."""
    return units_behind(ours, theirs), units_behind(theirs, ours)


def integrated_only(
    updates: Sequence[StoredUpdate], integrated: Mapping[int, int]
) -> tuple[list[StoredUpdate], int]:
    """The updates this node has integrated, and how many it holds but has not.

    A stored update whose predecessors never came (a chain with a gap, which a stolen key can
    sign on purpose) waits un-integrated here and at every peer: sending it again helps no one,
    and would resend the whole tail after the gap at every round, to every peer, forever.
    Whoever has the missing part is ahead of us, answers our state vector with it, and then the
    tail integrates here and goes out with the next round.
    """
    out: list[StoredUpdate] = []
    for u in updates:
        try:
            ranges = parse_update(u.data).ranges
        except UpdateFormatError:
            continue
        if all(end <= integrated.get(client, 0) for client, (_, end) in ranges.items()):
            out.append(u)
    return out, len(updates) - len(out)


def wire(u: StoredUpdate) -> WireUpdate:
    return WireUpdate(u.author, u.signature, u.ts, u.meta, u.data)


def batch_deliverable(
    sender: str,
    doc: str,
    updates: Sequence[WireUpdate],
    max_message_bytes: int,
    max_update_bytes: int,
) -> tuple[list[bytes], int]:
    """UPDATES messages for ``updates`` within the size bounds, and how many were left out.

    An update left out was stored before writes were bounded (or the limits differ): it is
    never sendable, and a message holding one would be refused whole by every receiver.
    """
    ok = [
        u
        for u in updates
        if protocol.deliverable(u, max_message_bytes, max_update_bytes, sender=sender, doc=doc)
    ]
    messages = protocol.batch_updates(sender, doc, ok, max_message_bytes, max_update_bytes)
    return messages, len(updates) - len(ok)


class StateReplies:
    """When we last sent a peer our state vector of a document (ours or in answer to its)."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        on_evict: Callable[[], None] | None = None,
    ) -> None:
        self._last: RateLimit[tuple[str, str]] = RateLimit(
            STATE_REPLY_MIN_INTERVAL_S, clock, cap=MAX_REPLY_KEYS, on_evict=on_evict
        )

    def sent(self, node_id: str, doc: str) -> None:
        self._last.mark((node_id, doc))

    def due(self, node_id: str, doc: str) -> bool:
        """Whether to answer now with our state vector (then it counts as sent)."""
        return self._last.allow((node_id, doc))


class Repairs:
    """How often we answer one peer's state vector of one document with repairs.

    A state vector costs its sender one signature and us a store lookup and maybe megabytes of
    updates: a peer replaying its old announcements (or a stolen key) must not make us send
    the same repairs again and again. Per peer and document, a token bucket: ``REPAIR_BURST``
    answers at once (a round, a heal and a reconnect close together all get theirs), then one
    every ``REPAIR_MIN_INTERVAL_S``; whatever a refused announcement asked for goes with the
    next round.
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        on_evict: Callable[[], None] | None = None,
    ) -> None:
        self._buckets: Buckets[tuple[str, str]] = Buckets(
            1 / REPAIR_MIN_INTERVAL_S, REPAIR_BURST, clock, cap=MAX_REPLY_KEYS, on_evict=on_evict
        )

    def due(self, node_id: str, doc: str) -> bool:
        """Whether to send repairs now (then it counts as sent)."""
        return self._buckets.take((node_id, doc))
