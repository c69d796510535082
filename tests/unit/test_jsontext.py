"""`-o json` text from the fast path is json.dumps(indent=2, sort_keys=True)'s, byte for byte."""

from __future__ import annotations

import json
from typing import Any

from noderuntime.cli.jsontext import json_text

ROW = {
    "site": "s1",
    "node": "n-1",
    "name": 'we"b\\\n[{',
    "phase": "Running",
    "health": None,
    "restarts": 3,
    "revision": None,
    "since": 1764763200.123456,
    "stale": False,
    "age_s": 0.1,
    "message": "caf\u00e9 \u2603 %s %(x)s \ud83d\ude00",
    "big": 10**30,
    "neg": -2.5e-7,
    "%odd key\n": True,
}


def _same(data: Any) -> None:
    assert json_text(data) == json.dumps(data, indent=2, sort_keys=True)


def test_rows_of_scalars_match_json_dumps() -> None:
    rows = [dict(ROW, restarts=i, since=i / 7, name=f"w{i}") for i in range(50)]
    _same(rows)
    _same([ROW])
    _same([{"only": 1}, {"only": "two"}])
    _same([{"x": float("inf"), "y": float("nan")}])


def test_everything_else_matches_too() -> None:
    for data in (
        [],
        {},
        {"a": [1, 2]},
        [{}],
        [{}, {}],
        [1, 2, "3"],
        [ROW, {"other": 1}],  # keys differ
        [ROW, dict(ROW, health={"nested": [1]})],  # a container value
        [dict(ROW, health=[1])],  # a one-item list: no separator inside
        [dict(ROW, health=[])],
        [{"a": {}}, {"a": 1}],
        [{1: "int key"}],
        [ROW, [1]],
        "text",
        None,
    ):
        _same(data)
