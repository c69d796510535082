"""Waves, and which spec a node runs during a rollout. Pure.

A wave is a selector (``site=lab``, ``label=ring=canary``) or a cumulative percentage (``10%``).
A node belongs to the first wave it matches: a selector by its site or labels, a percentage by
its bucket, a number in [0, 100) from a hash of the node id alone, so every hub and every node
computes the same membership. The last wave always takes every node left (``100%`` is added
when the list does not end with it), so a rollout that completes has reached every node.

What a node runs (:func:`pick`) is decided at the node, from the fleet document alone:

* no rollout, or one that ended RolledBack or Aborted: the stable spec (``workloads[name]``);
* Complete: the stable spec too: the step that completes writes the candidate as stable in
  the same transaction, so there is no moment between the two;
* Progressing or Paused: the candidate if the node's wave is released at its site, else the
  stable spec (or nothing, for a workload that has no stable spec yet).

The candidate lives only in the rollout record, never in ``workloads``: a node offline through
a rollout that was rolled back finds the stable spec and the end in the same document update,
and never runs the bad revision (Argo's trap is a spec left naming the new version).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from noderuntime.errors import SpecError
from noderuntime.rollout.record import BAD_ENDS, Progress, Rollout, State

_PCT_RE = re.compile(r"^(\d{1,3}(?:\.\d+)?)%\Z")
_SEL_RE = re.compile(r"^(site|label)=(.+)\Z")
BUCKETS = 10_000  # a bucket is a hundredth of a percent


@dataclass(frozen=True)
class Wave:
    text: str
    percent: float | None = None  # cumulative share of the nodes
    site: str | None = None
    label: tuple[str, str] | None = None

    def matches(self, node: NodeFacts) -> bool:
        if self.percent is not None:
            return bucket(node.node_id) < self.percent * BUCKETS / 100
        if self.site is not None:
            return node.site == self.site
        assert self.label is not None
        key, value = self.label
        return node.labels.get(key) == value


@dataclass(frozen=True)
class NodeFacts:
    node_id: str
    site: str
    labels: Mapping[str, str] = field(default_factory=dict)


def bucket(node_id: str) -> int:
    """The node's place in [0, BUCKETS): the same wherever it is computed."""
    digest = hashlib.sha256(node_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def parse_wave(text: str) -> Wave:
    text = text.strip()
    m = _PCT_RE.match(text)
    if m:
        pct = float(m.group(1))
        if not 0 < pct <= 100:
            raise SpecError([], summary=f"wave {text!r}: a percentage is in (0, 100]")
        return Wave(text, percent=pct)
    m = _SEL_RE.match(text)
    if m and m.group(1) == "site":
        return Wave(text, site=m.group(2))
    if m:
        key, sep, value = m.group(2).partition("=")
        if sep and key and value:
            return Wave(text, label=(key, value))
    raise SpecError(
        [],
        summary=f"wave {text!r}: give a percentage (10%), site=SITE or label=KEY=VALUE",
    )


def parse_waves(text: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Check a wave list (``"site=lab,10%,100%"``); the canonical texts, ending in ``100%``."""
    items = text.split(",") if isinstance(text, str) else list(text)
    waves = [parse_wave(t) for t in items if t.strip()]
    if not waves:
        raise SpecError([], summary="give at least one wave, e.g. --waves 'site=lab,50%,100%'")
    last = -1.0
    for w in waves:
        if w.percent is not None:
            if w.percent <= last:
                raise SpecError([], summary=f"wave {w.text!r}: percentages are cumulative")
            last = w.percent
    if waves[-1].percent != 100:
        waves.append(Wave("100%", percent=100.0))
    return tuple(w.text for w in waves)


def wave_of(waves: tuple[str, ...], node: NodeFacts) -> int:
    """The index of the first wave ``node`` matches (the last wave takes everyone left)."""
    parsed = [parse_wave(w) for w in waves]
    for i, w in enumerate(parsed):
        if w.matches(node):
            return i
    return len(parsed) - 1


def runs_candidate(rollout: Rollout, progress: Progress, node: NodeFacts) -> bool:
    """Whether ``node`` runs the rollout's candidate now (see the module docstring)."""
    state = progress.state()
    if state in BAD_ENDS or state is State.COMPLETE:
        return False
    return progress.released(wave_of(rollout.waves, node), node.site)


def pick(
    stable: Mapping[str, Any] | None,
    rollout: Rollout | None,
    progress: Progress,
    node: NodeFacts,
) -> Mapping[str, Any] | None:
    """The workload document ``node`` runs: stable or candidate (None: neither applies)."""
    if rollout is not None and runs_candidate(rollout, progress, node):
        return rollout.candidate
    return stable
