"""Principal names are signed into credentials and updates: their shape must never drift."""

from __future__ import annotations

from noderuntime.identity.principals import (
    node_id_of,
    node_principal,
    operator_principal,
    parse_principal,
    technician_principal,
)


def test_each_kind_builds_its_principal() -> None:
    assert node_principal("edge-07") == "node:edge-07"
    assert operator_principal("maria") == "operator:maria"
    assert technician_principal("alice") == "technician:alice"


def test_parse_round_trips_and_refuses_a_bare_name() -> None:
    assert parse_principal(operator_principal("maria")) == ("operator", "maria")
    assert parse_principal("node:a:b") == ("node", "a:b")
    assert parse_principal("maria") is None


def test_node_id_of_only_node_principals() -> None:
    assert node_id_of(node_principal("n1")) == "n1"
    assert node_id_of(operator_principal("n1")) is None
    assert node_id_of("n1") is None
