"""What runs where: fleet rows and per-site summaries. Pure functions over a snapshot.

The data is what this node already holds: the synced ``node/<id>`` status documents (a hub
holds every non-sovereign site's, a site node its own site's) and the peer table's heartbeats.
Nothing here calls a node. Every row says how old it is:

- ``last_seen``: when this node last heard the row's node (a verified heartbeat); while a peer
  is heard, its document syncs within a heartbeat or two, so the row is that fresh.
- ``stale``: the node has not been heard for longer than its heartbeat allows
  (``PEER_TIMEOUT_HEARTBEATS`` intervals, the same rule that marks a peer down), or never.
- ``age_s``: seconds since ``last_seen`` (None if never heard).

The keys of :func:`fleet_rows` and :func:`site_summaries` are a stable interface for scripts
(docs/json-output.md): keys may be added, never renamed or removed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from noderuntime.crdt.schema import StatusRecord
from noderuntime.errors import InvalidInputError


@dataclass(frozen=True)
class NodeSnapshot:
    """One node as this node knows it: its status document's records and its heartbeats."""

    node_id: str
    site: str | None
    role: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    status: Mapping[str, StatusRecord] = field(default_factory=dict)
    last_seen: float | None = None  # last verified heartbeat (now, for this node itself)
    stale_after_s: float = 6.0  # how long its heartbeat allows it to be silent
    sovereign: bool = False
    is_self: bool = False
    # From the heartbeat, for nodes whose documents this node does not hold (sovereign sites).
    heartbeat_phases: Mapping[str, int] = field(default_factory=dict)
    holds_doc: bool = True

    def stale(self, now: float) -> bool:
        if self.is_self:
            return False
        return self.last_seen is None or now - self.last_seen > self.stale_after_s


@dataclass(frozen=True)
class FleetFilter:
    site: str | None = None
    node: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, site: str | None, node: str | None, selectors: Sequence[str]) -> FleetFilter:
        """``selectors`` are ``key=value`` strings (``-l``), all of which must match."""
        labels: dict[str, str] = {}
        for sel in selectors:
            key, eq, value = sel.partition("=")
            if not eq or not key:
                raise InvalidInputError(f"label selector {sel!r} is not key=value")
            labels[key] = value
        return cls(site=site or None, node=node or None, labels=labels)

    def wants_node(self, n: NodeSnapshot) -> bool:
        if self.site is not None and n.site != self.site:
            return False
        return self.node is None or n.node_id == self.node

    def wants_labels(self, node_labels: Mapping[str, str], wl_labels: Mapping[str, str]) -> bool:
        # A selector matches a node label or the workload's own label: "ring=canary" picks
        # the nodes of a ring, "app=web" the workloads of an app.
        return all(node_labels.get(k) == v or wl_labels.get(k) == v for k, v in self.labels.items())


def revision_index(revisions: Mapping[str, Mapping[str, Any]]) -> dict[tuple[str, str], int]:
    """``(workload, spec hash) -> revision number`` from the fleet's ``revisions`` records
    (``"<workload>/<n>" -> {revision, specHash, ...}``); empty before any revision exists."""
    out: dict[tuple[str, str], int] = {}
    for key, rec in revisions.items():
        name = key.rpartition("/")[0]
        spec_hash, number = rec.get("specHash"), rec.get("revision")
        if name and isinstance(spec_hash, str) and isinstance(number, int | float):
            out[(name, spec_hash)] = int(number)
    return out


def fleet_rows(
    nodes: Iterable[NodeSnapshot],
    *,
    now: float,
    flt: FleetFilter | None = None,
    workload_labels: Mapping[str, Mapping[str, str]] | None = None,
    revisions: Mapping[tuple[str, str], int] | None = None,
) -> list[dict[str, Any]]:
    """One row per (node, workload), sorted by site, node, workload."""
    flt = flt or FleetFilter()
    wl_labels = workload_labels or {}
    revs = revisions or {}
    rows: list[dict[str, Any]] = []
    for n in sorted_nodes(nodes, flt):
        seen = seen_fields(n, now)
        for name, st in sorted(n.status.items()):
            if flt.labels and not flt.wants_labels(n.labels, wl_labels.get(name, {})):
                continue
            rows.append({**row_fields(n, name, st, revs), **seen})
    return rows


