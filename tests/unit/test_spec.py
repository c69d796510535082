"""Workload spec validation: the minimal form stays valid; bad specs name field and line."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from noderuntime.errors import SpecError
from noderuntime.reconcile.container_spec import to_container_spec, to_probe_spec
from noderuntime.runtime.base import (
    LABEL_NODE,
    LABEL_SPEC_HASH,
    LABEL_WORKLOAD,
    ProbeKind,
)
from noderuntime.spec.models import RestartPolicy, canonical_dict, json_schema, spec_hash
from noderuntime.spec.parse import parse_workloads, workload_from_dict

MINIMAL = """\
apiVersion: noderuntime/v1
kind: Workload
metadata: {name: web, labels: {tier: edge}}
spec:
  image: localhost/busybox:1
  command: ["httpd", "-f", "-p", "8080"]
  env: {GREETING: hello}
  restartPolicy: always
"""


def problems(text: str) -> list[tuple[str, int | None, str]]:
    with pytest.raises(SpecError) as info:
        parse_workloads(text, "w.yaml")
    return [(p.field, p.line, p.message) for p in info.value.problems]


def test_minimal_form_from_the_issue_is_valid() -> None:
    (w,) = parse_workloads(MINIMAL, "web.yaml")
    assert w.metadata.name == "web"
    assert dict(w.metadata.labels) == {"tier": "edge"}
    assert w.spec.image == "localhost/busybox:1"
    assert list(w.spec.command) == ["httpd", "-f", "-p", "8080"]
    assert dict(w.spec.env) == {"GREETING": "hello"}
    assert w.spec.restart_policy is RestartPolicy.ALWAYS


def test_unknown_field_is_named_with_line_and_suggestion() -> None:
    found = problems(MINIMAL.replace("  image:", "  imgae:"))
    fields = {f: (line, msg) for f, line, msg in found}
    assert fields["spec.imgae"][0] == 5
    assert "did you mean 'image'" in fields["spec.imgae"][1]
    assert "spec.image" in fields  # and the required one is missing


@pytest.mark.parametrize(
    ("patch", "field", "line", "needle"),
    [
        ("apiVersion: noderuntime/v1", "apiVersion", 1, "noderuntime/v1"),
        ("kind: Workload", "kind", 2, "Workload"),
    ],
)
def test_api_version_and_kind_are_checked(patch: str, field: str, line: int, needle: str) -> None:
    found = problems(MINIMAL.replace(patch, patch.split(":")[0] + ": Nope"))
    assert any(f == field and ln == line and needle in m for f, ln, m in found), found


def test_every_problem_is_reported_at_once() -> None:
    text = MINIMAL + (
        "  ports: ['8080:80', '8080:81']\n"
        "  healthCheck: {http: {port: 8080}, interval: 5s, retries: true}\n"
        "  resources: {memory: 512m}\n"
    )
    found = problems(text)
    by_field = {f: (ln, m) for f, ln, m in found}
    assert by_field["spec.ports[1].hostPort"][0] == 9
    assert "already published" in by_field["spec.ports[1].hostPort"][1]
    assert by_field["spec.healthCheck.retries"][0] == 10
    assert by_field["spec.resources.memory"][0] == 11


def test_yaml_syntax_error_has_a_line() -> None:
    ((field, line, _),) = problems("apiVersion: [\n")
    assert field == "(syntax)"
    assert line is not None


def test_billion_laughs_is_refused_before_validation() -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    for i in range(1, 9):
        prev = chr(ord("a") + i - 1)
        cur = chr(ord("a") + i)
        bomb += f"{cur}: &{cur} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
    found = problems(bomb)
    assert any("too large" in m for _, _, m in found), found


def test_multi_document_file_names_the_document() -> None:
    text = MINIMAL + "---\n" + MINIMAL.replace("name: web", "name: api").replace("image:", "imgae:")
    with pytest.raises(SpecError) as info:
        parse_workloads(text, "w.yaml")
    assert {p.document for p in info.value.problems} == {1}
    assert "document 2" in str(info.value)


def test_duplicate_names_in_one_file_are_refused() -> None:
    found = problems(MINIMAL + "---\n" + MINIMAL)
    assert any("metadata.name" in f for f, _, _ in found), found


def test_full_spec_maps_onto_a_container() -> None:
    text = MINIMAL + (
        "  args: [x]\n"
        "  ports: ['127.0.0.1:8080:80/tcp', {containerPort: 53, protocol: udp}]\n"
        "  volumes:\n"
        "    - {name: data, mountPath: /data}\n"
        "    - {hostPath: /etc/hostname, mountPath: /host/hostname, readOnly: true}\n"
        "  resources: {cpus: 0.5, memory: 64Mi}\n"
        "  workingDir: /srv\n"
        "  user: '1000:1000'\n"
        "  stopTimeoutSeconds: 3\n"
        "  healthCheck: {exec: {command: ['true']}, interval: 2s, timeout: 1s, retries: 2,"
        " startPeriod: 1s}\n"
    )
    (w,) = parse_workloads(text, "w.yaml")
    c = to_container_spec(w, node_id="n1", container_name="nr-n1-web")
    labels = dict(c.labels)
    assert labels[LABEL_NODE] == "n1"
    assert labels[LABEL_WORKLOAD] == "web"
    assert labels[LABEL_SPEC_HASH] == spec_hash(w)
    assert labels["tier"] == "edge"
    assert c.command == ("httpd", "-f", "-p", "8080")
    assert c.args == ("x",)
    assert {(p.host_ip, p.host_port, p.container_port, p.protocol) for p in c.ports} == {
        ("127.0.0.1", 8080, 80, "tcp"),
        ("", None, 53, "udp"),
    }
    assert {(v.kind, v.source, v.target, v.read_only) for v in c.volumes} == {
        ("volume", "data", "/data", False),
        ("bind", "/etc/hostname", "/host/hostname", True),
    }
    assert c.cpus == 0.5
    assert c.memory_bytes == 64 * 1024 * 1024
    assert (c.working_dir, c.user, c.stop_timeout_s) == ("/srv", "1000:1000", 3)
    probe = to_probe_spec(w)
    assert probe is not None
    assert probe.kind is ProbeKind.EXEC
    assert (probe.interval_s, probe.timeout_s, probe.retries, probe.start_period_s) == (
        2.0,
        1.0,
        2,
        1.0,
    )


def test_reserved_labels_cannot_be_spoofed() -> None:
    found = problems(MINIMAL.replace("tier: edge", "io.noderuntime.node: other"))
    assert any(f.startswith("metadata.labels") for f, _, _ in found), found


def test_spec_hash_is_stable_and_sensitive() -> None:
    (a,) = parse_workloads(MINIMAL, "a.yaml")
    (b,) = parse_workloads(MINIMAL.replace("{GREETING: hello}", "{ GREETING: hello }"), "b.yaml")
    (c,) = parse_workloads(MINIMAL.replace("hello", "bye"), "c.yaml")
    assert spec_hash(a) == spec_hash(b)
    assert spec_hash(a) != spec_hash(c)


def test_canonical_dict_round_trips() -> None:
    (w,) = parse_workloads(MINIMAL, "a.yaml")
    again = workload_from_dict(canonical_dict(w))
    assert spec_hash(again) == spec_hash(w)
    assert canonical_dict(again) == canonical_dict(w)


def test_json_schema_lists_the_spec_fields() -> None:
    schema = json_schema()
    text = str(schema)
    for field in ("image", "restartPolicy", "healthCheck", "nodeSelector"):
        assert field in text


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=400))
def test_arbitrary_text_is_either_valid_or_a_spec_error(text: str) -> None:
    try:
        parse_workloads(text, "fuzz.yaml")
    except SpecError as exc:
        assert exc.problems
