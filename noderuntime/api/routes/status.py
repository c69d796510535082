"""``node.status``: node, store, Podman, reconciler, workloads, sync and host in one answer."""

from __future__ import annotations

import os
import platform
import shutil
import time
from functools import partial
from typing import Any

from noderuntime import __version__
from noderuntime.api.hostmetrics import CpuMeter, host_metrics
from noderuntime.api.routes.store import store_hold
from noderuntime.api.routes.workloads import shown
from noderuntime.api.server import Params, Route
from noderuntime.api.services import NodeServices
from noderuntime.errors import NotEnrolledError
from noderuntime.reconcile.loop import phase_counts

# Records set aside listed in `status` (all are counted in quarantined_total).
MAX_QUARANTINED_SHOWN = 100
# Audit alerts (a node's log found cut or rewritten) listed in `status`, newest.
MAX_ALERTS_SHOWN = 20


def routes(svc: NodeServices) -> dict[str, Route]:
    # One meter per server: each status call reports the CPU use since the previous one.
    meter = CpuMeter()
    return {
        "node.status": Route(
            partial(status, svc, meter), doc="node, store, Podman and workload summary"
        ),
    }


async def status(svc: NodeServices, meter: CpuMeter, _: Params) -> dict[str, Any]:
    disk = shutil.disk_usage(svc.facts.data_dir)
    sync = svc.sync()
    return {
        "node": _node(svc),
        "store": await _store(svc),
        "podman": _podman(svc),
        "reconciler": _reconciler(svc),
        "workloads": _workloads(svc),
        "sync": (
            sync.status() if sync is not None else {"enabled": False, "problem": svc.sync_problem()}
        )
        | _own_revocation(svc),
        "host": {
            **host_metrics(meter),
            "disk_total_bytes": disk.total,
            "disk_free_bytes": disk.free,
        },
        "audit": await _audit(svc),
    }


async def _audit(svc: NodeServices) -> dict[str, Any]:
    """The audit log's head and newest checkpoint; at a hub, nodes found with a log tampered."""
    log = svc.audit_log()
    if log is None:
        return {"enabled": False}
    cp = log.last_checkpoint
    alerts = await svc.witness_alerts()
    return {
        "enabled": True,
        "entries": log.head_seq,
        "last_checkpoint": None if cp is None else {"seq": cp.seq, "ts": cp.ts},
        "error": log.last_error,
        "witness_alerts": [a.to_dict() for a in alerts[-MAX_ALERTS_SHOWN:]],
    }


def _own_revocation(svc: NodeServices) -> dict[str, Any]:
    """``revoked``: this node's own revocation, when its key is revoked (the fleet refuses it;
    its workloads keep running here; docs/operations.md, Revocation)."""
    try:
        own = svc.fleet_trust().own_revocation
    except NotEnrolledError:
        return {}
    return {"revoked": own.to_dict()} if own is not None else {}


def _node(svc: NodeServices) -> dict[str, Any]:
    facts = svc.facts
    return {
        "id": facts.node_id,
        "site": facts.site,
        "role": facts.role,
        "labels": dict(facts.labels),
        "version": __version__,
        "hostname": platform.node(),
        "pid": os.getpid(),
        "started_at": facts.started_at,
        "uptime_s": time.time() - facts.started_at,
        "data_dir": str(facts.data_dir),
        "api_socket": str(facts.api_socket),
    }


async def _store(svc: NodeServices) -> dict[str, Any]:
    state = svc.state
    stats = await state.store_stats()
    hold = store_hold(svc)
    quarantined = state.quarantined()
    return {
        "path": stats.path,
        # Cheap signals only (no integrity check per call): the latest commit and
        # what could not be read at load.
        "healthy": state.store_error is None
        and svc.reconciler.status_write_error is None
        and not state.load_problems
        and not hold,
        "error": state.store_error
        or svc.reconciler.status_write_error
        or (hold["reason"] if hold else None)
        or (
            f"{state.load_problems} unreadable update(s) or snapshot(s) skipped at load;"
            " see the node's log"
            if state.load_problems
            else None
        ),
        "updates": stats.updates,
        "snapshots": stats.snapshots,
        "size_bytes": stats.size_bytes,
        "schema_version": stats.schema_version,
        "documents": state.doc_names,
        "writes_since_start": state.writes,
        "last_write_at": state.last_write_at,
        "load_problems": state.load_problems,
        "last_write_error": state.last_write_error,
        "hold": hold,
        # Records no reader can use, set aside so everything else goes on; an operator
        # removes them with `noderuntime record rm DOC MAP KEY`.
        "quarantined": [q.to_dict() for q in quarantined[:MAX_QUARANTINED_SHOWN]],
        "quarantined_total": len(quarantined),
    }


def _podman(svc: NodeServices) -> dict[str, Any]:
    rec = svc.reconciler
    restarts = svc.podman_service_restarts()
    return {
        "socket": str(svc.facts.podman_socket),
        # Not before a pass has recorded what it observed: a status read right after a start
        # would otherwise show the one held from before as current.
        "connected": rec.runtime_error is None and rec.observed_once,
        "error": rec.runtime_error,
        "connected_since": rec.runtime_ok_since,
        "supervised": restarts is not None,
        "service_restarts": restarts,
    }


def _reconciler(svc: NodeServices) -> dict[str, Any]:
    rec = svc.reconciler
    return {
        "passes": rec.passes,
        "last_pass_at": rec.last_pass_at,
        "converged": rec.converged,
        "status_write_error": rec.status_write_error,
    }


def _workloads(svc: NodeServices) -> dict[str, Any]:
    rec = svc.reconciler
    desired = rec.desired
    known = {*svc.state.snapshot().node.status, *rec.live_status}
    return {
        "desired": len(desired.workloads) if desired else 0,
        "invalid": len(desired.invalid) if desired else 0,
        "not_selected": sorted(desired.not_selected) if desired else [],
        "phases": phase_counts({n: r for n in known if (r := shown(svc, n)[0])}),
    }
