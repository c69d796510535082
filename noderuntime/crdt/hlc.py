"""Hybrid logical clocks for whole-record writes: later wins, whoever's client sorts first.

A write of a record (a workload spec, a lock, an override) carries an HLC: the writer's wall
clock in milliseconds, or one tick past the newest version of that record the writer holds if
that is later (a clock behind, or two writes in one millisecond). So a write that saw another
is always later than it, and of two concurrent writes the one made later by the wall clock
wins; equal HLCs go to the higher client id (see :mod:`noderuntime.crdt.records`).

Encoding (in signed record values and update meta): ``"<wall_ms>:<counter>"``.
A record written before HLCs existed has :data:`ZERO`.

(Not to be confused with :mod:`noderuntime.crdt.clocks`: the CRDT's own per-client counters.)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Both parts fit a JSON number exactly and an SQLite integer.
MAX_PART = 2**53 - 1
_HLC_RE = re.compile(r"([0-9]{1,16}):([0-9]{1,16})\Z")


@dataclass(frozen=True, order=True)
class Hlc:
    wall_ms: int
    counter: int = 0

    def encode(self) -> str:
        return f"{self.wall_ms}:{self.counter}"

    @classmethod
    def decode(cls, text: object) -> Hlc:
        """Parse :meth:`encode`'s form; raises ValueError on anything else."""
        m = _HLC_RE.match(text) if isinstance(text, str) else None
        if m is None:
            raise ValueError(f"not an HLC: {text!r:.40}")
        wall, counter = int(m.group(1)), int(m.group(2))
        if wall > MAX_PART or counter > MAX_PART:
            raise ValueError(f"HLC out of range: {text!r:.40}")
        return cls(wall, counter)

    @property
    def wall_s(self) -> float:
        return self.wall_ms / 1000


ZERO = Hlc(0, 0)


def next_hlc(seen: Hlc, now_s: float) -> Hlc:
    """The HLC of a write made at wall time ``now_s`` that has seen ``seen``."""
    wall = min(int(now_s * 1000), MAX_PART)
    if wall > seen.wall_ms:
        return Hlc(wall, 0)
    return Hlc(seen.wall_ms, min(seen.counter + 1, MAX_PART))
