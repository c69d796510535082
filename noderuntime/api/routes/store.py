"""The store hold (``crdt/guard.py``): what ``node.status`` says of it, and the two ways out:
``store.reset`` takes the store as it is, ``store.resync`` asks peers for this node's documents.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from noderuntime.api.routes.common import actor
from noderuntime.api.server import Params, Route
from noderuntime.api.services import NodeServices
from noderuntime.errors import ApiError


def routes(svc: NodeServices) -> dict[str, Route]:
    return {
        "store.reset": Route(
            partial(store_reset, svc),
            write=True,
            doc="end a store hold: take the store as it is (destructive)",
        ),
        "store.resync": Route(
            partial(store_resync, svc),
            write=True,
            doc="ask peers for this node's documents now (a held node)",
        ),
    }


def store_hold(svc: NodeServices) -> dict[str, Any] | None:
    """The store hold for status: why, since when, and what it spares (None: not held)."""
    view = svc.store_guard.view()
    if view is None:
        return None
    rec = svc.reconciler
    plan = rec.last_plan
    sync = svc.sync()
    return {
        **view,
        "containers": len(rec.observed),
        "workloads": list(plan.held) if plan is not None else [],
        "resync": sync.resync_view() if sync is not None else None,
    }


async def store_reset(svc: NodeServices, params: Params) -> dict[str, Any]:
    if params.get("confirm") is not True:
        raise ApiError(
            "a reset takes the store as it is and removes every container it does not "
            "name; confirm it (`noderuntime reset --i-mean-it`)",
            code="bad_request",
        )
    ended = await svc.store_guard.release(f"reset by {actor(params) or 'root'}")
    svc.reconciler.trigger("store-reset")
    return {
        "result": "reset" if ended is not None else "not_held",
        "hold": ended.to_dict() if ended is not None else None,
    }


async def store_resync(svc: NodeServices, _: Params) -> dict[str, Any]:
    sync = svc.sync()
    if sync is None or sync.resync_view() is None:
        raise ApiError(
            "this node does not sync (not enrolled, or sync is off: see `noderuntime "
            "status`), so no peer can give its documents back; restore a backup or "
            "`noderuntime reset --i-mean-it`",
            code="not_enrolled",
        )
    guard = svc.store_guard
    if guard.hold is None:
        return {"result": "not_held", "ended": guard.released, "resync": None}
    await sync.anti_entropy()
    return {"result": "asked", "resync": sync.resync_view()}
