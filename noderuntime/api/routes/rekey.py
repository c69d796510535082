"""Key rotation routes (``noderuntime rekey``; the flow: :mod:`noderuntime.fleet.rekey`).

node.rekey    at the node: make the pending key, write the request into its own document
rekey.pending anywhere that holds the node's document: the request and the node's claims
rekey.issue   prepare (only): the issued record for the node's document and the old key's
              retirement for the fleet document, for the operator's CLI to sign and submit
"""

from __future__ import annotations

import time
from functools import partial
from typing import Any

from pycrdt import Doc

from noderuntime.api.routes.common import prepared, str_param
from noderuntime.api.server import Params, Route
from noderuntime.api.services import NodeServices
from noderuntime.crdt import schema
from noderuntime.errors import ApiError, NotFoundError
from noderuntime.fleet.rekey import (
    ISSUED,
    REQUEST,
    cert_addresses,
    issued_record,
    parse_request,
    pending_key_path,
    request_record,
    retirement_record,
)
from noderuntime.identity import keys as identity
from noderuntime.identity.principals import node_principal


def routes(svc: NodeServices) -> dict[str, Route]:
    return {
        "node.rekey": Route(
            partial(request, svc), write=True, doc="ask the fleet for a credential for a new key"
        ),
        "rekey.pending": Route(partial(pending, svc), doc="a node's key rotation request"),
        "rekey.issue": Route(
            partial(issue, svc), write=True, doc="prepare a rotation's issue (operator-signed)"
        ),
    }


async def request(svc: NodeServices, params: Params) -> dict[str, Any]:
    trust = svc.fleet_trust()
    node_id = svc.facts.node_id
    path = pending_key_path(trust.dir)
    principal = node_principal(node_id)
    if path.exists():
        new = identity.load_key(path, principal)  # asked before: the same key again
    else:
        new = identity.generate(principal)
        identity.save_key(path, new)
    addresses = cert_addresses(trust.cert_file.read_bytes())
    record = request_record(principal, new, addresses, time.time())

    def mutate(doc: Doc[Any]) -> None:
        schema.put_entry(doc, schema.REKEY, REQUEST, record)

    await svc.state.write(schema.node_doc(node_id), mutate, summary="rekey: new key requested")
    return {"node": node_id, "key_id": new.key_id, "current_key_id": trust.node.key_id}


def _records(svc: NodeServices, node_id: str) -> dict[str, Any]:
    doc = schema.node_doc(node_id)
    if not svc.state.holds(doc):
        raise NotFoundError(
            f"this node does not hold {doc}; run this at a hub (it holds every node's document)"
        )
    return dict(svc.state.read(doc, schema.read_rekey))


async def pending(svc: NodeServices, params: Params) -> dict[str, Any]:
    node_id = str_param(params, "node")
    principal = node_principal(node_id)
    req = parse_request(_records(svc, node_id).get(REQUEST), principal)
    if req is None:
        raise NotFoundError(f"node {node_id} has not asked for a new key (`noderuntime rekey`)")
    current = svc.fleet_trust().member(principal)
    if current is None:
        raise NotFoundError(f"this node has no credential of {principal} yet")
    return {
        "node": node_id,
        "key": req.public_key.hex(),
        "key_id": req.key_id,
        "addresses": list(req.addresses),
        "requested_at": req.at,
        "role": current.role.value,
        "site": current.site,
        "current_key_id": current.key_id,
    }


async def issue(svc: NodeServices, params: Params) -> dict[str, Any]:
    if not params.get("prepare"):
        raise ApiError(
            "a rekey is issued by the fleet authority: `noderuntime rekey --issue NODE --as "
            "FLEETDIR`",
            code="operator_signature_required",
        )
    node_id = str_param(params, "node")
    credential = str_param(params, "credential").encode()
    cert = str_param(params, "cert").encode()
    retire_key = str_param(params, "retireKey")
    after = params.get("retireAfter")
    if isinstance(after, bool) or not isinstance(after, int | float):
        raise ApiError("retireAfter must be a time (unix seconds)", code="bad_request")
    _records(svc, node_id)  # held here
    record = issued_record(credential, cert, float(after))
    principal = node_principal(node_id)

    def on_node(doc: Doc[Any]) -> None:
        schema.put_entry(doc, schema.REKEY, ISSUED, record)

    def on_fleet(doc: Doc[Any]) -> None:
        schema.put_entry(
            doc, schema.RETIRED_KEYS, retire_key, retirement_record(principal, float(after))
        )

    state = svc.state
    return {
        "prepared": [
            prepared(state, schema.node_doc(node_id), on_node, f"rekey {node_id}: issued"),
            prepared(state, state.fleet_doc, on_fleet, f"rekey {node_id}: retire old key"),
        ]
    }
