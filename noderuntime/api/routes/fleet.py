"""Changes to the fleet document (workload specs, policy locks) and operator-signed updates.

Operator-signed changes (``--as FLEETDIR``): ``workloads.apply``, ``workloads.delete`` and
``policy.lock`` with ``prepare: true`` validate and return the update the change would make
(made on a scratch copy of the document, nothing stored); the CLI signs it with the operator's
key and sends it to ``updates.submit``, which verifies it exactly like an update from a peer
and ingests it.
"""

from __future__ import annotations

import time
from functools import partial
from typing import Any

from pycrdt import Doc

from noderuntime.api.routes.common import (
    actor,
    audit_policy_refusal,
    b64_param,
    check_fleet_write,
    prepared,
    str_param,
)
from noderuntime.api.server import Params, Route
from noderuntime.api.services import NodeServices
from noderuntime.crdt import schema
from noderuntime.crdt.hlc import Hlc
from noderuntime.crdt.schema import LOCK_ALL
from noderuntime.crdt.store import NewUpdate
from noderuntime.errors import ApiError, ConflictError, NotFoundError
from noderuntime.identity.principals import node_principal
from noderuntime.reconcile.desired import LOCKABLE_FIELDS, is_lockable
from noderuntime.rollout import commands as rollout_commands
from noderuntime.rollout import revisions
from noderuntime.spec import policy as spec_policy
from noderuntime.spec.models import Workload, canonical_dict, spec_hash
from noderuntime.spec.parse import parse_workloads


def routes(svc: NodeServices) -> dict[str, Route]:
    return {
        "updates.submit": Route(
            partial(submit, svc),
            write=True,
            doc="ingest an operator-signed update (verified like a peer's)",
        ),
        "workloads.apply": Route(
            partial(apply, svc), write=True, doc="validate and record workload specs"
        ),
        "policy.lock": Route(
            partial(lock, svc), write=True, doc="lock or unlock workload fields (fleet policy)"
        ),
        "workloads.delete": Route(
            partial(delete, svc), write=True, doc="delete a workload everywhere"
        ),
    }


async def apply(svc: NodeServices, params: Params) -> Any:
    state = svc.state
    text = str_param(params, "yaml")
    source = params.get("source") if isinstance(params.get("source"), str) else None

    def refused(w: Workload, found: list[spec_policy.Refusal]) -> None:
        needs = ", ".join(r.allowance for r in found)
        audit_policy_refusal(svc, params, workload=w.metadata.name, needs=needs, at="apply")

    check = spec_policy.apply_check(state.snapshot().fleet.policy, refused)
    workloads = parse_workloads(text, source, check=check)
    current = state.snapshot().fleet.workloads
    results: list[dict[str, str]] = []
    changed = []
    hashes: dict[str, str] = {}
    for w in workloads:
        canon = canonical_dict(w)
        name = w.metadata.name
        old = current.get(name)
        if old == canon:
            results.append({"name": name, "result": "unchanged"})
            continue
        if rollout_commands.active(state.snapshot().fleet, name) is not None:
            raise ConflictError(
                f"a rollout of {name!r} is in progress: abort it (`noderuntime rollout "
                f"abort {name}`) or wait for it before applying a new spec"
            )
        changed.append((name, canon))
        hashes[name] = spec_hash(w)
        results.append({"name": name, "result": "created" if old is None else "configured"})

    # Every change is a revision (noderuntime/rollout/revisions.py): history and undo.
    fleet, now = state.snapshot().fleet, time.time()
    who = params.get("author") or actor(params) or node_principal(svc.facts.node_id)
    revs = [
        revisions.revision_record(
            name,
            revisions.latest_number(fleet, name) + 1,
            canon,
            hashes[name],
            author=str(who),
            at=now,
            note="apply",
        )
        for name, canon in changed
    ]

    # The revision being replaced stays: it is the one `rollout undo` goes back to.
    prune = [
        key
        for (name, _), rev in zip(changed, revs, strict=True)
        for key in revisions.pruned_keys(
            fleet,
            name,
            int(rev["revision"]),
            frozenset({int(rev["revision"]) - 1}),
        )
    ]

    def mutate(doc: Doc[Any]) -> Hlc:
        hlc = schema.write_hlc(doc, {schema.WORKLOADS: [n for n, _ in changed]})
        for (name, canon), rev in zip(changed, revs, strict=True):
            schema.put_workload(doc, name, canon, hlc)
            key = revisions.revision_key(name, int(rev["revision"]))
            schema.put_entry(doc, schema.REVISIONS, key, rev)
        for key in prune:
            schema.remove_record(doc, schema.REVISIONS, key)
        return hlc

    summary = "apply " + ", ".join(f"{n}" for n, _ in changed)
    if params.get("prepare"):
        return {"results": results, "prepared": prepared(state, state.fleet_doc, mutate, summary)}
    if changed:
        check_fleet_write(svc, params)
        await state.write(state.fleet_doc, mutate, summary=summary, on_behalf=actor(params))
    return results


