"""Resync after a store loss: when a held node has its documents back from a peer (pure).

A node whose store lost what it had holds its containers (``crdt/mark.py``). If it is enrolled,
what it lost lives on at its hub: the fleet document, its site's, and its own ``node/<id>`` (a
hub holds every node's). While held, the node

- says so in its heartbeats (``"resync": true``): a peer then answers each of its state vectors
  with its own state vector too, after the updates the node lacks, even when there is nothing
  to send (so the node learns that it lacks nothing);
- sends, in every anti-entropy round, its state vector of each document to every live hub
  (:func:`plan_resync`), besides the usual round.

**The hold lifts by itself** once one peer has given *all* of the node's documents back
(:class:`ResyncWatch`): for each of them (fleet, ``site/<s>``, ``node/<id>``), a state vector
of that peer, received since the hold began,

1. holds nothing this node lacks (the updates it sent came first, in order, on the same
   inbox), and
2. covers what this node had before the loss, as its mark recorded it (the ``baseline``):
   ``node/<id>`` clock by clock, the fleet and site documents by their count of CRDT
   operations. So an empty or stale peer (a rebuilt hub, one restored from an old backup)
   cannot lift it, and a node that had changes no peer ever received stays held and says so.

Nothing else lifts it but ``reset --i-mean-it`` or a ``restore`` (with the node stopped).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from noderuntime.sync.acl import ROLE_HUB, parse_doc
from noderuntime.sync.antientropy import Announcement
from noderuntime.sync.scopes import Scopes

# The heartbeat key a held node sets.
RESYNC_KEY = "resync"


@dataclass(frozen=True)
class Baseline:
    """What the node had before the loss: per document, a count of CRDT operations, and for
    documents recorded clock by clock (its own), the state vector."""

    units: Mapping[str, int] = field(default_factory=dict)
    clocks: Mapping[str, Mapping[int, int]] = field(default_factory=dict)

    def covered_by(self, doc: str, sv: Mapping[int, int]) -> bool:
        if doc in self.clocks:
            return all(sv.get(c, 0) >= clock for c, clock in self.clocks[doc].items())
        return sum(sv.values()) >= self.units.get(doc, 0)


class ResyncWatch:
    """Follows the state vectors peers send a held node; calls ``on_done(peer)`` once one peer
    gave all of ``docs`` back (see the module docstring). Active while ``holding()`` says the
    node holds; ``baseline`` is what it had before the loss."""

    def __init__(
        self,
        docs: Iterable[str],
        baseline: Baseline,
        *,
        holding: Callable[[], bool],
        on_done: Callable[[str], None],
    ) -> None:
        self.docs = tuple(docs)
        self.baseline = baseline
        self._holding = holding
        self._on_done = on_done
        self.done_by: str | None = None
        self._back: dict[str, set[str]] = {}  # peer -> documents it gave back

    @property
    def active(self) -> bool:
        return self.done_by is None and self._holding()

    def compared(self, peer: str, doc: str, peer_sv: Mapping[int, int], lacking: int) -> None:
        """A state vector of ``doc`` from ``peer`` was compared with ours: we lack ``lacking``."""
        if doc not in self.docs or not self.active:
            return
        back = self._back.setdefault(peer, set())
        if lacking == 0 and self.baseline.covered_by(doc, peer_sv):
            back.add(doc)
        else:
            back.discard(doc)
        if back.issuperset(self.docs):
            self.done_by = peer
            self._on_done(peer)

    def view(self) -> dict[str, Any]:
        return {
            "active": self.active,
            "docs": list(self.docs),
            "back_from": {p: sorted(d) for p, d in sorted(self._back.items()) if d},
            "done_by": self.done_by,
        }


def plan_resync(doc_names: Iterable[str], scopes: Scopes, now: float) -> list[Announcement]:
    """Our state vector of every document we hold, to every live hub holding it."""
    out: list[Announcement] = []
    for name in doc_names:
        doc = parse_doc(name)
        if doc is None or not scopes.may_hold(doc):
            continue
        for peer in scopes.holders(doc, now):
            if peer.role != ROLE_HUB:
                continue
            inbox = scopes.inbox_of_node(peer.node_id)
            if inbox is not None:
                out.append(Announcement(name, peer, inbox))
    return out
