"""Helpers every route module uses: reading parameters, who acts, prepared (unsigned) changes."""

from __future__ import annotations

import base64
import binascii
import logging
from typing import Any

from noderuntime.api.server import ACTOR_PARAM, Params
from noderuntime.api.services import NodeServices
from noderuntime.audit.chain import AuditKind
from noderuntime.crdt.mutation import Mutation
from noderuntime.crdt.state import StateStore
from noderuntime.errors import ApiError

NO_WORKLOAD_HINT = "see `noderuntime get workloads`"


def str_param(params: Params, key: str, *, required: bool = True) -> str:
    value = params.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value):
        raise ApiError(f"parameter {key!r} must be a non-empty string", code="bad_request")
    return value


def b64_param(params: Params, key: str) -> bytes:
    try:
        return base64.b64decode(str_param(params, key), validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(f"parameter {key!r} must be base64", code="bad_request") from None


def actor(params: Params) -> str | None:
    """Who the server authenticated for this request (a technician), if anyone."""
    value = params.get(ACTOR_PARAM)
    return value if isinstance(value, str) else None


def audit_policy_refusal(svc: NodeServices, params: Params, **fields: Any) -> None:
    """Record a change refused by the workload security policy (issue 13 §3): names and
    fields only, never values."""
    log = svc.audit_log()
    if log is not None:
        log.record(AuditKind.POLICY_REFUSED, actor(params) or "api", **fields)


def prepared(state: StateStore, doc: str, mutate: Mutation, summary: str) -> dict[str, Any]:
    """The update ``mutate`` would make, unsigned, for an operator's CLI to sign and submit."""
    data, meta = state.prepare_change(doc, mutate, summary)
    return {
        "doc": doc,
        "data": base64.b64encode(data).decode() if data is not None else None,
        "meta": meta,
    }


def check_fleet_write(svc: NodeServices, params: Params) -> None:
    # An enrolled node's own signature (a hub's too: it relays operators' specs, it
    # authors none; issue 13 §6) is not valid on fleet content: peers would refuse it.
    # Say so now instead of letting the change diverge.
    if params.get("prepare") or svc.sync() is None:
        return
    raise ApiError(
        "fleet changes on an enrolled node must be signed by an operator: "
        "run the command with --as FLEETDIR (or set NODERUNTIME_AS)",
        code="operator_signature_required",
    )


_ACTIONS_LOG = logging.getLogger("noderuntime.actions")


def record_action(
    svc: NodeServices,
    params: Params,
    kind: str,
    message: str,
    *,
    audit: AuditKind | None = None,
    **fields: Any,
) -> str:
    """Record a person's action on the node: an event (the console's history shows it), a log
    line, and, with ``audit``, an audit entry with ``fields`` (the server already audits every
    write route by method and actor; this adds what it touched). Returns who acted."""
    who = actor(params) or "root"
    svc.reconciler.note("", kind, f"{message} (by {who})")
    _ACTIONS_LOG.info("%s: %s (by %s)", kind, message, who)
    log = svc.audit_log()
    if audit is not None and log is not None:
        log.record(audit, who, **fields)
    return who
