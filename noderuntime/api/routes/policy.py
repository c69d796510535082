"""Workload security policy in the fleet document (issue 13 §4): what a spec may take from its
host, per workload, per site or both (:mod:`noderuntime.spec.policy` says what each allowance
permits).

Written by operators only: on an enrolled node a change must be signed with ``--as`` (hubs and
nodes cannot sign fleet content, see ``check_fleet_write``), and a technician's PIN never
widens policy, on any node.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from pycrdt import Doc

from noderuntime.api.routes.common import (
    actor,
    audit_policy_refusal,
    check_fleet_write,
    prepared,
)
from noderuntime.api.server import Params, Route
from noderuntime.api.services import NodeServices
from noderuntime.crdt import schema
from noderuntime.crdt.hlc import Hlc
from noderuntime.errors import ApiError, PermissionDeniedError
from noderuntime.spec import policy


def routes(svc: NodeServices) -> dict[str, Route]:
    return {
        "policy.allow": Route(
            partial(allow, svc),
            write=True,
            doc="allow (or with remove, take back) what workloads may take from their host",
        ),
        "policy.list": Route(partial(list_policy, svc), doc="the fleet's workload policy"),
    }


def _name(params: Params, key: str) -> str:
    value = params.get(key)
    if value is None or value == "":
        return policy.POLICY_ANY
    if not isinstance(value, str) or "/" in value:
        raise ApiError(f"{key} must be a name (or omitted for every {key})", code="bad_request")
    return value


async def allow(svc: NodeServices, params: Params) -> dict[str, Any]:
    if actor(params) is not None:
        # Issue 13 §6: a PIN opens the console, not the fleet's policy.
        audit_policy_refusal(svc, params, at="policy.allow")
        raise PermissionDeniedError(
            "a technician cannot widen fleet policy; an operator changes it with "
            "`noderuntime policy allow ... --as FLEETDIR`"
        )
    items = params.get("allow")
    if not isinstance(items, list) or not items or not all(isinstance(i, str) for i in items):
        raise ApiError("allow must be a non-empty list of allowances", code="bad_request")
    bad = [why for why in map(policy.check_allowance, items) if why is not None]
    if bad:
        raise ApiError("; ".join(bad), code="bad_request")
    site, workload = _name(params, "site"), _name(params, "workload")
    key = policy.policy_key(site, workload)
    current = set(svc.state.snapshot().fleet.policy.get(key, frozenset()))
    new = current - set(items) if params.get("remove") else current | set(items)
    summary = f"policy {key}: {', '.join(sorted(new)) or 'nothing'}"

    def mutate(doc: Doc[Any]) -> Hlc:
        return schema.set_policy(doc, key, sorted(new))

    out: dict[str, Any] = {"site": site, "workload": workload, "allowed": sorted(new)}
    if params.get("prepare"):
        return out | {"prepared": prepared(svc.state, svc.state.fleet_doc, mutate, summary)}
    if new != current:
        check_fleet_write(svc, params)
        await svc.state.write(svc.state.fleet_doc, mutate, summary=summary)
    return out


async def list_policy(svc: NodeServices, _: Params) -> list[dict[str, Any]]:
    entries = svc.state.snapshot().fleet.policy
    out = []
    for key in sorted(entries):
        site, _sep, workload = key.partition("/")
        out.append({"site": site, "workload": workload, "allowed": sorted(entries[key])})
    return out
