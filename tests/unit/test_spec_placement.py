"""Issue 11: `spec.placement: {scope: site, replicas: N}` and its field-and-line errors."""

from __future__ import annotations

import pytest

from noderuntime.errors import SpecError
from noderuntime.spec.models import PlacementScope, spec_hash
from noderuntime.spec.parse import parse_workloads

BASE = """\
apiVersion: noderuntime/v1
kind: Workload
metadata: {name: web}
spec:
  image: localhost/busybox:1
"""
LINE = 6  # the line a case below adds


def test_placement_is_optional_and_parses_when_given() -> None:
    (plain,) = parse_workloads(BASE, "w.yaml")
    assert plain.spec.placement is None
    (placed,) = parse_workloads(BASE + "  placement: {scope: site, replicas: 2}\n", "w.yaml")
    assert placed.spec.placement is not None
    assert placed.spec.placement.scope is PlacementScope.SITE
    assert placed.spec.placement.replicas == 2


@pytest.mark.parametrize(
    ("extra", "field", "needle"),
    [
        ("  placement: {scope: site, replicas: 0}\n", "spec.placement.replicas", "1"),
        ("  placement: {scope: site, replicas: 65}\n", "spec.placement.replicas", "64"),
        ("  placement: {scope: site, replicas: true}\n", "spec.placement.replicas", ""),
        ("  placement: {scope: zone, replicas: 1}\n", "spec.placement.scope", "site"),
        ("  placement: {scope: site}\n", "spec.placement.replicas", "required"),
        ("  placement: {scope: site, replicas: 1, spread: 2}\n", "spec.placement.spread", ""),
    ],
)
def test_bad_placement_is_refused_with_field_and_line(extra: str, field: str, needle: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_workloads(BASE + extra, "w.yaml")
    found = [(p.field, p.line, p.message) for p in info.value.problems]
    assert any(f == field and line == LINE and needle in m for f, line, m in found), found


def test_changing_replicas_keeps_the_spec_hash() -> None:
    # Where instances run is not what they are: scaling must not restart the running ones.
    (one,) = parse_workloads(BASE + "  placement: {scope: site, replicas: 1}\n", "w.yaml")
    (three,) = parse_workloads(BASE + "  placement: {scope: site, replicas: 3}\n", "w.yaml")
    (plain,) = parse_workloads(BASE, "w.yaml")
    assert spec_hash(one) == spec_hash(three) == spec_hash(plain)
