"""Who is up and since when: peers (from heartbeats) and leaf links (from ``/leafz``). Pure.

Both are transitions with the time they happened, recorded when they happen rather than when
someone asks (issue 9: ``peers`` showed a link's ``since`` as the time a ``peers`` or
``status`` call first noticed the change, and a peer going down was never logged).

- **Peers.** A peer is up while it was heard from within ``timeout_s`` (the engine's
  ``PEER_TIMEOUT_HEARTBEATS`` heartbeat intervals), as :meth:`PeerStats.is_up` says. It went
  down at ``last heard + timeout_s``: that is the time a down transition carries, however
  late a tick notices it. A heartbeat after a silence that no tick noticed yields the down
  transition first, then the up one, so the log never shows a peer coming up twice.
- **Links.** Each poll of ``/leafz`` is compared with the last: a link whose state changed,
  or that is a new connection (a redial gets a new connection id), starts a new ``since``
  at the poll's time. Configured peers are always present (up or down); an inbound link
  that is gone is reported down once and forgotten.

No clock, no I/O: times are passed in, so the rules are tested with plain numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Transition:
    """``key`` (a peer's node id, or a link) went up or down at ``at``."""

    key: str
    up: bool
    at: float
    #: For a down transition, when it had been up since (None if never seen up).
    up_since: float | None = None


class PeerLiveness:
    """Up/down transitions of peers from when each was heard. Times are the caller's clock."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        # node -> (up since, last heard); only peers currently up.
        self._up: dict[str, tuple[float, float]] = {}

    def heard(self, node: str, at: float) -> list[Transition]:
        """``node`` was heard from at ``at``: its transitions, if this brings it up."""
        out = self._expire(node, at)
        if node in self._up:
            since, _ = self._up[node]
            self._up[node] = (since, at)
            return out
        self._up[node] = (at, at)
        return [*out, Transition(node, True, at)]

    def due(self, now: float) -> list[Transition]:
        """Peers silent for longer than the timeout, each down as of its last heard + timeout."""
        out: list[Transition] = []
        for node in sorted(self._up):
            out += self._expire(node, now)
        return out

    def is_up(self, node: str) -> bool:
        return node in self._up

    def _expire(self, node: str, now: float) -> list[Transition]:
        entry = self._up.get(node)
        if entry is None or now - entry[1] <= self.timeout_s:
            return []
        since, last = self._up.pop(node)
        return [Transition(node, False, last + self.timeout_s, up_since=since)]


@dataclass(frozen=True)
class LinkState:
    up: bool
    since: float
    #: nats-server's connection id while up: a redial is a new link (a new ``since``).
    conn: int | None = None


def observe_links(
    table: Mapping[str, LinkState], seen: Mapping[str, tuple[bool, int | None]], now: float
) -> tuple[dict[str, LinkState], list[Transition]]:
    """The link table after a poll at ``now`` that saw ``seen`` (key -> (up, connection id)).

    A key in the table but not in ``seen`` (an inbound link that closed) goes down and is
    dropped. A key seen for the first time while down (a configured peer at start) is
    recorded without a transition.
    """
    new: dict[str, LinkState] = {}
    changes: list[Transition] = []
    for key, (up, conn) in seen.items():
        old = table.get(key)
        if old is not None and old.up == up and (not up or old.conn == conn):
            new[key] = old
            continue
        new[key] = LinkState(up, now, conn if up else None)
        if old is not None and old.up:
            changes.append(Transition(key, False, now, up_since=old.since))
        if up:
            changes.append(Transition(key, True, now))
    for key, old in table.items():
        if key not in seen and old.up:
            changes.append(Transition(key, False, now, up_since=old.since))
    return new, changes
