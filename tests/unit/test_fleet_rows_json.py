"""fleet.workloads answered from cached row JSON (or row text, rendered for the CLI): the same
rows as fleet_rows, call after call, as documents, sites, revisions and filters change."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from noderuntime.api.fleetview import FleetRowsJson, FleetRowsText
from noderuntime.api.protocol import Attached, RawJson, decode, encode
from noderuntime.cli.jsontext import json_text
from noderuntime.crdt.schema import StatusRecord
from noderuntime.fleetops.rowtext import row_templates, slot_order
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


def _same_text(cache: FleetRowsText, nodes: list[NodeSnapshot], now: float, **kw: Any) -> None:
    args: dict[str, Any] = {"flt": FleetFilter(), "workload_labels": LABELS, "revisions": {}}
    args.update(kw)
    raw = cache.rows(nodes, now=now, **args)
    assert isinstance(raw, Attached)
    line = encode({"id": 1, "ok": True, "result": raw})
    assert line == b'{"id":1,"ok":true,"result":{"attached_bytes":%d}}\n' % len(raw) + raw
    text = raw.decode()
    rows = fleet_rows(nodes, now=now, **args)
    # What `get workloads --fleet -o json` printed from the rows: byte for byte.
    assert text == json.dumps(rows, indent=2, sort_keys=True) == json_text(rows)


def test_rendered_rows_are_the_cli_json_text_as_documents_sites_revisions_and_filters_change() -> (
    None
):
    cache = FleetRowsText()
    nodes = [_node("n1", "lab"), _node("n2", "shop", heard_ago=30), _node("n3", None, None)]
    nodes[1] = dataclasses.replace(
        nodes[1],
        status={"web": StatusRecord(phase="Failed", message='100% "\\" \u00e9\t', since=1.0)},
    )
    _same_text(cache, nodes, NOW)
    _same_text(cache, nodes, NOW + 7.25)
    _same_text(cache, nodes, NOW, revisions={("web", "h1"): 4})
    nodes[0] = dataclasses.replace(nodes[0], site="shop")
    _same_text(cache, nodes, NOW, flt=FleetFilter.parse("lab", None, ["app=web"]))
    _same_text(cache, nodes, NOW, flt=FleetFilter.parse(None, "n3", []))
    _same_text(cache, nodes, NOW, flt=FleetFilter.parse(None, None, ["ring=canary"]))
    _same_text(cache, nodes, NOW, flt=FleetFilter.parse("nowhere", None, []))
    _same_text(cache, [], NOW)


def test_row_templates_are_json_dumps_indented_with_slots_for_the_aging_fields() -> None:
    plain = {"b": 'x "%s" 100% \u2603\n', "a": None, "f": 1e300, "t": True, "i": -3}
    nested = {**plain, "n": {"z": [1, {"y": "\u2603"}], "e": []}}
    assert slot_order(("m", "c")) == ["c", "m"]
    for rows in ([plain, {**plain, "b": "%%"}], [nested, plain], [plain, {"a": 1}], []):
        filled = [t % ("1.5", "true") for t in row_templates(rows, ("m", "c"))]
        want = json.dumps([{**r, "c": 1.5, "m": True} for r in rows], indent=2, sort_keys=True)
        assert ("[\n" + ",\n".join(filled) + "\n]" if filled else "[]") == want
