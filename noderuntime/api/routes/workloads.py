"""Workloads on this node: list and describe them, read their logs, restart their container."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

from noderuntime.api.routes.common import NO_WORKLOAD_HINT, actor, str_param
from noderuntime.api.routes.history import concurrent_writes
from noderuntime.api.server import Params, Route
from noderuntime.api.services import NodeServices
from noderuntime.api.views import shown_status, workload_view
from noderuntime.crdt.schema import StatusRecord
from noderuntime.errors import ApiError, NotFoundError
from noderuntime.reconcile.desired import DesiredWorkload
from noderuntime.reconcile.secrets import plain_hash
from noderuntime.runtime.base import ContainerState, ObservedContainer

MAX_LOG_TAIL = 100_000
# A container may print a line of any length; one line is one API message, and a message over
# the protocol's limit would break the stream again at every reconnect (the tail re-sends it).
MAX_LOG_LINE_CHARS = 64 * 1024
EVENTS_PER_WORKLOAD = 50


def routes(svc: NodeServices) -> dict[str, Route]:
    return {
        "workloads.list": Route(
            partial(list_workloads, svc), doc="every workload with desired and observed state"
        ),
        "workloads.get": Route(
            partial(get_workload, svc), doc="one workload, with provenance and events"
        ),
        "workloads.logs": Route(
            stream=partial(logs, svc), doc="log lines of a workload's container"
        ),
        "workloads.restart": Route(
            partial(restart, svc), write=True, doc="restart a workload's container"
        ),
    }


def shown(svc: NodeServices, name: str) -> tuple[StatusRecord | None, str | None]:
    """The status a view shows for ``name`` and the store's problem beside it (see
    :func:`~noderuntime.api.views.shown_status`)."""
    rec = svc.reconciler
    return shown_status(
        svc.state.snapshot().node.status.get(name),
        rec.live_status.get(name),
        observed=rec.observed_once,
        write_error=rec.status_write_error or svc.state.store_error,
    )


def views(svc: NodeServices) -> list[dict[str, Any]]:
    """Every workload this node wants or knows of (invalid ones too), sorted by name."""
    snap = svc.state.snapshot()
    desired = svc.reconciler.desired
    names = set(desired.workloads) if desired else set()
    invalid = dict(desired.invalid) if desired else {}
    out = []
    for name in sorted(names | set(invalid)):
        status, problem = shown(svc, name)
        dw = desired.workloads.get(name) if desired else None
        out.append(
            workload_view(
                name,
                dw,
                status,
                invalid_reason=invalid.get(name),
                stored_spec=snap.fleet.workloads.get(name),
                now=time.time(),
                store_problem=problem,
            )
        )
        placement = placement_view(svc, name, dw)
        if placement is not None:
            out[-1]["placement"] = placement
    return out


def placement_view(
    svc: NodeServices, name: str, dw: DesiredWorkload | None
) -> dict[str, Any] | None:
    """A placed workload's replicas and who holds its slots (site quorum); None if not placed."""
    p = dw.workload.spec.placement if dw is not None else None
    if p is None:
        return None
    site = svc.site_manager()
    slots = site.slots_of(name) if site is not None else []
    return {
        "replicas": p.replicas,
        "slots": [{"slot": s.slot, "node": s.node, "since": s.since} for s in slots],
    }


async def list_workloads(svc: NodeServices, _: Params) -> list[dict[str, Any]]:
    return views(svc)


async def get_workload(svc: NodeServices, params: Params) -> dict[str, Any]:
    name = str_param(params, "name")
    rec = svc.reconciler
    for view in views(svc):
        if view["name"] == name:
            events = [e.to_dict() for e in rec.events if e.workload == name]
            view["events"] = events[-EVENTS_PER_WORKLOAD:]
            view["containers"] = [container_view(c) for c in rec.observed if c.workload == name]
            view["probes"] = svc.probe_results(name)
            view["concurrent_writes"] = await concurrent_writes(svc.state, name)
            return view
    raise NotFoundError(f"no workload {name!r} on this node; {NO_WORKLOAD_HINT}")


def kept_container(svc: NodeServices, name: str) -> ObservedContainer:
    """The container a workload's logs and restarts are about: the current spec's, running
    first."""
    rec = svc.reconciler
    desired = rec.desired
    if desired is None or name not in desired.workloads:
        raise NotFoundError(f"no workload {name!r} on this node; {NO_WORKLOAD_HINT}")
    want = desired.workloads[name].spec_hash
    cands = [c for c in rec.observed if c.workload == name]
    cands.sort(
        key=lambda c: (plain_hash(c.spec_hash) != want, c.state is not ContainerState.RUNNING)
    )
    if not cands:
        raise NotFoundError(f"workload {name!r} has no container yet; {NO_WORKLOAD_HINT}")
    return cands[0]


def clip_log_line(line: str, limit: int = MAX_LOG_LINE_CHARS) -> str:
    if len(line) <= limit:
        return line
    return f"{line[:limit]} [... {len(line) - limit} more characters cut by noderuntime]"


async def logs(svc: NodeServices, params: Params) -> AsyncIterator[str]:
    name = str_param(params, "name")
    follow = bool(params.get("follow", False))
    tail = params.get("tail")
    if tail is not None and (not isinstance(tail, int) or tail < 0 or tail > MAX_LOG_TAIL):
        raise ApiError(f"tail must be an integer between 0 and {MAX_LOG_TAIL}", code="bad_request")
    # Added 2026-12-03: each line starts with its RFC 3339 time (the console shows the time
    # and a divider per container start). Off by default: older clients get the same lines.
    timestamps = params.get("timestamps", False)
    if not isinstance(timestamps, bool):
        raise ApiError("timestamps must be true or false", code="bad_request")
    container = kept_container(svc, name)
    async for line in svc.runtime.logs(
        container.id, follow=follow, tail=tail, timestamps=timestamps
    ):
        yield clip_log_line(line)


async def restart(svc: NodeServices, params: Params) -> dict[str, str]:
    name = str_param(params, "name")
    container = kept_container(svc, name)
    rec = svc.reconciler
    await rec.restart_container(name, container.id)
    rec.set_health(name, None)
    rec.note(name, "restarted", f"restarted by {actor(params) or 'root'}")
    return {"name": name, "result": "restarted", "container_id": container.id}


def container_view(c: ObservedContainer) -> dict[str, Any]:
    return {
        "id": c.id,
        "name": c.name,
        "state": c.state.value,
        "spec_hash": plain_hash(c.spec_hash),
        "image": c.image,
        "exit_code": c.exit_code,
        "started_at": c.started_at,
        "finished_at": c.finished_at,
        "ip_address": c.ip_address,
    }
