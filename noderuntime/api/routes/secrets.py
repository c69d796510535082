"""Control API routes for fleet secrets (``secret.targets``, ``secret.set``, ``secret.ls``,
``secret.rm``).

The node never sees a value: the operator's CLI asks ``secret.targets`` which held nodes a
selector names and their sealing keys, seals the value to each itself, and sends only the boxes
to ``secret.set``, which checks and stores (or prepares, for ``--as``) the record. ``secret.ls``
shows names, versions and targets, never a box.
"""

from __future__ import annotations

import re
from functools import partial
from typing import Any

from pycrdt import Doc

from noderuntime.api.routes.common import actor, check_fleet_write, prepared, str_param
from noderuntime.api.server import Params, Route
from noderuntime.api.services import NodeServices
from noderuntime.crdt import schema
from noderuntime.errors import ApiError, NotFoundError, SecretError
from noderuntime.reconcile.secrets import (
    check_record,
    current_version,
    listing,
    match_targets,
)

_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\Z")


def routes(svc: NodeServices) -> dict[str, Route]:
    return {
        "secret.targets": Route(
            partial(targets, svc), doc="the held nodes a selector names, with sealing keys"
        ),
        "secret.set": Route(partial(set_secret, svc), write=True, doc="store a sealed secret"),
        "secret.ls": Route(partial(ls, svc), doc="secrets: names, versions, targets"),
        "secret.rm": Route(partial(rm, svc), write=True, doc="remove a secret everywhere"),
    }


def _name(params: Params) -> str:
    name = str_param(params, "name")
    if not _NAME_RE.match(name):
        raise ApiError(
            f"invalid secret name {name!r}: use 1-63 lowercase letters, digits and '-', "
            "starting and ending with a letter or digit",
            code="bad_request",
        )
    return name


def _strings(params: Params, key: str) -> list[str]:
    value = params.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ApiError(f"parameter {key!r} must be a list of strings", code="bad_request")
    return value


def _held_nodes(svc: NodeServices) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for doc_name in svc.state.doc_names:
        kind, _, ident = doc_name.partition("/")
        if kind != "node":
            continue
        view = svc.state.read(doc_name, schema.read_node)
        if isinstance(view, schema.NodeView):
            out.append((ident, dict(view.info)))
    return out


async def targets(svc: NodeServices, params: Params) -> dict[str, Any]:
    name = _name(params)
    labels = params.get("labels") or {}
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        raise ApiError("parameter 'labels' must map label keys to values", code="bad_request")
    nodes, sites = _strings(params, "nodes"), _strings(params, "sites")
    held = _held_nodes(svc)
    found = match_targets(held, node_ids=nodes, sites=sites, labels=labels)
    known = {node_id for node_id, _ in held}
    return {
        "name": name,
        "version": current_version(svc.state.snapshot().fleet.secrets, name) + 1,
        "targets": [{"node": t.node_id, "site": t.site, "sealKey": t.seal_key} for t in found],
        "unknown": sorted(set(nodes) - known),
        "held_nodes": len(held),
    }


async def set_secret(svc: NodeServices, params: Params) -> dict[str, Any]:
    state = svc.state
    name = _name(params)
    record = params.get("record")
    if not isinstance(record, dict):
        raise ApiError("parameter 'record' must be a sealed secret record", code="bad_request")
    try:
        check_record(record, previous=current_version(state.snapshot().fleet.secrets, name))
    except SecretError as exc:
        raise ApiError(str(exc), code="bad_request") from None
    version = record["version"]
    summary = f"secret {name}: version {version} for {len(record['sealed'])} node(s)"

    def mutate(doc: Doc[Any]) -> None:
        schema.put_entry(doc, schema.SECRETS, name, record)

    out: dict[str, Any] = {"name": name, "version": version, "nodes": sorted(record["sealed"])}
    if params.get("prepare"):
        out["prepared"] = prepared(state, state.fleet_doc, mutate, summary)
        return out
    check_fleet_write(svc, params)
    await state.write(state.fleet_doc, mutate, summary=summary, on_behalf=actor(params))
    return out


async def ls(svc: NodeServices, params: Params) -> list[dict[str, Any]]:
    return listing(svc.state.snapshot().fleet.secrets)


async def rm(svc: NodeServices, params: Params) -> dict[str, Any]:
    state = svc.state
    name = _name(params)
    if name not in state.snapshot().fleet.secrets:
        raise NotFoundError(f"no secret {name!r}; see `noderuntime secret ls`")
    summary = f"secret {name}: removed"

    def mutate(doc: Doc[Any]) -> None:
        schema.delete_entry(doc, schema.SECRETS, name)

    out: dict[str, Any] = {"name": name, "removed": True}
    if params.get("prepare"):
        out["prepared"] = prepared(state, state.fleet_doc, mutate, summary)
        return out
    check_fleet_write(svc, params)
    await state.write(state.fleet_doc, mutate, summary=summary, on_behalf=actor(params))
    return out
