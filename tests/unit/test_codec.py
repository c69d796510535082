"""Bounded JSON decoding and the records the state sets aside instead of failing on them."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from pycrdt import Doc, Map

from noderuntime import codec
from noderuntime.crdt import schema


def test_poison_values_are_refused_with_a_reason_not_a_recursion_error() -> None:
    for poison in ("[" * 3000, "[" * 3000 + "]" * 3000, '{"a":' * 500 + "1" + "}" * 500):
        with pytest.raises(codec.DecodeError, match="nested deeper than 64"):
            codec.loads(poison)


def test_brackets_inside_strings_do_not_count() -> None:
    text = json.dumps({"cmd": "[" * 5000, "q": 'a\\"[[[['})
    assert codec.loads(text)["cmd"] == "[" * 5000


def test_escapes_do_not_hide_or_fake_nesting() -> None:
    # Strings ending in escaped backslashes, escaped quotes before brackets, and many values:
    # the depth counted is the structure's, never the strings'.
    tricky = ["\\", '\\"[', '"]]]', "\\\\[{", "a\\", '\\\\"{{']
    deep: Any = tricky
    for _ in range(63):
        deep = {"k\\": [deep]} if isinstance(deep, list) else [deep]
    rows = [{"site": "s", "msg": s, "n": i} for i, s in enumerate(tricky * 20)]
    for value in (deep, rows, [tricky] * 100):
        text = json.dumps(value)
        assert text.count("[") + text.count("{") > codec.MAX_DEPTH  # takes the scan
        assert codec.loads(text, max_depth=_depth(value)) == value
        with pytest.raises(codec.DecodeError, match="nested deeper"):
            codec.check_depth(text, _depth(value) - 1)


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


def test_size_and_encoding_are_bounded() -> None:
    with pytest.raises(codec.DecodeError, match="more than"):
        codec.loads("1" * 100, max_bytes=10)
    with pytest.raises(codec.DecodeError, match="not UTF-8"):
        codec.loads(b'"\xff"')
    with pytest.raises(codec.DecodeError, match="not valid JSON"):
        codec.loads("{")


def test_values_pass_at_the_depth_limit_and_not_beyond() -> None:
    deep: Any = 1
    for _ in range(64):
        deep = [deep]
    assert codec.loads(json.dumps(deep)) == deep
    codec.check_value(deep)
    with pytest.raises(codec.DecodeError):
        codec.check_value([deep])  # 65 levels


def test_check_value_ends_on_self_referential_yaml() -> None:
    value = yaml.safe_load("&a [*a]")
    with pytest.raises(codec.DecodeError):
        codec.check_value(value)


def test_a_poison_override_is_set_aside_and_the_rest_is_read() -> None:
    doc: Doc[Any] = Doc()
    overrides: Map[Any] = doc.get(schema.OVERRIDES, type=Map)
    overrides["web/image"] = json.dumps("busybox:2")
    overrides["web/env.A"] = "[" * 3000
    overrides["db/replicas"] = "[" * 100 + "]" * 100
    bad: schema.Bad = []
    assert schema.read_site(doc, bad) == {"web": {"image": "busybox:2"}}
    assert sorted(key for _, key, _ in bad) == ["db/replicas", "web/env.A"]
    assert all("nested deeper" in reason for _, _, reason in bad)


def test_a_poison_status_record_is_set_aside() -> None:
    doc: Doc[Any] = Doc()
    status: Map[Any] = doc.get(schema.STATUS, type=Map)
    status["ok"] = schema.StatusRecord(phase="Running").to_json()
    status["bad"] = "[" * 3000
    status["list"] = "[1]"
    bad: schema.Bad = []
    view = schema.read_node(doc, bad)
    assert list(view.status) == ["ok"]
    assert sorted(key for _, key, _ in bad) == ["bad", "list"]


def test_names_with_a_trailing_newline_are_refused() -> None:
    from noderuntime.config.model import validate_id
    from noderuntime.errors import ConfigError
    from noderuntime.sync.acl import parse_doc

    assert parse_doc("site/plant-a") is not None
    assert parse_doc("site/plant-a\n") is None
    assert parse_doc("node/n1\n") is None
    with pytest.raises(ConfigError):
        validate_id("site", "plant-a\n")


def test_the_cli_refuses_a_poison_override_value_before_sending(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from noderuntime.cli.main import main

    for value in ("[" * 3000, "[" * 70 + "]" * 70, "&a [*a]"):
        argv = ["--data-dir", str(tmp_path), "override", "set", "web", "env.A", value]
        assert main(argv) == 2
        assert "override VALUE is" in capsys.readouterr().err
