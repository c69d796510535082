"""A workload's rollout as the fleet document records it, read into plain values. Pure.

The record (``rollouts[name]``) is written once, by ``rollout start``: the candidate spec, the
waves, the gate. Progress is a set of facts under ``rolloutSteps["<id>/<fact>"]``, each written
once and never changed, so two hubs (or a hub and an operator's CLI) taking the same step write
the same fact and converge:

    go/<k>/<site>      wave k may run the candidate at this site (released there); site
                       ``*``: at every site (an operator's ``rollout promote``)
    gate/<k>           wave k's gate held
    end/Complete       every wave's gate held; written with the candidate as the stable spec
    end/RolledBack     a gate failed: {reason, failed: [node, ...]}
    end/Aborted        an operator aborted it (or undid the workload)
    pause/<n>          odd n: paused, even n: resumed (the highest n wins)

State is a pure function of the facts, most conservative first: an end that takes the candidate
away (RolledBack, Aborted) beats Complete, which beats Paused, which beats Progressing.
``rollout_summary`` is the small reader other views (``get sites``) use.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from noderuntime.crdt.schema import FleetView


class State(enum.Enum):
    """Rollout states (wire values: never rename)."""

    PROGRESSING = "Progressing"
    PAUSED = "Paused"
    COMPLETE = "Complete"
    ROLLED_BACK = "RolledBack"
    ABORTED = "Aborted"


# Ends that take the candidate away from every node, strongest first.
BAD_ENDS = (State.ROLLED_BACK, State.ABORTED)
ENDED = (State.ROLLED_BACK, State.ABORTED, State.COMPLETE)

DEFAULT_GATE_FOR_S = 60.0
# ``go/<k>/*``: an operator promoted wave k (``rollout promote``): released at every site.
EVERY_SITE = "*"
# A released node that has not reported the candidate Running by then counts as failed.
DEFAULT_START_DEADLINE_S = 120.0


@dataclass(frozen=True)
class Rollout:
    """One rollout's record (immutable once written)."""

    id: str
    workload: str
    revision: int
    candidate: Mapping[str, Any]  # canonical workload document
    candidate_hash: str
    previous_revision: int | None
    waves: tuple[str, ...]
    gate_for_s: float = DEFAULT_GATE_FOR_S
    max_unhealthy: int = 0
    start_deadline_s: float = DEFAULT_START_DEADLINE_S
    author: str = ""
    started_at: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "workload": self.workload,
            "revision": self.revision,
            "candidate": dict(self.candidate),
            "candidateHash": self.candidate_hash,
            "previousRevision": self.previous_revision,
            "waves": list(self.waves),
            "gateForSeconds": self.gate_for_s,
            "maxUnhealthy": self.max_unhealthy,
            "startDeadlineSeconds": self.start_deadline_s,
            "author": self.author,
            "startedAt": self.started_at,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Rollout:
        prev = d.get("previousRevision")
        candidate = d["candidate"]
        if not isinstance(candidate, dict):
            raise ValueError("a rollout's candidate is a workload document")
        return cls(
            id=str(d["id"]),
            workload=str(d["workload"]),
            revision=int(d["revision"]),
            candidate=candidate,
            candidate_hash=str(d["candidateHash"]),
            previous_revision=int(prev) if prev is not None else None,
            waves=tuple(str(w) for w in d.get("waves", ())),
            gate_for_s=float(d.get("gateForSeconds", DEFAULT_GATE_FOR_S)),
            max_unhealthy=int(d.get("maxUnhealthy", 0)),
            start_deadline_s=float(d.get("startDeadlineSeconds", DEFAULT_START_DEADLINE_S)),
            author=str(d.get("author", "")),
            started_at=float(d.get("startedAt", 0.0)),
        )


@dataclass(frozen=True)
class Progress:
    """The facts recorded for one rollout, keyed by fact (``go/0/lab``, ``end/Complete``...)."""

    facts: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def released(self, wave: int, site: str) -> bool:
        return self.released_at(wave, site) is not None

    def released_at(self, wave: int, site: str) -> float | None:
        fact = self.facts.get(f"go/{wave}/{site}") or self.facts.get(f"go/{wave}/{EVERY_SITE}")
        return float(fact.get("at", 0.0)) if fact is not None else None

    def released_sites(self, wave: int) -> set[str]:
        """Sites wave ``wave`` is released at (``EVERY_SITE`` if an operator promoted it)."""
        prefix = f"go/{wave}/"
        return {k[len(prefix) :] for k in self.facts if k.startswith(prefix)}

    def current_wave(self) -> int:
        """The highest wave released anywhere (-1: none yet)."""
        waves = [int(k.split("/")[1]) for k in self.facts if k.startswith("go/")]
        return max(waves, default=-1)

    def gate_held(self, wave: int) -> bool:
        return f"gate/{wave}" in self.facts

    def end(self) -> tuple[State, Mapping[str, Any]] | None:
        for state in (*BAD_ENDS, State.COMPLETE):
            fact = self.facts.get(f"end/{state.value}")
            if fact is not None:
                return state, fact
        return None

    def pause_seq(self) -> int:
        seqs = [int(k.split("/")[1]) for k in self.facts if k.startswith("pause/")]
        return max(seqs, default=0)

    def state(self) -> State:
        end = self.end()
        if end is not None:
            return end[0]
        return State.PAUSED if self.pause_seq() % 2 == 1 else State.PROGRESSING


def step_key(rollout_id: str, fact: str) -> str:
    return f"{rollout_id}/{fact}"


def progress_of(fleet: FleetView, rollout_id: str) -> Progress:
    prefix = rollout_id + "/"
    return Progress(
        {k[len(prefix) :]: v for k, v in fleet.rollout_steps.items() if k.startswith(prefix)}
    )


def rollout_of(fleet: FleetView, workload: str) -> Rollout | None:
    """The workload's newest rollout, or None (none, or a record no reader can use)."""
    raw = fleet.rollouts.get(workload)
    if raw is None:
        return None
    try:
        return Rollout.from_dict(raw)
    except (KeyError, TypeError, ValueError):
        return None


def rollout_summary(fleet: FleetView) -> dict[str, dict[str, Any]]:
    """Per workload with a rollout: ``{id, revision, state, wave, waves}`` (for fleet views).

    ``wave`` is the highest wave released (0-based; -1 before the first release).
    """
    out: dict[str, dict[str, Any]] = {}
    for name in sorted(fleet.rollouts):
        r = rollout_of(fleet, name)
        if r is None:
            continue
        p = progress_of(fleet, r.id)
        out[name] = {
            "id": r.id,
            "revision": r.revision,
            "state": p.state().value,
            "wave": p.current_wave(),
            "waves": len(r.waves),
        }
    return out


def in_progress(fleet: FleetView) -> dict[str, dict[str, Any]]:
    """The rollouts not yet ended (Progressing or Paused), as :func:`rollout_summary` gives."""
    ended = {s.value for s in ENDED}
    return {k: v for k, v in rollout_summary(fleet).items() if v["state"] not in ended}
