"""Routes for the fleet view (issue 12 §1): ``fleet.workloads`` and ``fleet.sites``.

Read-only, over what this node holds: its own status, the synced ``node/<id>`` documents and the
sync engine's peer table. A hub answers for the fleet; any other node for its own site. The rows
come from :mod:`noderuntime.fleetops.view` (pure); this module only gathers the snapshot.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from noderuntime.api.protocol import Attached, RawJson, encode_value
from noderuntime.api.server import Params, Route
from noderuntime.crdt import schema
from noderuntime.crdt.state import StateStore
from noderuntime.errors import ApiError
from noderuntime.fleetops.rowtext import row_templates, slot_order
from noderuntime.fleetops.view import (
    FleetFilter,
    NodeSnapshot,
    revision_index,
    row_fields,
    seen_fields,
    site_summaries,
    sorted_nodes,
)
from noderuntime.rollout.record import in_progress

if TYPE_CHECKING:
    # Named in types only: a node that is not enrolled never loads sync code.
    from noderuntime.sync.fleetevents import FleetEvents

# Without sync there are no peers to go stale; the default peer timeout (3 x 2 s heartbeats).
DEFAULT_STALE_AFTER_S = 6.0
# Node documents read (or nodes' rows encoded) between two yields to the loop when warming:
# ~10-20 ms of work.
WARM_SLICE = 25


@dataclass(frozen=True)
class FleetSources:
    """What the fleet view reads. ``peers`` is the sync engine's peer views (empty without
    sync); ``heartbeat`` a peer's last heartbeat payload; ``stale_after_s`` how long a peer may
    be silent before it counts as down (the peer table's timeout)."""

    node_id: str
    site: str
    role: str
    labels: Mapping[str, str]
    state: StateStore
    peers: Callable[[], Sequence[Mapping[str, Any]]]
    heartbeat: Callable[[str], Mapping[str, Any]]
    stale_after_s: Callable[[], float]
    own_status: Callable[[], Mapping[str, schema.StatusRecord]] = field(default=lambda: {})
    # Forward an operator's signed log request to the node at the site given (remotelogs.py).
    remote_logs: Callable[[bytes, str | None], AsyncIterator[str]] | None = None
    # The hub's fleet-event ring (None: not a hub, or no sync).
    events: Callable[[], FleetEvents | None] = field(default=lambda: None)


class NodeDocCache:
    """Node documents read into :class:`~noderuntime.crdt.schema.NodeView`, kept until the
    document's stored sequence number moves: a hub holding 1,000 nodes re-reads only those that
    changed (reading one costs ~0.4 ms; bench/fleet_view.py)."""

    def __init__(self) -> None:
        self._views: dict[str, tuple[int, schema.NodeView]] = {}

    def read(self, state: StateStore) -> dict[str, schema.NodeView]:
        seqs = state.doc_seqs
        out: dict[str, schema.NodeView] = {}
        for name, seq in seqs.items():
            if not name.startswith("node/"):
                continue
            held = self._views.get(name)
            if held is None or held[0] != seq:
                view = state.read(name, schema.read_node)
                held = self._views[name] = (seq, view)
            out[name] = held[1]
        for gone in set(self._views) - set(out):
            del self._views[gone]
        return out

    async def warm(self, state: StateStore) -> None:
        """Read every node document not held yet, a slice at a time (reading 1,000 took
        0.45-0.9 s of a hub's first answer; the loop serves requests in between)."""
        for i, (name, seq) in enumerate(list(state.doc_seqs.items()), 1):
            held = self._views.get(name)
            if name.startswith("node/") and (held is None or held[0] != seq):
                self._views[name] = (seq, state.read(name, schema.read_node))
            if i % WARM_SLICE == 0:
                await asyncio.sleep(0)


class FleetRowsJson:
    """``fleet.workloads`` as JSON text (the rows of :func:`~noderuntime.fleetops.view.fleet_rows`,
    encoded as the API encodes them), from each row's encoded fields kept until its node's
    status document, site or the fleet's revisions change; only the three fields that age
    (``last_seen``, ``stale``, ``age_s``) are encoded per call. A hub of 1,000 nodes x 10
    workloads answered in ~40 ms of rows and ~75 ms of encoding; this is ~10 ms
    (bench/fleet_view.py)."""

    def __init__(self) -> None:
        # node -> (site, its status mapping, [(workload, the row's kept piece)])
        self._held: dict[str, tuple[str | None, object, list[tuple[str, str]]]] = {}
        self._revisions: Mapping[tuple[str, str], int] = {}

    def rows(
        self,
        nodes: Sequence[NodeSnapshot],
        *,
        now: float,
        flt: FleetFilter,
        workload_labels: Mapping[str, Mapping[str, str]],
        revisions: Mapping[tuple[str, str], int],
    ) -> RawJson | Attached:
        self._check_revisions(revisions)
        held: dict[str, tuple[str | None, object, list[tuple[str, str]]]] = {}
        parts: list[str] = []
        for n in sorted_nodes(nodes, flt):
            entry = held[n.node_id] = self._entry(n, revisions)
            pieces = [
                piece
                for name, piece in entry[2]
                if not flt.labels or flt.wants_labels(n.labels, workload_labels.get(name, {}))
            ]
            if pieces:
                parts.append(self._node_rows(pieces, seen_fields(n, now)))
        # Nodes filtered out this call keep their entries; nodes gone lose theirs.
        self._held = {**{k: v for k, v in self._held.items() if k in held}, **held}
        return self._whole(parts)

    async def warm(
        self, nodes: Sequence[NodeSnapshot], revisions: Mapping[tuple[str, str], int]
    ) -> None:
        """Encode every node's rows ahead of a call, a slice at a time (the loop serves
        requests in between)."""
        self._check_revisions(revisions)
        for i, n in enumerate(nodes, 1):
            self._held[n.node_id] = self._entry(n, revisions)
            if i % WARM_SLICE == 0:
                await asyncio.sleep(0)

    def _check_revisions(self, revisions: Mapping[tuple[str, str], int]) -> None:
        if revisions != self._revisions:
            self._held.clear()
            self._revisions = revisions

    def _entry(
        self, n: NodeSnapshot, revisions: Mapping[tuple[str, str], int]
    ) -> tuple[str | None, object, list[tuple[str, str]]]:
        entry = self._held.get(n.node_id)
        # The same mapping object: NodeDocCache keeps a view until its document moves.
        if entry is None or entry[0] != n.site or entry[1] is not n.status:
            entry = (n.site, n.status, self._encode(n, revisions))
        return entry

    def _encode(
        self, n: NodeSnapshot, revisions: Mapping[tuple[str, str], int]
    ) -> list[tuple[str, str]]:
        """Each row's piece: its JSON up to the aging fields."""
        return [
            (name, encode_value(row_fields(n, name, st, revisions))[:-1])
            for name, st in sorted(n.status.items())
        ]

    def _node_rows(self, pieces: list[str], seen: Mapping[str, Any]) -> str:
        """A node's rows, their aging fields filled."""
        tail = "".join(f',"{k}":{_json_scalar(v)}' for k, v in seen.items()) + "}"
        return (tail + ",").join(pieces) + tail

    def _whole(self, parts: list[str]) -> RawJson | Attached:
        return RawJson("[" + ",".join(parts) + "]")


class FleetRowsText(FleetRowsJson):
    """``fleet.workloads`` with ``"render": "json"``: the rows as `get workloads --fleet -o json`
    prints them (:mod:`noderuntime.fleetops.rowtext`), attached to the answer as raw bytes
    (``api/protocol.py``), which the CLI writes out as they come: no 2.7 MB of rows decoded
    and encoded again in the client. Each row's template is kept; a call fills the aging
    slots, one format per node."""

    def _encode(
        self, n: NodeSnapshot, revisions: Mapping[tuple[str, str], int]
    ) -> list[tuple[str, str]]:
        names = sorted(n.status)
        rows = [row_fields(n, name, n.status[name], revisions) for name in names]
        return list(zip(names, row_templates(rows, _SEEN), strict=True))

    def _node_rows(self, pieces: list[str], seen: Mapping[str, Any]) -> str:
        values = tuple(_json_scalar(seen[k]) for k in _SEEN_ORDER)
        return ",\n".join(pieces) % (values * len(pieces))

    def _whole(self, parts: list[str]) -> RawJson | Attached:
        # json.dumps(rows, indent=2)'s brackets around the rows.
        return Attached(("[\n" + ",\n".join(parts) + "\n]" if parts else "[]").encode())


# The aging fields, filled per call; seen_fields' keys.
_SEEN = ("last_seen", "stale", "age_s")
_SEEN_ORDER = slot_order(_SEEN)


def collect_nodes(
    src: FleetSources, now: float, cache: NodeDocCache | None = None
) -> list[NodeSnapshot]:
    """Every node this node may answer for: all at a hub, its own site's elsewhere."""
    hub = src.role == "hub"
    stale_after = src.stale_after_s()
    docs = (cache or NodeDocCache()).read(src.state)
    peers = {str(p["node"]): p for p in src.peers()}
    out: dict[str, NodeSnapshot] = {
        src.node_id: NodeSnapshot(
            node_id=src.node_id,
            site=src.site,
            role=src.role,
            labels=dict(src.labels),
            status=dict(src.own_status()),
            last_seen=now,
            stale_after_s=stale_after,
            is_self=True,
        )
    }
    for name, view in docs.items():
        ident = name.partition("/")[2]
        if ident in out:
            continue
        info = view.info
        peer = peers.get(ident, {})
        site = _str(peer.get("site")) or _str(info.get("site"))
        labels = info.get("labels")
        out[ident] = NodeSnapshot(
            node_id=ident,
            site=site,
            role=_str(peer.get("role")) or _str(info.get("role")),
            labels={str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {},
            status=view.status,
            last_seen=_float(peer.get("last_heard")),
            stale_after_s=stale_after,
            sovereign=bool(peer.get("sovereign", False)),
        )
    # Peers whose documents this node does not hold (a sovereign site's nodes, at a hub) still
    # count in site summaries, from their heartbeats.
    for ident, peer in peers.items():
        if ident in out:
            continue
        hb = src.heartbeat(ident)
        phases = hb.get("workloads")
        out[ident] = NodeSnapshot(
            node_id=ident,
            site=_str(peer.get("site")),
            role=_str(peer.get("role")),
            last_seen=_float(peer.get("last_heard")),
            stale_after_s=stale_after,
            sovereign=bool(peer.get("sovereign", False)),
            heartbeat_phases=(
                {str(k): int(v) for k, v in phases.items() if isinstance(v, int | float)}
                if isinstance(phases, dict)
                else {}
            ),
            holds_doc=False,
        )
    nodes = sorted(out.values(), key=lambda n: n.node_id)
    return nodes if hub else [n for n in nodes if n.site == src.site]


def build_fleet_routes(sources: Callable[[], FleetSources]) -> dict[str, Route]:
    """``sources`` is called per request: the parts it names may start after the routes."""
    cache = NodeDocCache()
    rows_json = FleetRowsJson()
    rows_text = FleetRowsText()

    async def workloads(params: Params) -> RawJson | Attached:
        src = sources()
        selectors = params.get("labels") or []
        if not isinstance(selectors, list) or not all(isinstance(s, str) for s in selectors):
            raise ApiError("parameter 'labels' must be a list of key=value", code="bad_request")
        flt = FleetFilter.parse(_param(params, "site"), _param(params, "node"), selectors)
        render = _param(params, "render")
        if render not in (None, "json"):
            raise ApiError("parameter 'render' must be \"json\" or absent", code="bad_request")
        now = time.time()
        fleet = src.state.snapshot().fleet
        return (rows_text if render else rows_json).rows(
            collect_nodes(src, now, cache),
            now=now,
            flt=flt,
            workload_labels={k: _labels_of(v) for k, v in fleet.workloads.items()},
            revisions=revision_index(fleet.revisions),
        )

    async def warm() -> None:
        """At a hub, the node documents read and the rows rendered (as the CLI asks for them)
        before the first call: after a start it took 0.45-0.9 s (bench/fleet_view.py)."""
        src = sources()
        if src.role != "hub":
            return
        await cache.warm(src.state)
        nodes = collect_nodes(src, time.time(), cache)
        await rows_text.warm(nodes, revision_index(src.state.snapshot().fleet.revisions))

    async def sites(_: Params) -> list[dict[str, Any]]:
        src, now = sources(), time.time()
        rollouts = in_progress(src.state.snapshot().fleet)  # noderuntime/rollout/record.py
        return site_summaries(collect_nodes(src, now, cache), now=now, rollouts=rollouts)

    async def events(params: Params) -> AsyncIterator[str]:
        ring = sources().events()
        if ring is None:
            raise ApiError(
                "fleet events are kept at a hub that syncs; ask a hub", code="bad_request"
            )
        follow = bool(params.get("follow", False))
        limit = params.get("limit", 200)
        if not isinstance(limit, int) or limit < 0:
            raise ApiError("limit must be a non-negative integer", code="bad_request")
        backlog = ring.since(0)[-limit:] if limit else []
        seen = backlog[-1][0] if backlog else ring.last_seq
        for _, e in backlog:
            yield json.dumps(e.to_dict(), sort_keys=True)
        while follow:
            await ring.wait_newer(seen)
            for seq, e in ring.since(seen):
                seen = seq
                yield json.dumps(e.to_dict(), sort_keys=True)

    async def logs(params: Params) -> AsyncIterator[str]:
        src = sources()
        node = _param(params, "node")
        raw = _param(params, "request")
        if src.remote_logs is None or src.role != "hub":
            raise ApiError("remote logs are read through a hub that syncs", code="bad_request")
        if not node or not raw:
            raise ApiError("parameters 'node' and 'request' are required", code="bad_request")
        try:
            wire = base64.b64decode(raw, validate=True)
        except ValueError:
            raise ApiError("parameter 'request' must be base64", code="bad_request") from None
        site = next((n.site for n in collect_nodes(src, time.time()) if n.node_id == node), None)
        async for line in src.remote_logs(wire, site):
            yield line

    return {
        "fleet.logs": Route(
            stream=logs, doc="an operator-signed read of a node's workload logs, through a hub"
        ),
        "fleet.events": Route(
            stream=events, doc="workload transitions from every connected node (a hub's ring)"
        ),
        "fleet.workloads": Route(
            workloads,
            doc="one row per (node, workload) from the synced status documents",
            warm=warm,
        ),
        "fleet.sites": Route(sites, doc="per site: nodes up/total, workloads by phase"),
    }


def _json_scalar(value: Any) -> str:
    # 3,000 json.dumps calls per answer were half its time; these are what it would write.
    if value is None:
        return "null"
    if value is True or value is False:
        return "true" if value else "false"
    if type(value) is float and math.isfinite(value):
        return repr(value)
    return encode_value(value)


def _param(params: Params, key: str) -> str | None:
    value = params.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ApiError(f"parameter {key!r} must be a string", code="bad_request")
    return value


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def _labels_of(canonical: Mapping[str, Any]) -> dict[str, str]:
    meta = canonical.get("metadata")
    labels = meta.get("labels") if isinstance(meta, dict) else None
    return {str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {}
