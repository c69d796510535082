"""Who is out there: ``sync.peers`` (this node's links and peers), ``nodes.list`` (every node
it knows), and the fleet view (``fleet.workloads``, ``fleet.sites``; ``api/fleetview.py``)."""

from __future__ import annotations

import time
from functools import partial
from typing import Any

from noderuntime.api.fleetview import DEFAULT_STALE_AFTER_S, FleetSources, build_fleet_routes
from noderuntime.api.routes.workloads import shown
from noderuntime.api.server import Params, Route
from noderuntime.api.services import NodeServices
from noderuntime.crdt import schema
from noderuntime.crdt.schema import StatusRecord
from noderuntime.reconcile.loop import phase_counts


def routes(svc: NodeServices) -> dict[str, Route]:
    return build_fleet_routes(partial(fleet_sources, svc)) | {
        "sync.peers": Route(
            partial(sync_peers, svc), doc="sync links and peers: up/down, bytes, lag"
        ),
        "nodes.list": Route(
            partial(nodes_list, svc), doc="nodes known here: site, last seen, health"
        ),
    }


def fleet_sources(svc: NodeServices) -> FleetSources:
    """What the fleet view reads, per request: the sync engine may be off, or start later."""
    facts, sync = svc.facts, svc.sync()

    def own_status() -> dict[str, StatusRecord]:
        names = set(svc.state.snapshot().node.status) | set(svc.reconciler.live_status)
        return {n: st for n in sorted(names) if (st := shown(svc, n)[0]) is not None}

    return FleetSources(
        node_id=facts.node_id,
        site=facts.site,
        role=facts.role,
        labels=dict(facts.labels),
        state=svc.state,
        peers=sync.peer_views if sync is not None else list,
        heartbeat=sync.peer_heartbeat if sync is not None else lambda _: {},
        stale_after_s=sync.peer_timeout_s if sync is not None else lambda: DEFAULT_STALE_AFTER_S,
        own_status=own_status,
        events=sync.fleet_events if sync is not None else lambda: None,
        remote_logs=sync.remote_logs if sync is not None else None,
    )


async def sync_peers(svc: NodeServices, _: Params) -> dict[str, Any]:
    try:
        links = await svc.leaf_links()
    except Exception as exc:  # a monitoring endpoint that fails is shown, never fatal
        links = [{"error": str(exc)}]
    engine = svc.sync()
    return {
        "enabled": engine is not None,
        "peers": engine.peer_views() if engine is not None else [],
        "links": links,
        "sync": engine.status() if engine is not None else {"enabled": False},
    }


async def nodes_list(svc: NodeServices, _: Params) -> list[dict[str, Any]]:
    state, facts = svc.state, svc.facts
    me: dict[str, Any] = {
        "node": facts.node_id,
        "site": facts.site,
        "role": facts.role,
        "self": True,
        "up": True,
        "last_seen": time.time(),
        "health": "ok" if svc.reconciler.runtime_error is None else "degraded",
        "workloads": phase_counts(state.snapshot().node.status),
    }
    out = {facts.node_id: me}
    engine = svc.sync()
    if engine is not None:
        for p in engine.peer_views():
            hb = engine.peer_heartbeat(p["node"])
            out[p["node"]] = {
                "node": p["node"],
                "site": p["site"],
                "role": p["role"],
                "self": False,
                "up": p["up"],
                "last_seen": p["last_heard"],
                "health": hb.get("health"),
                "workloads": hb.get("workloads", {}),
            }
    # A hub also knows nodes from their documents (even if never heard from directly).
    for name in state.doc_names:
        kind, _sep, ident = name.partition("/")
        if kind != "node" or ident in out:
            continue
        view = state.read(name, schema.read_node)
        info = dict(view.info)
        out[ident] = {
            "node": ident,
            "site": info.get("site"),
            "role": info.get("role"),
            "self": False,
            "up": False,
            "last_seen": None,
            "health": None,
            "workloads": phase_counts(view.status),
        }
    return [out[k] for k in sorted(out)]
