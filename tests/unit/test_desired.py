"""Desired state: fleet spec < site override < node override, selectors, policy locks."""

from __future__ import annotations

from typing import Any

import pytest

from noderuntime.crdt.schema import FleetView, NodeView, StateSnapshot
from noderuntime.errors import PolicyError, SpecError
from noderuntime.reconcile.desired import (
    ANY_NAME,
    OVERRIDE_FIELDS,
    DesiredMemo,
    check_override,
    compute_desired,
    is_lockable,
    is_override_field,
)
from noderuntime.spec.models import canonical_dict
from noderuntime.spec.parse import parse_workloads

WEB = """
apiVersion: noderuntime/v1
kind: Workload
metadata: {name: web}
spec:
  image: localhost/busybox:1
  command: ["httpd", "-f", "-p", "8080"]
  env: {GREETING: hello, MODE: prod}
  restartPolicy: always
"""


def stored(text: str) -> dict[str, Any]:
    (w,) = parse_workloads(text)
    return canonical_dict(w)


def snap(
    *,
    workloads: dict[str, Any] | None = None,
    locks: dict[str, frozenset[str]] | None = None,
    site: dict[str, dict[str, Any]] | None = None,
    node: dict[str, dict[str, Any]] | None = None,
    policy: dict[str, frozenset[str]] | None = None,
) -> StateSnapshot:
    return StateSnapshot(
        generation=1,
        fleet=FleetView(
            workloads=workloads or {"web": stored(WEB)}, locks=locks or {}, policy=policy or {}
        ),
        site_overrides=site or {},
        node=NodeView(overrides=node or {}),
    )


def desired(s: StateSnapshot, labels: dict[str, str] | None = None) -> Any:
    return compute_desired(s, node_id="n1", site="s1", node_labels=labels or {})


def test_fleet_spec_alone() -> None:
    d = desired(snap())
    web = d.workloads["web"]
    assert web.enabled and web.provenance == {} and web.problems == ()
    assert web.workload.spec.env == {"GREETING": "hello", "MODE": "prod"}


def test_node_override_beats_site_override_beats_fleet() -> None:
    s = snap(
        site={"web": {"env.GREETING": "site", "env.MODE": "site"}},
        node={"web": {"env.GREETING": "node", "enabled": False}},
    )
    web = desired(s).workloads["web"]
    assert web.workload.spec.env == {"GREETING": "node", "MODE": "site"}
    assert web.provenance == {"env.GREETING": "node", "env.MODE": "site", "enabled": "node"}
    assert not web.enabled


def test_override_changes_the_hash_only_when_it_changes_the_container() -> None:
    base = desired(snap()).workloads["web"].spec_hash
    assert desired(snap(node={"web": {"enabled": False}})).workloads["web"].spec_hash == base
    allowed = {"*/web": frozenset({"override:image"})}
    other = snap(node={"web": {"image": "localhost/other:2"}}, policy=allowed)
    assert desired(other).workloads["web"].spec_hash != base


def test_env_override_null_removes_variable() -> None:
    web = desired(snap(node={"web": {"env.MODE": None}})).workloads["web"]
    assert web.workload.spec.env == {"GREETING": "hello"}


def test_locked_fields_are_ignored_and_reported() -> None:
    s = snap(
        locks={"web": frozenset({"image", "env"})},
        node={"web": {"image": "x:1", "env.A": "1"}},
        policy={"*/*": frozenset({"override:*"})},
    )
    web = desired(s).workloads["web"]
    assert web.workload.spec.image == "localhost/busybox:1"
    assert "A" not in web.workload.spec.env
    assert len(web.problems) == 2 and all("locked by fleet policy" in p for p in web.problems)


def test_invalid_override_value_is_ignored_and_reported() -> None:
    web = desired(snap(node={"web": {"restartPolicy": "sometimes"}})).workloads["web"]
    assert web.workload.spec.restart_policy.value == "always"
    assert "restartPolicy" in web.problems[0]


def test_node_selector_uses_labels_and_builtins() -> None:
    picky = stored(
        WEB.replace("restartPolicy: always", "restartPolicy: always\n  nodeSelector: {gpu: 'yes'}")
    )
    s = snap(workloads={"web": picky})
    assert "web" in desired(s).not_selected
    assert "web" in desired(s, {"gpu": "yes"}).workloads
    pinned = stored(
        WEB.replace(
            "restartPolicy: always",
            "restartPolicy: always\n  nodeSelector: {noderuntime.io/site: s1}",
        )
    )
    assert "web" in desired(snap(workloads={"web": pinned})).workloads


def test_unreadable_stored_spec_is_reported_not_fatal() -> None:
    d = desired(snap(workloads={"web": stored(WEB), "bad": {"apiVersion": "nope"}}))
    assert "web" in d.workloads and "bad" in d.invalid


