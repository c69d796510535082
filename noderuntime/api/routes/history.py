"""What happened: runtime events, signed changes (history), and the held documents (debug)."""

from __future__ import annotations

from functools import partial
from typing import Any

from noderuntime import codec
from noderuntime.api.routes.common import str_param
from noderuntime.api.server import Params, Route
from noderuntime.api.services import NodeServices
from noderuntime.api.views import contest_view
from noderuntime.crdt import schema
from noderuntime.crdt.clocks import UpdateFormatError, parse_update
from noderuntime.crdt.records import Contest
from noderuntime.crdt.state import StateStore
from noderuntime.errors import ApiError
from noderuntime.identity.principals import node_principal
from noderuntime.reconcile.records import STATUS_SUMMARY_PREFIX

MAX_HISTORY = 10_000


def routes(svc: NodeServices) -> dict[str, Route]:
    return {
        "state.export": Route(
            partial(export, svc), doc="debug: the held documents' maps (read-only)"
        ),
        "events.list": Route(partial(events, svc), doc="recent events, optionally of one workload"),
        "history.list": Route(
            partial(history, svc),
            doc="recent signed changes: who changed what, when (status writes with status=true)",
        ),
    }


async def events(svc: NodeServices, params: Params) -> list[dict[str, Any]]:
    workload = str_param(params, "workload", required=False)
    out = [e.to_dict() for e in svc.reconciler.events if not workload or e.workload == workload]
    limit = params.get("limit", 200)
    return out[-int(limit) :] if isinstance(limit, int) and limit > 0 else out


async def contests_with_authors(
    state: StateStore, doc: str
) -> tuple[list[Contest], dict[int, str]]:
    """The record contests of ``doc`` (concurrent writes, one lost) and who wrote each side."""
    contests: list[Contest] = state.read(doc, schema.contests) if state.holds(doc) else []
    clients = {v.client for c in contests for v in (c.won, *c.lost)}
    return contests, await state.client_authors(doc, sorted(clients))


async def concurrent_writes(state: StateStore, name: str) -> list[dict[str, Any]]:
    """Writes of this workload's records that lost to a concurrent one, and to whom."""
    out: list[dict[str, Any]] = []
    for doc in (state.fleet_doc, state.site_doc, state.node_doc):
        contests, authors = await contests_with_authors(state, doc)
        for c in contests:
            if c.key == name or c.key.startswith(f"{name}/"):
                out += contest_view(doc, c, authors)
    return out


# Summaries of the node's own bookkeeping writes (status records, node info): hidden from the
# history unless asked for, so people's actions are not buried under them.
NODE_WRITE_PREFIXES = (STATUS_SUMMARY_PREFIX, "node info")
# Hidden writes outnumber the rest many times over: read this many more to fill a page.
HIDDEN_READ_FACTOR = 10


def is_person(author: str, on_behalf: object) -> bool:
    """A change a person made: for a technician (signed by the node), or by an operator."""
    return bool(on_behalf) or not author.startswith("node:")


def is_status_write(author: str, on_behalf: object, summary: str, me: str) -> bool:
    return author == me and not on_behalf and summary.startswith(NODE_WRITE_PREFIXES)


async def history(svc: NodeServices, params: Params) -> list[dict[str, Any]]:
    state = svc.state
    limit = params.get("limit", 100)
    if not isinstance(limit, int) or not 0 < limit <= MAX_HISTORY:
        raise ApiError("limit must be an integer between 1 and 10000", code="bad_request")
    with_status = params.get("status") is True
    me = node_principal(svc.facts.node_id)
    updates = await state.history(
        limit if with_status else min(MAX_HISTORY, limit * HIDDEN_READ_FACTOR)
    )
    out = []
    lost: dict[tuple[str, int, str], dict[str, Any]] = {}  # (doc, client, hlc) -> view
    for doc in sorted({u.doc for u in updates}):
        contests, authors = await contests_with_authors(state, doc)
        for c in contests:
            for view, loser in zip(contest_view(doc, c, authors), c.lost, strict=True):
                lost[(doc, loser.client, loser.hlc.encode())] = view
    for u in updates:
        try:
            meta = codec.loads(u.meta)
        except codec.DecodeError:
            meta = {}
        if not isinstance(meta, dict):
            meta = {}
        summary = str(meta.get("summary", ""))
        on_behalf = meta.get("onBehalf")
        if not with_status and is_status_write(u.author, on_behalf, summary, me):
            continue
        out.append(
            {
                "seq": u.seq,
                "doc": u.doc,
                "author": u.author,
                "on_behalf": on_behalf,
                "person": is_person(u.author, on_behalf),
                "summary": summary,
                "ts": u.ts,
                "size_bytes": len(u.data),
                "hlc": meta.get("hlc"),
                "lost_to": _lost_to(lost, u.doc, u.data, meta.get("hlc")),
            }
        )
        if len(out) == limit:
            break
    return out


def _lost_to(
    lost: dict[tuple[str, int, str], dict[str, Any]], doc: str, data: bytes, hlc: object
) -> dict[str, Any] | None:
    """The write this update's record version lost to, if it lost a concurrent contest."""
    if not isinstance(hlc, str) or not lost:
        return None
    try:
        clients = parse_update(data).ranges
    except UpdateFormatError:
        return None
    for client in clients:
        view = lost.get((doc, client, hlc))
        if view is not None:
            return {"record": view["record"], **view["won"]}
    return None


async def export(svc: NodeServices, params: Params) -> dict[str, Any]:
    state = svc.state
    wanted = params.get("docs")
    if wanted is not None and not (
        isinstance(wanted, list) and all(isinstance(d, str) for d in wanted)
    ):
        raise ApiError("parameter 'docs' must be a list of document names", code="bad_request")
    names = [n for n in state.doc_names if wanted is None or n in wanted]
    return {n: state.read(n, schema.export_doc) for n in sorted(names)}
