"""The audit trail: entries (listed, followed, exported), chain verification, hub findings."""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import partial
from typing import Any

from noderuntime.api.server import Params, Route
from noderuntime.api.services import NodeServices
from noderuntime.audit.log import Audit
from noderuntime.errors import ApiError

MAX_PAGE = 5000
DEFAULT_PAGE = 200


def routes(svc: NodeServices) -> dict[str, Route]:
    return {
        "audit.list": Route(
            partial(list_entries, svc),
            doc="audit entries: the newest, or after a seq / since a time, oldest first",
        ),
        "audit.follow": Route(
            stream=partial(follow, svc), doc="audit entries as they are recorded (stream)"
        ),
        "audit.verify": Route(
            partial(verify, svc), doc="check the audit hash chain and its signed checkpoints"
        ),
        "audit.witness": Route(
            partial(witness, svc), doc="at a hub: nodes whose audit log was cut or rewritten"
        ),
    }


def _log(svc: NodeServices) -> Audit:
    log = svc.audit_log()
    if log is None:
        raise ApiError("this node keeps no audit log", code="not_found")
    return log


def _int(params: Params, key: str, default: int, top: int | None = None) -> int:
    value = params.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ApiError(f"parameter {key!r} must be a non-negative integer", code="bad_request")
    return min(value, top) if top is not None else value


def _since(params: Params) -> float | None:
    value = params.get("since")
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ApiError("parameter 'since' must be a Unix time in seconds", code="bad_request")
    return float(value)


async def list_entries(svc: NodeServices, params: Params) -> dict[str, Any]:
    log = _log(svc)
    limit = max(_int(params, "limit", DEFAULT_PAGE, MAX_PAGE), 1)
    since = _since(params)
    if "after" in params or since is not None:
        found = await log.store.entries(
            after_seq=_int(params, "after", 0), since_ts=since, limit=limit
        )
    else:
        await log.flush()
        found = await log.store.newest(limit)
    return {"entries": [e.to_dict() for e in found], "head": log.head_seq}


async def follow(svc: NodeServices, params: Params) -> AsyncIterator[dict[str, Any]]:
    log = _log(svc)
    async for e in log.follow(_int(params, "after", log.head_seq)):
        yield e.to_dict()


async def verify(svc: NodeServices, params: Params) -> dict[str, Any]:
    log = _log(svc)
    verdict = await log.verify()
    out = verdict.to_dict()
    cp = log.last_checkpoint
    out["last_checkpoint"] = cp.to_dict() if cp is not None else None
    return out


async def witness(svc: NodeServices, params: Params) -> dict[str, Any]:
    return {"alerts": [a.to_dict() for a in await svc.witness_alerts()]}
