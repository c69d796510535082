"""Issue 9 §2: a spec that validates is one the runtime can take.

Found in the field as `resources: {cpus: 1.0e+308}`: it passed validation, then building the
container body raised OverflowError on every reconcile pass. Every numeric field is bounded now,
and inputs that used to escape as ValueError or decimal.Overflow are problems with a field and line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from noderuntime.cli.main import EXIT_USAGE, main
from noderuntime.errors import SpecError
from noderuntime.reconcile.container_spec import to_container_spec
from noderuntime.runtime.podman import create_body
from noderuntime.spec.parse import parse_workloads, workload_from_dict
from noderuntime.spec.values import MAX_CPUS, MAX_MEMORY_BYTES

BASE = """\
apiVersion: noderuntime/v1
kind: Workload
metadata: {name: web}
spec:
  image: localhost/busybox:1
"""
LINE = 6  # the line a case below adds


def problems(extra: str) -> list[tuple[str, int | None, str]]:
    with pytest.raises(SpecError) as info:
        parse_workloads(BASE + extra, "w.yaml")
    return [(p.field, p.line, p.message) for p in info.value.problems]


@pytest.mark.parametrize(
    ("extra", "field", "needle"),
    [
        ("  resources: {cpus: 1.0e+308}\n", "spec.resources.cpus", "at most 1024"),
        ("  resources: {cpus: 1025}\n", "spec.resources.cpus", "at most 1024"),
        ("  resources: {cpus: %s}\n" % ("9" * 400), "spec.resources.cpus", "too long"),
        ("  resources: {cpus: %s}\n" % ("9" * 5000), "spec.resources.cpus", "too long"),
        ("  resources: {memory: 999999999999999999999999Ti}\n", "spec.resources.memory", "1Ei"),
        ("  resources: {memory: 2Ei}\n", "spec.resources.memory", "at most 1Ei"),
        ("  resources: {memory: 1.0e+308}\n", "spec.resources.memory", "at most 1Ei"),
        ("  resources: {memory: %s}\n" % ("9" * 5000), "spec.resources.memory", "too long"),
        ("  resources: {memory: '%sMi'}\n" % ("9" * 5000), "spec.resources.memory", "1Ei"),
        ("  resources: {memory: '%sEi'}\n" % ("9" * 1_000_001), "spec.resources.memory", "1Ei"),
        ("  stopTimeoutSeconds: %s\n" % ("9" * 5000), "spec.stopTimeoutSeconds", "too long"),
        (
            "  healthCheck: {tcp: {port: 80}, retries: 1000000000000}\n",
            "spec.healthCheck.retries",
            "at most 1000",
        ),
        (
            "  healthCheck: {tcp: {port: 80}, interval: 1.0e+300}\n",
            "spec.healthCheck.interval",
            "at most 24h",
        ),
        (
            "  healthCheck: {tcp: {port: 80}, startPeriod: '%sh'}\n" % ("9" * 400),
            "spec.healthCheck.startPeriod",
            "at most 24h",
        ),
        ("  ports: ['\u0663:\u0668\u0660']\n", "spec.ports[0]", "invalid port"),
        ("  ports: ['\u00b2:80']\n", "spec.ports[0]", "invalid port"),
        ("  ports: ['%s:80']\n" % ("9" * 5000), "spec.ports[0]", "invalid port"),
        ('  env: {A: "x\\0y"}\n', "spec.env.A", "NUL"),
        ('  command: ["sh\\0"]\n', "spec.command[0]", "NUL"),
        (
            "  volumes: [{name: d, mountPath: /a}, {name: d, mountPath: /b}]\n",
            "spec.volumes[1].name",
            "already mounted by volumes[0]",
        ),
    ],
)
def test_values_the_runtime_cannot_take_are_refused_with_field_and_line(
    extra: str, field: str, needle: str
) -> None:
    found = problems(extra)
    assert any(f == field and line == LINE and needle in m for f, line, m in found), found


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"metadata": {"name": "web\n"}}, "metadata.name"),
        ({"metadata": {"name": "web", "labels": {"tier\n": "a"}}}, 'metadata.labels["tier\\n"]'),
        ({"metadata": {"name": "web", "labels": {"tier": "a\n"}}}, "metadata.labels.tier"),
        ({"spec": {"image": "x", "env": {"A\n": "1"}}}, 'spec.env["A\\n"]'),
        (
            {"spec": {"image": "x", "volumes": [{"name": "d\n", "mountPath": "/d"}]}},
            "spec.volumes[0].name",
        ),
    ],
)
def test_names_match_their_pattern_to_the_end(spec: dict[str, Any], field: str) -> None:
    # `$` also matches before a final newline; a container named "nr-n1-web\n" is one Podman
    # refuses on every pass.
    doc: dict[str, Any] = {"apiVersion": "noderuntime/v1", "kind": "Workload"}
    doc |= {"metadata": {"name": "web"}, "spec": {"image": "x"}} | spec
    with pytest.raises(SpecError) as info:
        workload_from_dict(doc)
    assert [p.field for p in info.value.problems] == [field]


def test_the_bounds_themselves_are_valid_and_build_a_container_body() -> None:
    (w,) = parse_workloads(
        BASE
        + "  resources: {cpus: 1024, memory: 1Ei}\n"
        + "  healthCheck: {tcp: {port: 65535}, interval: 24h, timeout: 24h, retries: 1000,"
        + " startPeriod: 24h}\n"
        + "  stopTimeoutSeconds: 3600\n",
        "w.yaml",
    )
    assert w.spec.resources is not None
    assert (w.spec.resources.cpus, w.spec.resources.memory_bytes) == (MAX_CPUS, MAX_MEMORY_BYTES)
    body = create_body(to_container_spec(w, node_id="n1", container_name="nr-n1-web"))
    # Podman sets swap to twice the memory limit, in an int64.
    assert 2 * body["resource_limits"]["memory"]["limit"] < 2**63
    assert (
        body["resource_limits"]["cpu"]["quota"] == 1024 * body["resource_limits"]["cpu"]["period"]
    )


def test_apply_dry_run_refuses_the_field_repro_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for extra in (
        "  resources: {cpus: 1.0e+308}\n",
        "  resources: {memory: 999999999999999999999999Ti}\n",
    ):
        path = tmp_path / "w.yaml"
        path.write_text(BASE + extra)
        code = main(["--data-dir", str(tmp_path / "node"), "apply", "-f", str(path), "--dry-run"])
        err = capsys.readouterr().err
        assert code == EXIT_USAGE, err
        assert f"w.yaml:{LINE}: spec.resources." in err