def sorted_nodes(nodes: Iterable[NodeSnapshot], flt: FleetFilter) -> list[NodeSnapshot]:
    """The nodes ``flt`` wants, in row order (site, then node); each node's rows then go by
    workload name."""
    return [n for n in sorted(nodes, key=lambda n: (n.site or "", n.node_id)) if flt.wants_node(n)]


def row_fields(
    n: NodeSnapshot, name: str, st: StatusRecord, revisions: Mapping[tuple[str, str], int]
) -> dict[str, Any]:
    """A row's fields that change only with the node's status document (or the revisions):
    every key of a row before :func:`seen_fields`' three, in row order."""
    return {
        "site": n.site,
        "node": n.node_id,
        "name": name,
        "phase": st.phase,
        "health": st.health,
        "restarts": st.restarts,
        "revision": revisions.get((name, st.spec_hash)) if st.spec_hash else None,
        "spec_hash": st.spec_hash,
        "since": st.since or None,
        "message": st.message,
    }


def seen_fields(n: NodeSnapshot, now: float) -> dict[str, Any]:
    """The fields of a node's rows that age with ``now``; the last keys of a row."""
    return {
        "last_seen": n.last_seen,
        "stale": n.stale(now),
        "age_s": None if n.last_seen is None else round(max(0.0, now - n.last_seen), 3),
    }


def site_summaries(
    nodes: Iterable[NodeSnapshot],
    *,
    now: float,
    rollouts: Mapping[str, Mapping[str, Any]] | None,
) -> list[dict[str, Any]]:
    """Per site: nodes up/total, workloads by phase, last heard, sovereign, rollouts.

    ``rollouts``: the fleet's rollouts not yet ended, by workload (``{state, wave, ...}``), or
    None where this node cannot read them; ``rollout_in_progress`` is then null.
    """
    by_site: dict[str, list[NodeSnapshot]] = {}
    for n in nodes:
        by_site.setdefault(n.site or "", []).append(n)
    out: list[dict[str, Any]] = []
    for site in sorted(by_site):
        members = by_site[site]
        phases: Counter[str] = Counter()
        for n in members:
            if n.holds_doc:
                phases.update(st.phase for st in n.status.values())
            else:
                phases.update({k: int(v) for k, v in n.heartbeat_phases.items()})
        heard = [n.last_seen for n in members if n.last_seen is not None]
        out.append(
            {
                "site": site or None,
                "nodes_up": sum(1 for n in members if not n.stale(now)),
                "nodes_total": len(members),
                "workloads": dict(sorted((k, v) for k, v in phases.items() if v)),
                "last_heard": max(heard) if heard else None,
                "sovereign": any(n.sovereign for n in members),
                "rollout_in_progress": (
                    None
                    if rollouts is None
                    else [{"workload": k, **dict(v)} for k, v in sorted(rollouts.items())]
                ),
            }
        )
    return out


def rollout_step_notes(
    new_keys: Iterable[str],
    steps: Mapping[str, Mapping[str, Any]],
    rollouts: Mapping[str, Mapping[str, Any]],
) -> list[tuple[str, str]]:
    """(workload, words) for rollout steps newly in the fleet document (fleet events).

    Keys are ``"<rollout id>/<fact>"`` (noderuntime/rollout/record.py): ``go/<k>/<site>``,
    ``gate/<k>``, ``end/<State>``, ``pause/<n>``.
    """
    workload_of = {str(r.get("id")): str(r.get("workload") or name) for name, r in rollouts.items()}
    out: list[tuple[str, str]] = []
    for key in sorted(new_keys):
        rid, _, fact = key.partition("/")
        parts = fact.split("/")
        detail = steps.get(key, {})
        if parts[0] == "go" and len(parts) == 3 and parts[1].isdigit():
            words = f"wave {int(parts[1]) + 1} released at site {parts[2]}"
        elif parts[0] == "gate" and len(parts) == 2 and parts[1].isdigit():
            words = f"wave {int(parts[1]) + 1} gate held"
        elif parts[0] == "end" and len(parts) == 2:
            reason = detail.get("reason")
            words = f"rollout {parts[1]}" + (f": {reason}" if reason else "")
        elif parts[0] == "pause" and len(parts) == 2 and parts[1].isdigit():
            words = "rollout paused" if int(parts[1]) % 2 else "rollout resumed"
        else:
            continue
        out.append((workload_of.get(rid, rid), words))
    return out
