"""Control API routes for staged rollouts and update windows (``rollout.*``, ``site.window.set``).

Writes go to the fleet document: a hub signs them itself; elsewhere (an enrolled plain node) the
CLI asks for ``prepare: true`` and signs the prepared update as the operator, like ``apply``.
Reads (``rollout.status``, ``rollout.history``) judge the rollout from what this node holds: a
hub sees every node, a plain node only itself.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Mapping
from typing import Any

from noderuntime.api.server import ACTOR_PARAM, Params, Route
from noderuntime.api.services import NodeServices
from noderuntime.crdt import schema
from noderuntime.crdt.state import StateStore
from noderuntime.errors import ApiError, NotFoundError, SpecError
from noderuntime.identity.principals import node_principal
from noderuntime.rollout import commands, revisions
from noderuntime.rollout.gate import status_view
from noderuntime.rollout.inputs import judge_rollout
from noderuntime.rollout.record import rollout_of
from noderuntime.spec import policy as spec_policy
from noderuntime.spec.models import canonical_dict, spec_hash
from noderuntime.spec.parse import parse_workloads, workload_from_dict

NodeViews = list[tuple[str, schema.NodeView]]
SiteOverrides = dict[str, dict[str, dict[str, Any]]]


def held_inputs(state: StateStore) -> tuple[NodeViews, SiteOverrides]:
    """Every node document and site override this node holds (a hub: all of them)."""
    nodes: NodeViews = []
    sites: SiteOverrides = {}
    for name in state.doc_names:
        kind, _, ident = name.partition("/")
        if kind == "node":
            view = state.read(name, schema.read_node)
            if isinstance(view, schema.NodeView):
                nodes.append((ident, view))
        elif kind == "site":
            overrides = state.read(name, schema.read_site)
            if isinstance(overrides, dict):
                sites[ident] = overrides
    return nodes, sites


def stable_hash(stable: Mapping[str, Any] | None) -> str | None:
    if stable is None:
        return None
    try:
        return spec_hash(workload_from_dict(dict(stable)))
    except SpecError:
        return None


def _str(params: Params, key: str) -> str:
    value = params.get(key)
    if not isinstance(value, str) or not value:
        raise ApiError(f"missing or invalid parameter {key!r}", code="bad_request")
    return value


def _num(params: Params, key: str, default: float) -> float:
    value = params.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ApiError(f"parameter {key!r} must be a number >= 0", code="bad_request")
    return float(value)


def routes(svc: NodeServices) -> dict[str, Route]:
    return rollout_routes(
        lambda: svc.state,
        node_id=svc.facts.node_id,
        is_hub=svc.facts.is_hub,
        enrolled=lambda: svc.sync() is not None,
    )


def rollout_routes(
    state_of: Callable[[], StateStore],
    *,
    node_id: str,
    is_hub: bool,
    enrolled: Callable[[], bool],
    clock: Callable[[], float] = time.time,
) -> dict[str, Route]:
    def author(params: Params) -> str:
        for key in ("author", ACTOR_PARAM):
            value = params.get(key)
            if isinstance(value, str) and value:
                return value
        return node_principal(node_id)

    async def write(params: Params, entries: list[commands.Entry], summary: str) -> Any:
        st = state_of()

        def mutate(doc: Any) -> None:
            for map_name, key, value in entries:
                schema.put_entry(doc, map_name, key, value)

        if params.get("prepare"):
            data = st.prepare(st.fleet_doc, mutate) if entries else None
            meta = json.dumps({"summary": summary}, sort_keys=True, separators=(",", ":"))
            return {
                "doc": st.fleet_doc,
                "data": base64.b64encode(data).decode() if data is not None else None,
                "meta": meta,
            }
        if entries:
            # A hub's own key drives rollouts operators signed (pause, resume, abort: facts);
            # starting one or undoing is authoring a spec (issue 13 §6): an operator's.
            if enrolled() and (not is_hub or st.relay_problem(st.fleet_doc, mutate)):
                raise ApiError(
                    "fleet changes on an enrolled node must be signed by an operator: "
                    "run the command with --as FLEETDIR (or set NODERUNTIME_AS)",
                    code="operator_signature_required",
                )
            actor = params.get(ACTOR_PARAM)
            await st.write(
                st.fleet_doc,
                mutate,
                summary=summary,
                on_behalf=actor if isinstance(actor, str) else None,
            )
        return None

    async def start(params: Params) -> dict[str, Any]:
        st = state_of()
        name = _str(params, "name")
        source = params.get("source") if isinstance(params.get("source"), str) else None
        check = spec_policy.apply_check(st.snapshot().fleet.policy)
        found = parse_workloads(_str(params, "yaml"), source, check=check)
        chosen = [w for w in found if w.metadata.name == name]
        if len(chosen) != 1:
            raise ApiError(
                f"the file must hold workload {name!r} once (it holds "
                f"{', '.join(w.metadata.name for w in found) or 'none'})",
                code="bad_request",
            )
        fleet = st.snapshot().fleet
        rollout, entries = commands.start(
            fleet,
            canonical_dict(chosen[0]),
            spec_hash(chosen[0]),
            stable_hash(fleet.workloads.get(name)),
            waves=_str(params, "waves"),
            gate_for_s=_num(params, "gateFor", 60.0),
            max_unhealthy=int(_num(params, "maxUnhealthy", 0)),
            start_deadline_s=_num(params, "startDeadline", 120.0),
            author=author(params),
            now=clock(),
        )
        out: dict[str, Any] = {
            "name": name,
            "id": rollout.id,
            "revision": rollout.revision,
            "spec_hash": rollout.candidate_hash,
            "waves": list(rollout.waves),
        }
        summary = f"rollout {name}: start revision {rollout.revision}"
        prepared = await write(params, entries, summary)
        return out | ({"prepared": prepared} if prepared is not None else {})

    async def status(params: Params) -> dict[str, Any]:
        st = state_of()
        name = _str(params, "name")
        fleet = st.snapshot().fleet
        rollout = rollout_of(fleet, name)
        if rollout is None:
            raise NotFoundError(f"no rollout of {name!r}; start one with `noderuntime rollout`")
        nodes, sites = held_inputs(st)
        progress, ev = judge_rollout(fleet, rollout, nodes, sites, now=clock())
        return status_view(rollout, progress, ev) | {"judged_at": node_id, "hub": is_hub}

    async def history(params: Params) -> list[dict[str, Any]]:
        fleet = state_of().snapshot().fleet
        name = _str(params, "name")
        rows = revisions.history_view(fleet, name, stable_hash(fleet.workloads.get(name)))
        if not rows and name not in fleet.workloads:
            raise NotFoundError(f"no workload {name!r}; see `noderuntime get workloads`")
        return rows

    def control(verb: str) -> Callable[[Params], Any]:
        async def handler(params: Params) -> dict[str, Any]:
            fleet = state_of().snapshot().fleet
            name = _str(params, "name")
            by, now = author(params), clock()
            result = verb
            if verb == "abort":
                entries = commands.abort(fleet, name, by=by, now=now, reason=f"aborted by {by}")
            elif verb == "promote":
                result, entries = commands.promote(fleet, name, by=by, now=now)
            else:
                entries = commands.pause(fleet, name, by=by, now=now, resume=verb == "resume")
            prepared = await write(params, entries, f"rollout {name}: {verb}")
            out: dict[str, Any] = {"name": name, "result": result if entries else "unchanged"}
            return out | ({"prepared": prepared} if prepared is not None else {})

        return handler

    async def undo(params: Params) -> dict[str, Any]:
        fleet = state_of().snapshot().fleet
        name = _str(params, "name")
        to = params.get("toRevision")
        if to is not None and (isinstance(to, bool) or not isinstance(to, int)):
            raise ApiError("toRevision must be a revision number", code="bad_request")
        target, entries = commands.undo(
            fleet,
            name,
            stable_hash(fleet.workloads.get(name)),
            to_revision=to,
            by=author(params),
            now=clock(),
        )
        prepared = await write(params, entries, f"rollout {name}: undo to revision {target}")
        out: dict[str, Any] = {"name": name, "revision": target}
        return out | ({"prepared": prepared} if prepared is not None else {})

    async def window_set(params: Params) -> dict[str, Any]:
        site = _str(params, "site")
        window = params.get("window")
        if window is not None and not isinstance(window, str):
            raise ApiError("window must be text like 'Sat 02:00-04:00'", code="bad_request")
        entries = commands.set_window(site, window, by=author(params), now=clock())
        text = entries[0][2]["window"]
        prepared = await write(params, entries, f"site {site}: update window {text or 'none'}")
        out: dict[str, Any] = {"site": site, "window": text}
        return out | ({"prepared": prepared} if prepared is not None else {})

    return {
        "rollout.start": Route(start, write=True, doc="start a staged rollout of a workload"),
        "rollout.status": Route(status, doc="a rollout's state, waves, gates and nodes"),
        "rollout.history": Route(history, doc="a workload's revisions"),
        "rollout.pause": Route(control("pause"), write=True, doc="pause a rollout"),
        "rollout.resume": Route(control("resume"), write=True, doc="resume a paused rollout"),
        "rollout.abort": Route(control("abort"), write=True, doc="abort: back to stable"),
        "rollout.promote": Route(
            control("promote"), write=True, doc="release the next wave now, gate or not"
        ),
        "rollout.undo": Route(undo, write=True, doc="make an earlier revision stable"),
        "site.window.set": Route(window_set, write=True, doc="set a site's update window"),
    }