async def lock(svc: NodeServices, params: Params) -> dict[str, Any]:
    """Fleet policy: the fields of a workload no site or node override may change."""
    state = svc.state
    name = str_param(params, "workload")
    fields = params.get("fields")
    if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields):
        raise ApiError("fields must be a list of field paths", code="bad_request")
    bad = [f for f in fields if not is_lockable(f)]
    if bad:
        raise ApiError(
            f"cannot lock {', '.join(map(repr, bad))}: lockable are {LOCK_ALL!r} (everything), "
            + ", ".join(LOCKABLE_FIELDS),
            code="bad_request",
        )
    snap = state.snapshot()
    if name not in snap.fleet.workloads:
        raise NotFoundError(f"no workload {name!r}; see `noderuntime get workloads`")
    current = set(snap.fleet.locks.get(name, frozenset()))
    new = current | set(fields) if not params.get("unlock") else current - set(fields)
    summary = f"lock {name}: {', '.join(sorted(new)) or 'nothing'}"

    def mutate(doc: Doc[Any]) -> Hlc:
        return schema.set_lock(doc, name, sorted(new))

    out: dict[str, Any] = {"workload": name, "locked": sorted(new)}
    if params.get("prepare"):
        out["prepared"] = prepared(state, state.fleet_doc, mutate, summary)
        return out
    if new != current:
        check_fleet_write(svc, params)
        await state.write(state.fleet_doc, mutate, summary=summary, on_behalf=actor(params))
    return out


async def delete(svc: NodeServices, params: Params) -> dict[str, Any]:
    state = svc.state
    name = str_param(params, "name")
    if name not in state.snapshot().fleet.workloads:
        raise NotFoundError(f"no workload {name!r}; see `noderuntime get workloads`")

    # A rollout in progress ends with the workload: its candidate must not outlive it, and
    # completing must not write it back.
    fleet = state.snapshot().fleet
    ending = (
        rollout_commands.abort(fleet, name, by="", now=time.time(), reason="deleted")
        if rollout_commands.active(fleet, name) is not None
        else []
    )

    def mutate(doc: Doc[Any]) -> Hlc:
        hlc = schema.write_hlc(doc, {schema.WORKLOADS: [name]})
        schema.delete_workload(doc, name, hlc)
        for map_name, key, value in ending:
            schema.put_entry(doc, map_name, key, value)
        return hlc

    out: dict[str, Any] = {"name": name, "result": "deleted"}
    if params.get("prepare"):
        out["prepared"] = prepared(state, state.fleet_doc, mutate, f"delete {name}")
        return out
    check_fleet_write(svc, params)
    await state.write(state.fleet_doc, mutate, summary=f"delete {name}", on_behalf=actor(params))
    return out


async def submit(svc: NodeServices, params: Params) -> dict[str, Any]:
    # Imported here: a node that is not enrolled never loads the sync code.
    from noderuntime.sync.verify import submit_signed

    trust = svc.fleet_trust()
    credential = params.get("credential")
    if isinstance(credential, str) and credential:
        trust.add(credential)  # verified against the fleet root; raises if not valid
    update = NewUpdate(
        doc=str_param(params, "doc"),
        data=b64_param(params, "data"),
        author=str_param(params, "author"),
        signature=b64_param(params, "signature"),
        ts=time.time(),
        meta=str_param(params, "meta"),
    )
    result = await submit_signed(svc.state, trust, update, hub=svc.facts.is_hub)
    return {"doc": update.doc, "author": update.author, "result": result.value}
