"""Control API routes of site quorum: ``site.status``, ``site.drain``, ``site.uncordon``.

The site manager (``noderuntime/site/manager.py``) answers for leases and members; the node's
own nats-server answers for the cluster (``/routez``, ``/jsz`` on its loopback monitor port).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any

from noderuntime.api.server import Params, Route
from noderuntime.api.services import NodeServices
from noderuntime.errors import ApiError, InvalidInputError
from noderuntime.site.manager import CORDON_PREFIX, SiteManager

Monitor = Callable[[str], Awaitable[dict[str, Any] | None]]


def routes(svc: NodeServices) -> dict[str, Route]:
    return site_routes(lambda: svc.site_manager(), lambda path: svc.nats_monitor(path))


def site_routes(manager: Callable[[], SiteManager | None], monitor: Monitor) -> dict[str, Route]:
    def need() -> SiteManager:
        m = manager()
        if m is None:
            raise ApiError("site quorum is not running on this node yet", code="site_unavailable")
        return m

    async def status(_: Params) -> dict[str, Any]:
        return await site_status(need(), monitor)

    async def cordon(params: Params, on: bool) -> dict[str, Any]:
        node = params.get("node")
        if not isinstance(node, str) or not node or len(node) > 128:
            raise InvalidInputError("give the node to drain or uncordon: site drain NODE")
        m = need()
        key = CORDON_PREFIX + node
        if on:
            await m.store.put(key, json.dumps({"by": params.get("_actor")}).encode())
        else:
            entry = await m.store.read(key)
            if entry.revision is not None and not entry.deleted:
                await m.store.delete(key, entry.revision)
        m.wake()
        return {"node": node, "cordoned": on}

    async def drain(params: Params) -> dict[str, Any]:
        return await cordon(params, True)

    async def uncordon(params: Params) -> dict[str, Any]:
        return await cordon(params, False)

    return {
        "site.status": Route(status, doc="site cluster members, meta leader, quorum, leases"),
        "site.drain": Route(
            drain, write=True, doc="move a node's placed instances to others (maintenance)"
        ),
        "site.uncordon": Route(uncordon, write=True, doc="let a drained node hold slots again"),
    }


async def site_status(m: SiteManager, monitor: Monitor) -> dict[str, Any]:
    """What `noderuntime site status` shows. Every part is best effort: a part that cannot be
    read says so, and the rest is still shown."""
    jsz = await monitor("/jsz?leader-only=0") if not m.alone else None
    routez = await monitor("/routez") if not m.alone else None
    meta = (jsz or {}).get("meta_cluster") or {}
    replicas = meta.get("replicas") or []
    cluster_size = int(meta.get("cluster_size") or 0)
    current = 1 + sum(1 for r in replicas if r.get("current") and not r.get("offline"))
    quorum: bool | None
    if m.alone:
        quorum = True
    elif cluster_size:
        # A follower cut off keeps its old leader's name (and "current" flags) until an
        # election times out; a lease store that stops answering tells sooner.
        quorum = bool(meta.get("leader")) and current * 2 > cluster_size and m.problem is None
    else:
        quorum = None
    store = store_usage(jsz)
    kv_problem = m.problem
    if store is not None and store["full"]:
        kv_problem = full_store_problem(store, m.problem)
    return {
        "node": m.node_id,
        "mode": "alone" if m.alone else "cluster",
        "quorum": quorum,
        "meta_leader": meta.get("leader"),
        "cluster_size": cluster_size or None,
        "routes": [
            {"name": r.get("remote_name") or r.get("remote_id"), "ip": r.get("ip")}
            for r in (routez or {}).get("routes") or []
        ],
        "members": m.members(),
        "jetstream": store,
        "kv": {
            "healthy": kv_problem is None,
            "problem": kv_problem,
            "store_errors": m.store_errors,
            "renewals": m.renewals,
            "elections": m.elections,
            "handoffs": m.handoffs,
        },
        "cordoned": m.cordoned,
        "leases": [asdict(row) for row in m.lease_table()],
    }


# A store this full has no room for a Raft log entry: measured, every stream of the site loses
# its leader (writes: NoStreamResponse) until something is deleted.
FULL_FRACTION = 0.95
MIB = 1024 * 1024


def store_usage(jsz: dict[str, Any] | None) -> dict[str, Any] | None:
    """This node's JetStream file store from /jsz: used and limit (bytes), and whether full."""
    if not jsz:
        return None
    used, limit = jsz.get("storage"), (jsz.get("config") or {}).get("max_storage")
    if not isinstance(used, int) or not isinstance(limit, int) or limit <= 0:
        return None
    return {
        "storage_bytes": used,
        "max_storage_bytes": limit,
        "full": used >= limit * FULL_FRACTION,
    }


def full_store_problem(store: dict[str, Any], problem: str | None) -> str:
    return (
        f"this node's JetStream store is full ({store['storage_bytes'] / MIB:.1f} of "
        f"{store['max_storage_bytes'] / MIB:.1f} MiB): no lease can be written, so placed "
        "instances are fenced until streams other than the site's lease bucket are deleted"
        + (f" (last store error: {problem})" if problem else "")
    )
