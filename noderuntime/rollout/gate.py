"""Gates: judge a rollout from the nodes' reports and say which facts to record next. Pure.

Rules (``evaluate``), over the nodes the candidate selects:

1. A node of a released wave is ``healthy`` once it reports the candidate's spec hash Running
   (health not failing), healthy since the later of its report and the release; ``failed`` if
   it reports the candidate Failed or Unhealthy, or exited with a non-zero code (a crash loop
   between restarts), or has not reported it Running within the start deadline; ``pending``
   otherwise. A node whose spec at that node is changed by a site or node override (or
   disabled by one) is ``overridden``: a technician's override keeps its precedence, and the
   node is neither waited for nor counted as failed.
2. A released wave with more than ``max_unhealthy`` failed nodes fails the rollout: it ends
   RolledBack with the reason and the failed nodes. This is checked while Paused too.
3. Progressing: the current wave is released at every site whose update window is open
   (``waiting`` names the others); its gate holds once it is released at all its sites and every
   node not failed or overridden has been healthy for ``gate_for``. Then the next wave is
   released; after the last one, the rollout is Complete.

Every fact is idempotent and only ever added (see ``record.py``), so any number of hubs may
run this on what they hold and write what it returns.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from noderuntime.crdt.schema import StatusRecord
from noderuntime.rollout.record import ENDED, EVERY_SITE, Progress, Rollout, State
from noderuntime.rollout.waves import NodeFacts, wave_of
from noderuntime.rollout.windows import window_open

FAILING_PHASES = ("Failed", "Unhealthy")


class NodeState(enum.Enum):
    WAITING = "waiting"  # its wave is not released (at its site)
    PENDING = "pending"
    HEALTHY = "healthy"
    FAILED = "failed"
    OVERRIDDEN = "overridden"


@dataclass(frozen=True)
class NodeVerdict:
    node: str
    site: str
    wave: int
    state: NodeState
    healthy_since: float | None = None
    reason: str = ""


@dataclass(frozen=True)
class WaveView:
    index: int
    text: str
    nodes: tuple[NodeVerdict, ...]
    sites: frozenset[str]
    released: frozenset[str]
    waiting: frozenset[str]  # sites whose window is closed
    gate_held: bool

    def count(self, state: NodeState) -> int:
        return sum(1 for n in self.nodes if n.state is state)


@dataclass(frozen=True)
class Evaluation:
    state: State
    current_wave: int
    waves: tuple[WaveView, ...]
    # Set when rule 2 fires now: why, and which nodes.
    failure: tuple[str, tuple[str, ...]] | None = None
    facts: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


def judge(
    rollout: Rollout,
    node: NodeFacts,
    wave: int,
    released_at: float | None,
    report: StatusRecord | None,
    *,
    overridden: bool,
    now: float,
) -> NodeVerdict:
    """Rule 1 for one node."""

    def verdict(state: NodeState, reason: str = "", since: float | None = None) -> NodeVerdict:
        return NodeVerdict(node.node_id, node.site, wave, state, since, reason)

    if released_at is None:
        return verdict(NodeState.WAITING)
    if overridden:
        return verdict(NodeState.OVERRIDDEN, "a site or node override changes it here")
    if report is not None and report.spec_hash == rollout.candidate_hash:
        if report.phase in FAILING_PHASES:
            return verdict(NodeState.FAILED, f"{report.phase}: {report.message}".rstrip(": "))
        if report.exit_code not in (None, 0):
            # Crash loop: a pass under load may see the restart already due, so the report
            # says Starting ("restarting") rather than Failed; the exit code says it crashed.
            why = f"crash loop: exited with code {report.exit_code} ({report.phase})"
            return verdict(NodeState.FAILED, why)
        if report.phase == "Running" and report.health != "unhealthy":
            return verdict(NodeState.HEALTHY, since=max(report.since, released_at))
    if now - released_at > rollout.start_deadline_s:
        why = f"not Running within {rollout.start_deadline_s:g}s"
        return verdict(NodeState.FAILED, why)
    return verdict(NodeState.PENDING)


def evaluate(
    rollout: Rollout,
    progress: Progress,
    nodes: Sequence[NodeFacts],
    reports: Mapping[str, StatusRecord],
    *,
    overridden: frozenset[str] = frozenset(),
    windows: Mapping[str, str] | None = None,
    now: float,
    actor: str = "",
) -> Evaluation:
    """Where the rollout stands, and the facts to record now (``facts``; empty: nothing)."""
    windows = windows or {}
    state = progress.state()
    current = progress.current_wave()
    by_wave: dict[int, list[NodeVerdict]] = {i: [] for i in range(len(rollout.waves))}
    for node in sorted(nodes, key=lambda n: n.node_id):
        k = wave_of(rollout.waves, node)
        by_wave[k].append(
            judge(
                rollout,
                node,
                k,
                progress.released_at(k, node.site),
                reports.get(node.node_id),
                overridden=node.node_id in overridden,
                now=now,
            )
        )
    views = []
    for k, text in enumerate(rollout.waves):
        sites = frozenset(v.site for v in by_wave[k])
        named = progress.released_sites(k)
        released = sites if EVERY_SITE in named else frozenset(named) & sites
        waiting = frozenset(s for s in sites - released if not window_open(windows.get(s), now))
        views.append(
            WaveView(k, text, tuple(by_wave[k]), sites, released, waiting, progress.gate_held(k))
        )
    facts: dict[str, dict[str, Any]] = {}
    failure = None
    if state not in ENDED:
        failure = _failure(rollout, views)
        if failure is not None:
            reason, failed = failure
            facts[f"end/{State.ROLLED_BACK.value}"] = {
                "at": now,
                "by": actor,
                "reason": reason,
                "failed": list(failed),
            }
        elif state is State.PROGRESSING:
            facts = _advance(rollout, views, max(current, 0), now, actor)
    return Evaluation(state, current, tuple(views), failure, facts)


def _failure(rollout: Rollout, views: Sequence[WaveView]) -> tuple[str, tuple[str, ...]] | None:
    for view in views:
        failed = [n for n in view.nodes if n.state is NodeState.FAILED]
        if len(failed) > rollout.max_unhealthy:
            first = failed[0]
            reason = (
                f"wave {view.index + 1} ({view.text}): {len(failed)} node(s) failed "
                f"(at most {rollout.max_unhealthy} allowed); {first.node}: {first.reason}"
            )
            return reason, tuple(n.node for n in failed)
    return None


def _advance(
    rollout: Rollout, views: Sequence[WaveView], k: int, now: float, actor: str
) -> dict[str, dict[str, Any]]:
    """Rule 3, from wave ``k`` on: release what may be released, record gates that hold."""
    facts: dict[str, dict[str, Any]] = {}
    while k < len(views):
        view = views[k]
        for site in sorted(view.sites - view.released - view.waiting):
            facts[f"go/{k}/{site}"] = {"at": now, "by": actor}
        if view.released != view.sites or not _gate_holds(rollout, view, now):
            return facts
        if not view.gate_held:
            facts[f"gate/{k}"] = {"at": now, "by": actor}
        k += 1
    facts[f"end/{State.COMPLETE.value}"] = {"at": now, "by": actor}
    return facts


def _gate_holds(rollout: Rollout, view: WaveView, now: float) -> bool:
    if view.gate_held:
        return True
    for n in view.nodes:
        if n.state in (NodeState.FAILED, NodeState.OVERRIDDEN):
            continue
        if n.state is not NodeState.HEALTHY or n.healthy_since is None:
            return False
        if now - n.healthy_since < rollout.gate_for_s:
            return False
    return True


def status_view(rollout: Rollout, progress: Progress, ev: Evaluation) -> dict[str, Any]:
    """``rollout status -o json``: state, current wave, per-wave counts, reason, timestamps."""
    end = progress.end()
    out: dict[str, Any] = {
        "name": rollout.workload,
        "id": rollout.id,
        "revision": rollout.revision,
        "previous_revision": rollout.previous_revision,
        "spec_hash": rollout.candidate_hash,
        "state": ev.state.value,
        "current_wave": ev.current_wave + 1 if ev.current_wave >= 0 else 0,
        "waves_total": len(rollout.waves),
        "gate_for_seconds": rollout.gate_for_s,
        "max_unhealthy": rollout.max_unhealthy,
        "author": rollout.author,
        "started_at": rollout.started_at,
        "ended_at": float(end[1].get("at", 0.0)) if end else None,
        "reason": str(end[1].get("reason", "")) if end else "",
        "failed_nodes": list(end[1].get("failed", [])) if end else [],
        "waiting_sites": sorted({s for w in ev.waves for s in w.waiting if not w.gate_held}),
        "waves": [
            {
                "wave": w.index + 1,
                "selector": w.text,
                "nodes": len(w.nodes),
                "released_sites": sorted(w.released),
                "waiting_sites": sorted(w.waiting),
                "gate": "held" if w.gate_held else "open",
                **{s.value: w.count(s) for s in NodeState},
            }
            for w in ev.waves
        ],
        "nodes": [
            {"node": n.node, "site": n.site, "wave": n.wave + 1, "state": n.state.value}
            | ({"reason": n.reason} if n.reason else {})
            for w in ev.waves
            for n in w.nodes
        ],
    }
    return out
