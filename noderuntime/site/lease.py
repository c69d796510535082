"""The lease of one slot: hold only by compare-and-set, fence by time. Pure: the clock is a value.

Every time here is this node's *monotonic* clock (``time.monotonic``): wall-clock steps (NTP, a
technician's ``date -s``) change nothing. The store is a JetStream KV bucket (``site/kv.py``);
its revisions are the fencing tokens. Rules (the margins and clock assumptions are written up in
docs/architecture.md, "Site quorum"):

- A node holds a slot only from the moment a create or update of its key succeeds. A read, a
  watch or a timeout proves nothing; a conflict (someone else's revision) means lost, at once.
- The holder renews every ``renew_every_s`` with ``update(key, value, last=revision)``. It runs
  the instance only while ``now < fence_at = send time of the last good renewal + ttl - margin``;
  past that it stops the instance (with ``stop_grace_s`` before SIGKILL) whether or not it can
  reach anyone. A minority side cannot renew, so it fences itself.
- A taker never trusts the bucket's expiry (a server clock can step): it takes a slot only when
  it has seen the key unchanged for ``ttl + takeover_delay_s`` on its own monotonic clock, plus
  ``rank_step_s`` per node ranked before it. It saw the change at or after the holder sent it,
  so the holder's fence lies at least ``margin + takeover_delay_s`` before the taker's start.
- A holder that releases (drain, shutdown, workload gone) stops its instance first, then deletes
  its key at its revision; a delete lets the next node take the slot at once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from noderuntime.errors import ConfigError

LEASE_VALUE_VERSION = 1
MAX_LEASE_VALUE_BYTES = 512


@dataclass(frozen=True)
class LeaseTiming:
    """Lease durations in seconds; defaults sized in docs/architecture.md ("Site quorum")."""

    ttl_s: float = 8.0
    renew_every_s: float = 1.5
    # The holder stops this long before anyone could take over: stop_grace_s for the stop itself
    # (SIGTERM, then SIGKILL) and the rest for clock-rate drift and a late reconcile pass.
    margin_s: float = 2.5
    takeover_delay_s: float = 0.5
    rank_step_s: float = 1.0
    stop_grace_s: int = 1

    def __post_init__(self) -> None:
        if not 0 < self.renew_every_s < self.ttl_s - self.margin_s:
            raise ConfigError("lease renewal must come well inside ttl - margin")
        if not self.stop_grace_s < self.margin_s:
            raise ConfigError("the lease margin must be longer than the stop grace")
        if self.takeover_delay_s < 0 or self.rank_step_s < 0:
            raise ConfigError("lease delays cannot be negative")

    @property
    def outage_tolerated_s(self) -> float:
        """How long renewals may fail (a KV leader election) before a holder fences itself."""
        return self.ttl_s - self.margin_s


@dataclass(frozen=True)
class LeaseValue:
    """What a lease key holds (JSON). ``since`` is wall time, for people; never for fencing."""

    holder: str
    workload: str
    slot: int
    since: float

    def encode(self) -> bytes:
        return json.dumps(
            {
                "v": LEASE_VALUE_VERSION,
                "holder": self.holder,
                "workload": self.workload,
                "slot": self.slot,
                "since": self.since,
            },
            separators=(",", ":"),
        ).encode()


def decode_lease(raw: bytes | None) -> tuple[LeaseValue | None, str | None]:
    """(value, problem): a corrupt or foreign entry is a problem to show, never an exception."""
    if raw is None:
        return None, "empty value"
    if len(raw) > MAX_LEASE_VALUE_BYTES:
        return None, f"value of {len(raw)} bytes (at most {MAX_LEASE_VALUE_BYTES})"
    try:
        data: Any = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None, "not JSON"
    if not isinstance(data, dict) or data.get("v") != LEASE_VALUE_VERSION:
        return None, "unknown lease format"
    holder, workload, slot, since = (data.get(k) for k in ("holder", "workload", "slot", "since"))
    if not (
        isinstance(holder, str)
        and holder
        and isinstance(workload, str)
        and isinstance(slot, int)
        and not isinstance(slot, bool)
        and isinstance(since, int | float)
        and not isinstance(since, bool)
    ):
        return None, "lease fields missing or of the wrong type"
    return LeaseValue(holder, workload, slot, float(since)), None


@dataclass(frozen=True)
class Observed:
    """The last state of one lease key this node saw, and when it first saw it (monotonic)."""

    revision: int | None  # None: no entry (never written, or deleted)
    holder: str | None
    seen_at: float
    released: bool = False  # deleted by its holder: free at once
    problem: str | None = None  # the entry is corrupt or foreign


@dataclass(frozen=True)
class Held:
    """A slot this node holds: the revision it wrote last and when it sent that write."""

    revision: int
    last_good_send: float
    acquired_at: float  # monotonic
    acquired_wall: float  # for status only


def fence_at(held: Held, timing: LeaseTiming) -> float:
    return held.last_good_send + timing.ttl_s - timing.margin_s


def holds(held: Held | None, now: float, timing: LeaseTiming) -> bool:
    return held is not None and now < fence_at(held, timing)


def renew_due(held: Held, timing: LeaseTiming) -> float:
    return held.last_good_send + timing.renew_every_s


def take_at(obs: Observed, rank: int, timing: LeaseTiming) -> float:
    """When a node at ``rank`` in the campaign queue may try to take the slot."""
    queue_delay = rank * timing.rank_step_s
    if obs.released:
        return obs.seen_at + queue_delay
    return obs.seen_at + timing.ttl_s + timing.takeover_delay_s + queue_delay


def observe(
    prev: Observed | None,
    revision: int | None,
    holder: str | None,
    now: float,
    *,
    deleted: bool = False,
    problem: str | None = None,
) -> Observed:
    """Fold one read or watch event into what we know; ``seen_at`` moves only on a change.

    An entry that merely expired (the bucket's max age) reads as absent but is no change: the
    clock keeps running from the last write we saw, so expiry never speeds up a takeover.
    """
    if prev is not None and revision is None and not deleted:
        return prev
    if prev is not None and prev.revision == revision and prev.released == deleted:
        return prev
    return Observed(revision, holder, now, released=deleted, problem=problem)
