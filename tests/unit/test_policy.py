"""Workload security policy (issue 13 §4, §6): each refusal, each allowance, and what Podman is
asked for once a spec is allowed."""

from __future__ import annotations

import pytest

from noderuntime.audit.chain import AuditKind
from noderuntime.audit.log import MemoryAudit
from noderuntime.crdt import schema
from noderuntime.errors import SpecError
from noderuntime.reconcile.container_spec import to_container_spec
from noderuntime.runtime.base import LABEL_WORKLOAD
from noderuntime.runtime.podman import create_body
from noderuntime.spec import policy
from noderuntime.spec.models import canonical_dict, spec_hash
from noderuntime.spec.parse import parse_workloads
from tests.unit.reconciler_harness import harness, workload

HEAD = """apiVersion: noderuntime/v1
kind: Workload
metadata: {name: w}
spec:
  image: localhost/busybox:1
"""

# (spec lines, field refused, allowance that permits it)
REFUSED = [
    ("  securityContext: {privileged: true}\n", "spec.securityContext.privileged", "privileged"),
    ("  hostNetwork: true\n", "spec.hostNetwork", "hostNetwork"),
    ("  hostPID: true\n", "spec.hostPID", "hostPID"),
    ("  hostIPC: true\n", "spec.hostIPC", "hostIPC"),
    (
        "  securityContext:\n    capabilities: {add: [NET_ADMIN]}\n",
        "spec.securityContext.capabilities.add[0]",
        "capability:NET_ADMIN",
    ),
    ("  devices: [/dev/dri/renderD128]\n", "spec.devices[0]", "device:/dev/dri/renderD128"),
    ("  user: '0:0'\n", "spec.user", "runAsRoot"),
    ("  user: root\n", "spec.user", "runAsRoot"),
    ("  ports: ['2222:22', '22:22']\n", "spec.ports[1].hostPort", "hostPort:22"),
    *(
        (
            f"  volumes: [{{hostPath: {path}, mountPath: /host}}]\n",
            "spec.volumes[0].hostPath",
            f"hostPath:{policy.normal_path(path)}",
        )
        for path in (
            "/",
            "/etc",
            "/etc/ssh",
            "/proc",
            "/sys/fs",
            "/dev",
            "/var",  # holds the default data dir and container storage
            "/var/lib/noderuntime",
            "/run",  # holds /run/podman
            "/run/podman/podman.sock",
            "/var/run/docker.sock",  # podman-docker's link to Podman's socket
            "/run/systemd/private",
            "/usr/bin",
            "/home",
            "/etc/localtime",  # read-only is still the host's /etc: allow it by name
            "//etc",
        )
    ),
]


def check(text: str, allowed: frozenset[str] = frozenset()) -> None:
    parse_workloads(
        text,
        "w.yaml",
        check=lambda w: [(r.loc, r.message) for r in policy.refusals(w, allowed)],
    )


@pytest.mark.parametrize(("lines", "field", "allowance"), REFUSED)
def test_each_is_refused_by_default_with_field_line_and_policy(
    lines: str, field: str, allowance: str
) -> None:
    with pytest.raises(SpecError) as err:
        check(HEAD + lines)
    (problem,) = err.value.problems
    assert problem.field == field
    assert problem.line is not None and problem.line >= 6
    assert "policy" in problem.message and f"policy allow {allowance} " in problem.message
    assert f"w.yaml:{problem.line}: {field}: " in str(err.value)


@pytest.mark.parametrize(("lines", "field", "allowance"), REFUSED)
def test_each_is_allowed_by_its_allowance(lines: str, field: str, allowance: str) -> None:
    check(HEAD + lines, frozenset({allowance}))


@pytest.mark.parametrize(
    ("allowance", "covered"),
    [
        ("capability:*", "capability:NET_ADMIN"),
        ("device:/dev/dri", "device:/dev/dri/renderD128"),
        ("device:*", "device:/dev/dri/renderD128"),
        ("hostPath:/etc", "hostPath:/etc/ssh"),
        ("hostPath:*", "hostPath:/"),
        ("hostPort:*", "hostPort:22"),
    ],
)
def test_wildcards_and_parents_allow_what_they_cover(allowance: str, covered: str) -> None:
    lines = next(line for line, _, a in REFUSED if a == covered)
    check(HEAD + lines, frozenset({allowance}))


def test_what_widens_nothing_needs_no_policy() -> None:
    check(
        HEAD + "  user: '1000:1000'\n"
        "  ports: ['8080:80', '2222:22']\n"
        "  volumes:\n"
        "    - {hostPath: /srv/app, mountPath: /srv}\n"
        "    - {hostPath: /var/lib/app, mountPath: /data}\n"
        "    - {name: data, mountPath: /cache}\n"
        "  securityContext:\n"
        "    capabilities: {drop: [ALL]}\n"
        "    readOnlyRootFilesystem: true\n"
        "    runAsNonRoot: true\n"
        "    noNewPrivileges: true\n"
    )


def test_an_allowance_for_one_thing_allows_nothing_else() -> None:
    with pytest.raises(SpecError) as err:
        check(
            HEAD + "  devices: [/dev/ttyUSB0]\n  securityContext:\n    capabilities: {add: [X]}\n",
            frozenset({"device:/dev/ttyUSB1", "capability:NET_ADMIN", "hostPath:/etc"}),
        )
    assert [p.field for p in err.value.problems] == [
        "spec.devices[0]",
        "spec.securityContext.capabilities.add[0]",
    ]


