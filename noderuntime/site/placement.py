"""Which node should run each slot of a site-placed workload. Pure: no I/O, no clock.

Rendezvous (highest random weight) hashing: every node scores every (workload, slot) with a hash
of the three, and the highest score wins. Removing a node moves only what that node held; adding
one moves only what it now wins. Preference only decides who campaigns for a *free* slot: a slot
that is held stays with its holder (leases decide, ``site/lease.py``), so a flapping node moves
nothing that is running elsewhere.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

# Key characters NATS KV accepts, and the separator between a workload and its slot number.
SLOT_SEPARATOR = "."


@dataclass(frozen=True)
class Candidate:
    """What this node knows of one member of its site."""

    node_id: str
    labels: Mapping[str, str] = field(default_factory=dict)
    up: bool = True
    runtime_ok: bool = True
    # Drained by a technician (`noderuntime site drain`): holds nothing until uncordoned.
    cordoned: bool = False
    # A witness votes in the site cluster but never runs workloads.
    witness: bool = False


def matches(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def eligible(candidates: Iterable[Candidate], selector: Mapping[str, str]) -> list[str]:
    """Node ids that may hold a slot of a workload with this ``nodeSelector``, sorted."""
    return sorted(
        c.node_id
        for c in candidates
        if c.up
        and c.runtime_ok
        and not c.cordoned
        and not c.witness
        and matches(selector, c.labels)
    )


def slot_key(workload: str, slot: int) -> str:
    """The lease key of one slot: workload names are DNS labels, so the key is unambiguous."""
    return f"{workload}{SLOT_SEPARATOR}{slot}"


def parse_slot_key(key: str) -> tuple[str, int] | None:
    workload, sep, slot = key.rpartition(SLOT_SEPARATOR)
    if not sep or not workload or not slot.isascii() or not slot.isdigit() or len(slot) > 3:
        return None
    return workload, int(slot)


def score(node_id: str, workload: str, slot: int) -> int:
    digest = hashlib.blake2b(f"{workload}\0{slot}\0{node_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def ranking(workload: str, slot: int, nodes: Iterable[str]) -> list[str]:
    """``nodes`` from most to least preferred for this slot (ties broken by id: never random)."""
    return sorted(set(nodes), key=lambda n: (-score(n, workload, slot), n))


def campaign_rank(
    workload: str,
    slot: int,
    me: str,
    eligible_nodes: Iterable[str],
    holders: Mapping[int, str],
) -> int | None:
    """My place in the queue for free ``slot`` (0: first), or None if I must not campaign.

    ``holders`` maps the other slots of this workload to their current holders: a node holds at
    most one slot of a workload, so those nodes are out of the queue. A node ranked r campaigns
    r steps later than the first (``lease.LeaseTiming.rank_step_s``), so a preferred node that is
    dead but not yet known to be gets passed over without anyone trusting a liveness guess.
    """
    busy = {node for s, node in holders.items() if s != slot}
    if me in busy:
        return None
    queue = [n for n in ranking(workload, slot, eligible_nodes) if n not in busy]
    # The node whose lease on this slot went unrenewed campaigns last, not first: it is most
    # likely the preferred node that just died, and until its presence goes stale (up to a TTL)
    # it would cost everyone a rank step. Still in the queue: alone, it takes its slot back.
    last = holders.get(slot)
    if last is not None and last != me and last in queue:
        queue.remove(last)
        queue.append(last)
    return queue.index(me) if me in queue else None


def preferred(workload: str, replicas: int, eligible_nodes: Iterable[str]) -> dict[int, str]:
    """Where each slot goes when nothing is held yet: greedy by slot, one slot per node."""
    nodes = list(eligible_nodes)
    out: dict[int, str] = {}
    for slot in range(replicas):
        free = [n for n in ranking(workload, slot, nodes) if n not in out.values()]
        if free:
            out[slot] = free[0]
    return out


def leader_handoff(
    me: str,
    leader: str | None,
    current: Iterable[str],
    holders: Iterable[str],
    lagging: Iterable[str] = (),
) -> str | None:
    """Where the lease stream's leadership should go, or None to leave it where it is.

    Only a leader that holds a slot hands over, and only to a caught-up replica that holds none
    (the first by name, so every node agrees). Why: when a holder that also leads the stream
    loses power, the stream is without a leader for an election (4-9 s), the standbys' view of
    the lease freezes, and a renewal they see only after it restarts their takeover clock
    (``lease.observe``): failover measured 16-22 s instead of 8-9 s. A non-holder that leads is
    never asked to move, so leadership settles and never flaps between holders.

    Only with every replica caught up: a transfer is an election, and with a replica down or
    behind it can take a whole election timeout (measured: 8 s without a leader after a
    partition, longer than a holder's renewals tolerate, so the lease moved). A holder leading
    a degraded stream keeps it until the stream is whole again.
    """
    busy = set(holders)
    if leader != me or me not in busy or any(True for _ in lagging):
        return None
    free = sorted(n for n in current if n not in busy and n != me)
    return free[0] if free else None
