"""fleet.workloads answered from cached row JSON: the same rows as fleet_rows, call after call,
as documents, sites, revisions and filters change."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from noderuntime.api.fleetview import FleetRowsJson
from noderuntime.api.protocol import RawJson, decode, encode
from noderuntime.crdt.schema import StatusRecord
from noderuntime.fleetops.view import FleetFilter, NodeSnapshot, fleet_rows

NOW = 1_000_000.0
LABELS = {"web": {"app": "web"}, "db": {"app": "db"}}


def _node(ident: str, site: str | None, heard_ago: float | None = 1.0) -> NodeSnapshot:
    status = {
        "web": StatusRecord(phase="Running", restarts=1, since=NOW - 60.5, spec_hash="h1"),
        "db": StatusRecord(phase="Failed", message='exit "3"\n\u2603', spec_hash="h2"),
    }
    return NodeSnapshot(
        node_id=ident,
        site=site,
        labels={"ring": "canary" if ident.endswith("1") else "main"},
        status=status,
        last_seen=None if heard_ago is None else NOW - heard_ago,
        stale_after_s=6.0,
    )


def _same(cache: FleetRowsJson, nodes: list[NodeSnapshot], now: float, **kw: Any) -> None:
    args: dict[str, Any] = {"flt": FleetFilter(), "workload_labels": LABELS, "revisions": {}}
    args.update(kw)
    text = cache.rows(nodes, now=now, **args)
    assert isinstance(text, RawJson)
    assert json.loads(text) == fleet_rows(nodes, now=now, **args)


def test_cached_rows_follow_documents_sites_revisions_and_filters() -> None:
    cache = FleetRowsJson()
    nodes = [_node("n1", "lab"), _node("n2", "shop", heard_ago=30), _node("n3", None, None)]
    _same(cache, nodes, NOW)
    _same(cache, nodes, NOW + 7.25)  # ages move, documents do not
    _same(cache, nodes, NOW, revisions={("web", "h1"): 4})
    nodes[0] = dataclasses.replace(
        nodes[0], status={"web": StatusRecord(phase="Starting", spec_hash="h9")}
    )
    nodes[1] = dataclasses.replace(nodes[1], site="lab")
    _same(cache, nodes, NOW, revisions={("web", "h1"): 4})
    _same(cache, nodes, NOW, flt=FleetFilter.parse("lab", None, ["app=web"]))
    _same(cache, nodes, NOW, flt=FleetFilter.parse(None, "n3", []))
    _same(cache, nodes, NOW, flt=FleetFilter.parse(None, None, ["ring=canary"]))
    _same(cache, nodes[1:], NOW)  # a node gone
    _same(cache, [], NOW)


def test_a_raw_result_goes_out_as_the_same_message() -> None:
    rows = [{"site": "lab", "since": 1.5, "stale": False, "name": "w\u2603"}]
    raw = RawJson(json.dumps(rows, separators=(",", ":")))
    sent = encode({"id": 7, "ok": True, "result": raw})
    assert sent == encode({"id": 7, "ok": True, "result": rows})
    assert decode(sent) == {"id": 7, "ok": True, "result": rows}
