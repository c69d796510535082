"""What a gate is judged on, from the documents a node holds. Pure.

A hub holds every node's document, so it sees every node a workload selects, its report and
its overrides; a plain node sees only itself (its ``rollout status`` says so by its counts).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from noderuntime.crdt.schema import FleetView, NodeView, StatusRecord
from noderuntime.rollout.gate import Evaluation, evaluate
from noderuntime.rollout.record import Progress, Rollout, progress_of
from noderuntime.rollout.waves import NodeFacts

# The labels every node matches on besides its own (same as reconcile.desired's).
BUILTIN_NODE_LABEL = "noderuntime.io/node"
BUILTIN_SITE_LABEL = "noderuntime.io/site"


@dataclass(frozen=True)
class GateInputs:
    nodes: tuple[NodeFacts, ...]
    reports: Mapping[str, StatusRecord]
    overridden: frozenset[str]
    windows: Mapping[str, str]


def node_facts(node_id: str, view: NodeView) -> NodeFacts | None:
    info = view.info
    site = info.get("site")
    if not isinstance(site, str):
        return None  # a node that has not said where it is yet
    labels = info.get("labels")
    clean = {str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {}
    return NodeFacts(node_id, site, clean)


def selects(candidate: Mapping[str, Any], node: NodeFacts) -> bool:
    spec = candidate.get("spec")
    selector = spec.get("nodeSelector") if isinstance(spec, dict) else None
    if not isinstance(selector, dict):
        return True
    labels = {**node.labels, BUILTIN_NODE_LABEL: node.node_id, BUILTIN_SITE_LABEL: node.site}
    return all(labels.get(k) == v for k, v in selector.items())


def gather(
    fleet: FleetView,
    rollout: Rollout,
    node_views: Iterable[tuple[str, NodeView]],
    site_overrides: Mapping[str, Mapping[str, Mapping[str, Any]]],
) -> GateInputs:
    """``node_views``: (node id, its document); ``site_overrides``: site -> workload -> fields."""
    name = rollout.workload
    nodes: list[NodeFacts] = []
    reports: dict[str, StatusRecord] = {}
    overridden: set[str] = set()
    for node_id, view in node_views:
        facts = node_facts(node_id, view)
        if facts is None or not selects(rollout.candidate, facts):
            continue
        nodes.append(facts)
        report = view.status.get(name)
        if report is not None:
            reports[node_id] = report
        if view.overrides.get(name) or site_overrides.get(facts.site, {}).get(name):
            overridden.add(node_id)
    windows = {
        site: str(w.get("window", "")) for site, w in fleet.windows.items() if w.get("window")
    }
    return GateInputs(tuple(nodes), reports, frozenset(overridden), windows)


def judge_rollout(
    fleet: FleetView,
    rollout: Rollout,
    node_views: Iterable[tuple[str, NodeView]],
    site_overrides: Mapping[str, Mapping[str, Mapping[str, Any]]],
    *,
    now: float,
    actor: str = "",
) -> tuple[Progress, Evaluation]:
    progress = progress_of(fleet, rollout.id)
    inputs = gather(fleet, rollout, node_views, site_overrides)
    ev = evaluate(
        rollout,
        progress,
        inputs.nodes,
        inputs.reports,
        overridden=inputs.overridden,
        windows=inputs.windows,
        now=now,
        actor=actor,
    )
    return progress, ev