def test_check_override_refuses_locked_unknown_and_invalid() -> None:
    s = snap(locks={"web": frozenset({"*"})})
    with pytest.raises(PolicyError, match="locks"):
        check_override(s, "web", "env.X", "1")
    with pytest.raises(SpecError, match="cannot override") as err:
        check_override(snap(), "web", "volumes", [])
    assert str(err.value).endswith(
        "overridable fields are enabled, image, command, args, restartPolicy, resources.cpus, "
        "resources.memory and env.<NAME>"
    )
    with pytest.raises(SpecError):
        check_override(snap(), "web", "restartPolicy", "sometimes")
    with pytest.raises(SpecError):
        check_override(snap(), "web", "enabled", "yes")
    check_override(snap(), "web", "env.X", "1")
    check_override(snap(), "web", "enabled", False)


def test_every_listed_override_field_is_accepted() -> None:
    for path in OVERRIDE_FIELDS:
        assert is_override_field(path.replace(ANY_NAME, "MODE")), path
        assert is_lockable(path.replace(ANY_NAME, "MODE")), path
    assert not is_override_field("env.") and not is_override_field("ports")
    assert is_lockable("env") and is_lockable("*") and not is_override_field("env")


# --- issue 13 §6: a technician's override does not widen privilege ---------------------------

LIMITED = WEB.replace("restartPolicy: always", "restartPolicy: always\n  resources: {cpus: 1}")


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("image", "localhost/other:1"),
        ("command", ["sh", "-c", "echo pwned > /host/etc/passwd"]),
        ("args", ["-p", "22"]),
        ("resources.cpus", 2),
    ],
)
def test_widening_overrides_are_refused_and_ignored_without_policy(path: str, value: Any) -> None:
    s = snap(workloads={"web": stored(LIMITED)})
    with pytest.raises(PolicyError, match="fleet policy does not allow"):
        check_override(s, "web", path, value, site="s1")
    for layer in ("site", "node"):
        web = desired(snap(workloads={"web": stored(LIMITED)}, **{layer: {"web": {path: value}}}))
        web = web.workloads["web"]
        assert web.workload == parse_workloads(LIMITED)[0]
        assert f"{layer} override {path!r} ignored: widens" in web.problems[0]


@pytest.mark.parametrize(
    ("key", "site"), [("*/web", "s1"), ("s1/*", "s1"), ("s1/web", "s1"), ("*/*", None)]
)
def test_a_policy_allowing_an_override_lets_it_through(key: str, site: str | None) -> None:
    s = snap(node={"web": {"command": ["sleep", "1"]}}, policy={key: frozenset({"override:*"})})
    check_override(s, "web", "command", ["sleep", "1"], site=site)
    web = desired(s).workloads["web"]
    assert web.workload.spec.command == ["sleep", "1"] and web.problems == ()


def test_a_policy_at_another_site_allows_nothing_here() -> None:
    s = snap(node={"web": {"image": "x:2"}}, policy={"s2/web": frozenset({"override:image"})})
    with pytest.raises(PolicyError):
        check_override(s, "web", "image", "x:2", site="s1")
    assert desired(s).workloads["web"].workload.spec.image == "localhost/busybox:1"


def test_env_enabled_restart_policy_and_lower_resources_need_no_policy() -> None:
    s = snap(workloads={"web": stored(LIMITED)})
    for path, value in (
        ("env.A", "1"),
        ("enabled", False),
        ("restartPolicy", "never"),
        ("resources.cpus", 0.5),
        ("resources.memory", "64Mi"),  # the fleet spec sets no memory limit: any is lower
    ):
        check_override(s, "web", path, value, site="s1")
    node = {"web": {"resources.cpus": 0.5, "resources.memory": "64Mi", "env.A": "1"}}
    web = desired(snap(workloads={"web": stored(LIMITED)}, node=node)).workloads["web"]
    assert web.problems == () and web.workload.spec.resources is not None
    assert web.workload.spec.resources.cpus == 0.5


def test_a_workload_the_policy_refuses_here_is_reported_not_run() -> None:
    rooted = WEB.replace(
        "restartPolicy: always",
        "restartPolicy: always\n  volumes: [{hostPath: /var/lib/nr, mountPath: /data}]",
    )
    s = snap(workloads={"web": stored(rooted)})
    assert "web" in desired(s).workloads  # not a protected path by itself
    memo = DesiredMemo(node_id="n1", site="s1", node_labels={}, protected_paths=("/var/lib/nr",))
    d = memo(s)
    assert "web" not in d.workloads
    assert d.invalid["web"].startswith("refused by fleet policy: spec.volumes[0].hostPath:")
    allowed = snap(
        workloads={"web": stored(rooted)}, policy={"s1/web": frozenset({"hostPath:/var"})}
    )
    assert (
        "web"
        in DesiredMemo(node_id="n1", site="s1", node_labels={}, protected_paths=("/var/lib/nr",))(
            allowed
        ).workloads
    )
