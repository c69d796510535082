"""Overrides of a workload's fields for this node or its site; stop and start are overrides of
``enabled``.

A node override is signed by the node itself (for the technician who asked, if any); a site
override may be prepared here and signed by an operator (``prepare: true``), like a fleet change.
"""

from __future__ import annotations

import json
from functools import partial
from typing import Any

from pycrdt import Doc

from noderuntime.api.routes.common import actor, audit_policy_refusal, prepared, str_param
from noderuntime.api.server import ACTOR_PARAM, Params, Route
from noderuntime.api.services import NodeServices
from noderuntime.crdt import schema
from noderuntime.crdt.hlc import Hlc
from noderuntime.errors import ApiError, NotFoundError, PolicyError
from noderuntime.reconcile.desired import (
    ENABLED,
    OVERRIDE_FIELDS,
    POLICY_FIELDS,
    check_override,
)

SCOPE_NODE = "node"
SCOPE_SITE = "site"


def routes(svc: NodeServices) -> dict[str, Route]:
    return {
        "workloads.stop": Route(
            partial(stop, svc), write=True, doc="disable a workload on this node"
        ),
        "workloads.start": Route(
            partial(start, svc), write=True, doc="re-enable a workload on this node"
        ),
        "overrides.fields": Route(fields, doc="the fields an override may set"),
        "overrides.set": Route(partial(set_override, svc), write=True, doc="set a node override"),
        "overrides.remove": Route(
            partial(remove_override, svc), write=True, doc="remove a node override"
        ),
    }


def override_scope(svc: NodeServices, params: Params) -> tuple[str, str]:
    """Which document an override goes to: this node's (default) or its whole site's."""
    scope = params.get("scope", SCOPE_NODE)
    if scope == SCOPE_NODE:
        return scope, svc.state.node_doc
    if scope == SCOPE_SITE:
        return scope, svc.state.site_doc
    raise ApiError(f"scope must be 'node' or 'site', not {scope!r}", code="bad_request")


def signed_by_operator(params: Params, scope: str) -> bool:
    """True if an operator will sign this override (``prepare``); refuse it on a node doc."""
    if not params.get("prepare"):
        return False
    if scope != SCOPE_SITE:
        # node/<id> is written by its node alone (the writer ACL): an operator's signature
        # there would be refused by every peer.
        raise ApiError(
            "a node override is signed by the node itself; drop --as, or use "
            "--scope site to sign a site-wide override as the operator",
            code="bad_request",
        )
    return True


async def fields(_: Params) -> dict[str, Any]:
    """``env.<NAME>`` stands for any variable name (see ``reconcile/desired.py``);
    ``needPolicy``: those a fleet policy must allow (resources only when raised)."""
    return {"fields": list(OVERRIDE_FIELDS), "needPolicy": list(POLICY_FIELDS)}


async def set_override(svc: NodeServices, params: Params) -> dict[str, Any]:
    state = svc.state
    workload = str_param(params, "workload")
    field_path = str_param(params, "field")
    if "value" not in params:
        raise ApiError("parameter 'value' is required", code="bad_request")
    value = params["value"]
    snap = state.snapshot()
    if workload not in snap.fleet.workloads:
        raise NotFoundError(f"no workload {workload!r} to override")
    try:
        check_override(snap, workload, field_path, value, site=svc.facts.site)
    except PolicyError:
        audit_policy_refusal(svc, params, workload=workload, field=field_path, at="override")
        raise
    scope, doc_name = override_scope(svc, params)
    summary = f"override {workload} {field_path}={json.dumps(value)} ({scope})"
    out: dict[str, Any] = {
        "workload": workload,
        "field": field_path,
        "value": value,
        "scope": scope,
    }

    def mutate(doc: Doc[Any]) -> Hlc:
        return schema.set_override(doc, workload, field_path, value)

    if signed_by_operator(params, scope):
        return out | {"prepared": prepared(state, doc_name, mutate, summary)}
    await state.write(doc_name, mutate, summary=summary, on_behalf=actor(params))
    return out


async def remove_override(svc: NodeServices, params: Params) -> dict[str, Any]:
    state = svc.state
    workload = str_param(params, "workload")
    field_path = str_param(params, "field")
    check_override(state.snapshot(), workload, field_path, None, removing=True)
    removed = False

    def mutate(doc: Doc[Any]) -> Hlc:
        nonlocal removed
        key = schema.override_key(workload, field_path)
        hlc = schema.write_hlc(doc, {schema.OVERRIDES: [key]})
        removed = schema.remove_override(doc, workload, field_path, hlc)
        return hlc

    scope, doc_name = override_scope(svc, params)
    summary = f"remove override {workload} {field_path} ({scope})"
    missing = f"no {scope} override of {field_path!r} on workload {workload!r}"
    if signed_by_operator(params, scope):
        out = prepared(state, doc_name, mutate, summary)
        if not removed:
            raise NotFoundError(missing)
        return {"workload": workload, "field": field_path, "scope": scope, "prepared": out}
    await state.write(doc_name, mutate, summary=summary, on_behalf=actor(params))
    if not removed:
        raise NotFoundError(missing)
    return {"workload": workload, "field": field_path, "removed": True, "scope": scope}


async def stop(svc: NodeServices, params: Params) -> dict[str, Any]:
    return await set_override(
        svc,
        {
            "workload": params.get("name"),
            "field": ENABLED,
            "value": False,
            ACTOR_PARAM: params.get(ACTOR_PARAM),
        },
    )


async def start(svc: NodeServices, params: Params) -> dict[str, Any]:
    name = str_param(params, "name")
    try:
        return await remove_override(
            svc, {"workload": name, "field": ENABLED, ACTOR_PARAM: params.get(ACTOR_PARAM)}
        )
    except NotFoundError:
        if name not in svc.state.snapshot().fleet.workloads:
            raise
        return {"workload": name, "field": ENABLED, "removed": False}