def test_the_node_adds_its_own_paths() -> None:
    (w,) = parse_workloads(HEAD + "  volumes: [{hostPath: /opt/nr, mountPath: /x}]\n")
    assert policy.refusals(w, frozenset()) == []
    (refusal,) = policy.refusals(w, frozenset(), protected_paths=("/opt/nr/data",))
    assert refusal.allowance == "hostPath:/opt/nr" and "holds or lies in /opt/nr/data" in (
        refusal.message
    )


def test_policy_is_looked_up_by_site_and_workload() -> None:
    entries = {
        "*/*": frozenset({"a"}),
        "s1/*": frozenset({"b"}),
        "*/w": frozenset({"c"}),
        "s1/w": frozenset({"d"}),
        "s2/w": frozenset({"e"}),
        "s1/other": frozenset({"f"}),
    }
    assert policy.allowed_for(entries, "w", "s1") == {"a", "b", "c", "d"}
    assert policy.allowed_for(entries, "w", None) == {"a", "b", "c", "d", "e"}
    assert policy.allowed_for(entries, "x", "s2") == {"a"}


@pytest.mark.parametrize(
    ("item", "ok"),
    [
        ("privileged", True),
        ("capability:SYS_ADMIN", True),
        ("device:/dev/fuse", True),
        ("hostPath:*", True),
        ("hostPort:22", True),
        ("override:image", True),
        ("override:*", True),
        ("root", False),
        ("device:dev/fuse", False),
        ("hostPort:ssh", False),
        ("override:env", False),
        ("capability:", False),
    ],
)
def test_allowances_are_checked(item: str, ok: bool) -> None:
    assert (policy.check_allowance(item) is None) == ok


def test_new_fields_left_at_their_defaults_keep_old_specs_and_hashes() -> None:
    (old,) = parse_workloads(HEAD)
    (same,) = parse_workloads(
        HEAD + "  hostNetwork: false\n  hostPID: false\n  devices: []\n"
        "  securityContext: {privileged: false, noNewPrivileges: true, capabilities: {add: []}}\n"
    )
    assert canonical_dict(same) == canonical_dict(old) and spec_hash(same) == spec_hash(old)


def test_run_as_non_root_needs_a_named_non_root_user() -> None:
    for user in ("", "  user: '0'\n", "  user: root:wheel\n"):
        with pytest.raises(SpecError, match="runAsNonRoot: needs user"):
            parse_workloads(HEAD + user + "  securityContext: {runAsNonRoot: true}\n")


def test_an_allowed_spec_becomes_podmans_privilege_fields() -> None:
    (w,) = parse_workloads(
        HEAD + "  hostNetwork: true\n  hostPID: true\n  hostIPC: true\n"
        "  devices: ['/dev/dri/renderD128', {hostPath: /dev/ttyUSB0, containerPath: /dev/modbus,"
        " permissions: wr}]\n"
        "  securityContext:\n"
        "    privileged: true\n"
        "    capabilities: {add: [net_admin, CAP_SYS_TIME], drop: [ALL]}\n"
        "    readOnlyRootFilesystem: true\n"
        "    noNewPrivileges: false\n"
    )
    body = create_body(to_container_spec(w, node_id="n1", container_name="nr-n1-w"))
    assert body["privileged"] is True
    assert body["netns"] == body["pidns"] == body["ipcns"] == {"nsmode": "host"}
    assert body["cap_add"] == ["CAP_NET_ADMIN", "CAP_SYS_TIME"] and body["cap_drop"] == ["ALL"]
    assert body["devices"] == [
        {"path": "/dev/dri/renderD128:/dev/dri/renderD128:rwm"},
        {"path": "/dev/ttyUSB0:/dev/modbus:rw"},
    ]
    assert body["read_only_filesystem"] is True and "no_new_privileges" not in body


def test_no_new_privileges_is_on_by_default_and_nothing_else_is_asked() -> None:
    (w,) = parse_workloads(HEAD)
    body = create_body(to_container_spec(w, node_id="n1", container_name="nr-n1-w"))
    assert body["no_new_privileges"] is True
    privileged = {"privileged", "netns", "pidns", "ipcns", "cap_add", "devices"}
    assert not privileged & set(body)


# --- at the node: refused workloads are never started, and audited once per reason ----------


async def test_the_node_refuses_its_own_paths_audits_it_once_and_runs_it_once_allowed() -> None:
    audit = MemoryAudit()
    snoop = workload("snoop", volumes=[{"hostPath": "/opt/nr", "mountPath": "/nr"}])
    async with harness(audit=audit, protected_paths=("/opt/nr/state.db",)) as h:
        await h.apply(snoop, workload("web"))
        await h.settle()
        await h.tick()  # a pass with nothing new audits nothing new
        assert [c.labels[LABEL_WORKLOAD] for c in h.runtime.containers.values()] == ["web"]
        (entry,) = audit.of(AuditKind.POLICY_REFUSED)
        assert entry["actor"] == "node:n1" and entry["workload"] == "snoop"
        assert entry["reason"].startswith("refused by fleet policy: spec.volumes[0].hostPath")
        assert h.kinds("snoop") == ["policy"]

        key = policy.policy_key(policy.POLICY_ANY, "snoop")
        await h.state.write(h.state.fleet_doc, lambda d: schema.set_policy(d, key, ["hostPath:*"]))
        await h.settle()
        assert sorted(c.labels[LABEL_WORKLOAD] for c in h.runtime.containers.values()) == [
            "snoop",
            "web",
        ]
        assert len(audit.of(AuditKind.POLICY_REFUSED)) == 1
