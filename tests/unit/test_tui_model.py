"""Pure view-model logic of the TUI: formatting, rows, filters, override values."""

from __future__ import annotations

from typing import Any

import pytest

from noderuntime.reconcile.desired import OVERRIDE_FIELDS
from tui import model
from tui.screens.jump import resolve_jump

NOW = 1_790_000_000.0
# What a node answers to overrides.fields.
FIELDS = model.OverrideFields.from_api({"fields": list(OVERRIDE_FIELDS)})


def view(name: str, phase: str = "Running", **kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": name,
        "phase": phase,
        "restarts": 0,
        "health": None,
        "since": NOW - 90,
        "spec_hash": "aaaa1111",
        "observed_spec_hash": "aaaa1111",
        "enabled": True,
        "image": "localhost/busybox:1",
        "spec": {"spec": {"image": "localhost/busybox:1", "env": {"A": "1"}}},
        "provenance": {},
    }
    base.update(kw)
    return base


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "-"),
        (-5, "0s"),
        (0, "0s"),
        (59, "59s"),
        (61, "1m01s"),
        (600, "10m"),
        (3600 + 120, "1h02m"),
        (86400 * 3 + 7200, "3d2h"),
    ],
)
def test_fmt_duration(seconds: float | None, text: str) -> None:
    assert model.fmt_duration(seconds) == text


def test_fmt_bytes_and_pairs() -> None:
    assert model.fmt_bytes(None) == "-"
    assert model.fmt_bytes(512) == "512 B"
    assert model.fmt_bytes(2048) == "2.0 KiB"
    assert model.fmt_bytes(3 * 1024**3) == "3.0 GiB"
    assert model.fmt_bytes_pair(1024**3, 4 * 1024**3) == "1.0/4.0 GiB"
    assert model.fmt_bytes_pair(None, 10) == "- / 10 B"


def test_bar_is_text_only() -> None:
    assert model.bar(0.5, 4) == "[##--]"
    assert model.bar(None, 3) == "[???]"
    assert model.bar(7.0, 2) == "[##]"


def test_host_gauges() -> None:
    gauges = model.host_gauges(
        {
            "cpus": 2,
            "load_avg": [1.0, 0.5, 0.2],
            "mem_total_bytes": 1000,
            "mem_available_bytes": 250,
            "disk_total_bytes": 100,
            "disk_free_bytes": 10,
        }
    )
    assert [g.label for g in gauges] == ["CPU", "Memory", "Disk"]
    assert gauges[0].fraction == 0.5
    assert gauges[1].fraction == 0.75
    assert gauges[2].fraction == pytest.approx(0.9)
    assert model.host_gauges({})[1].fraction is None
    # With utilisation from the node, the gauge shows it and keeps the load as text.
    (cpu, *_) = model.host_gauges({"cpus": 2, "load_avg": [1.0], "cpu_percent": 25.0})
    assert cpu.fraction == 0.25 and cpu.text == "25% · load 1.00/2 cpu"


def test_phase_summary_orders_and_drops_zeros() -> None:
    counts = {"Stopped": 1, "Running": 3, "Failed": 0, "Weird": 2}
    assert model.phase_summary(counts) == [("Running", 3), ("Stopped", 1), ("Weird", 2)]


def test_health_lines() -> None:
    assert model.podman_state({"connected": True}) == ("connected", True)
    assert model.podman_state({"connected": False, "error": "boom"}) == ("DOWN: boom", False)
    text, ok = model.store_state({"healthy": True, "size_bytes": 2048, "updates": 3})
    assert ok and "2.0 KiB" in text and "3 updates" in text
    assert not model.store_state({"healthy": True, "load_problems": ["x"]})[1]
    assert model.sync_summary({"enabled": False}) == ("not configured on this node", True)
    text, ok = model.sync_summary(
        {"enabled": True, "connected": False, "peers_up": 0, "peers_known": 2, "rejected_total": 3}
    )
    assert not ok and "OFFLINE" in text and "0/2" in text and "3 rejected" in text


def test_workload_row_desired_vs_observed() -> None:
    row = model.workload_row(view("web", enabled=False, observed_spec_hash="bbbb"), NOW)
    assert row.want == "stop"
    assert row.spec == "outdated"
    assert row.since == "1m30s"
    assert model.workload_row(view("x", observed_spec_hash=None), NOW).spec == "-"
    assert model.workload_row({"name": "bare"}, NOW).phase == "Pending"


def test_filter_words_fields_and_negation() -> None:
    views = [
        view("web", "Running"),
        view("db", "Failed"),
        view("cache", "Stopped", enabled=False),
    ]
    names = lambda q: [r.name for r in model.workload_rows(views, NOW, q)]  # noqa: E731
    # Problems first (a workload stopped on purpose last), then by name; name order on request.
    assert names("") == ["db", "web", "cache"]
    by_name = model.workload_rows(views, NOW, "", sort=model.SORT_NAME)
    assert [r.name for r in by_name] == ["cache", "db", "web"]
    assert names("phase=failed") == ["db"]
    assert names("WEB") == ["web"]
    assert names("running !want=stop") == ["web"]
    assert names("busybox phase=running") == ["web"]
    assert names("nothing") == []


def test_filter_matches_visible_columns_only() -> None:
    # Every row used to carry hidden "health=... want=..." text: "health" matched them all.
    views = [view("web", "Running"), view("db", "Failed"), view("health-api", "Running")]
    names = lambda q: [r.name for r in model.workload_rows(views, NOW, q)]  # noqa: E731
    assert names("health") == ["health-api"]
    assert names("want") == []
    assert names("want=run phase=f") == ["db"]


def test_phase_counts() -> None:
    assert model.phase_counts([view("a"), view("b"), view("c", "Failed")]) == {
        "Running": 2,
        "Failed": 1,
    }


def test_spec_fields_with_provenance() -> None:
    v = view(
        "web",
        enabled=False,
        spec={
            "spec": {
                "image": "img",
                "command": ["sleep", "1"],
                "env": {"B": "2", "A": "1"},
                "resources": {"cpus": 0.5},
                "ports": [],
            }
        },
        provenance={"enabled": "node", "env.A": "site", "env.B": "node"},
    )
    fields = {f.path: f for f in model.spec_fields(v, FIELDS)}
    assert list(fields) == ["enabled", "image", "command", "env.A", "env.B", "resources.cpus"]
    assert fields["enabled"].value == "false" and fields["enabled"].source == "node"
    assert fields["env.A"].source == "site"
    assert fields["image"].source == "fleet"
    assert fields["command"].value == '["sleep", "1"]'
    assert all(f.overridable for f in fields.values())
    assert not any(f.overridable for f in model.spec_fields(v, None))  # not known yet
    assert model.node_overrides(v) == ["enabled", "env.B"]


@pytest.mark.parametrize(
    ("field", "text", "value"),
    [
        ("enabled", "false", False),
        ("enabled", "Yes", True),
        ("env.MODE", " spaced value ", " spaced value "),
        ("command", "sh -c 'echo hi'", ["sh", "-c", "echo hi"]),
        ("args", '["a", "b c"]', ["a", "b c"]),
        ("resources.cpus", "0.25", 0.25),
        ("resources.memory", "1048576", 1048576),
        ("resources.memory", "64Mi", "64Mi"),
        ("image", " localhost/x:2 ", "localhost/x:2"),
    ],
)
def test_parse_override_value(field: str, text: str, value: Any) -> None:
    assert model.parse_override_value(field, text) == value


@pytest.mark.parametrize(
    ("field", "text"),
    [("enabled", "maybe"), ("resources.cpus", "lots"), ("args", "[1, 2]"), ("image", "  ")],
)
def test_parse_override_value_refuses(field: str, text: str) -> None:
    with pytest.raises(ValueError):
        model.parse_override_value(field, text)


def test_check_override_field() -> None:
    assert model.check_override_field("env.FOO", FIELDS) is None
    assert model.check_override_field("enabled", FIELDS) is None
    problem = model.check_override_field("ports", FIELDS)
    assert problem == (
        "'ports' cannot be overridden; use one of: enabled, image, command, args, "
        "restartPolicy, resources.cpus, resources.memory, env.<NAME>"
    )
    assert model.check_override_field("env.", FIELDS) is not None
    assert model.check_override_field("ports", None) is None  # the node judges it


def test_override_fields_from_the_node() -> None:
    assert FIELDS.suggestions == (
        "env.",
        "enabled",
        "image",
        "command",
        "args",
        "restartPolicy",
        "resources.cpus",
        "resources.memory",
    )
    for bad in (None, [], {"fields": "image"}, {"fields": [1]}):
        with pytest.raises(ValueError):
            model.OverrideFields.from_api(bad)


def test_event_rows_merge_and_attribute() -> None:
    rows = model.event_rows(
        [{"ts": NOW - 10, "workload": "web", "kind": "started", "message": "container started"}],
        [
            {
                "ts": NOW - 5,
                "doc": "node/n1",
                "author": "node:n1",
                "on_behalf": "technician:alice",
                "summary": "override web env.A=1",
            },
            {"ts": NOW - 20, "doc": "fleet", "author": "operator:bob", "summary": "apply web"},
        ],
        "n1",
    )
    assert [r.origin for r in rows] == ["local", "runtime", "synced"]
    # Signed here for a technician: the person, not the node (ORIGIN says "local").
    assert rows[0].who == "technician:alice"
    assert rows[0].what == "override web env.A=1 [node/n1]"
    assert rows[2].who == "operator:bob"
    assert "web: started: container started" in rows[1].what
    assert [r.origin for r in model.event_rows([], [{"author": "node:n1"}], None)] == ["synced"]
    filtered = model.event_rows([], [{"author": "operator:bob", "summary": "apply x"}], "n1", "bob")
    assert len(filtered) == 1


def test_peer_and_rejection_rows() -> None:
    rows = model.peer_rows(
        [{"node": "n2", "up": False, "last_heard": NOW - 120, "bytes_in": 2048, "behind_by": 3}],
        NOW,
    )
    assert rows == [("n2", "-", "-", "DOWN", "2m00s ago", "2.0 KiB", "-", "3", "0")]
    assert model.rejection_rows({"rejections": {"a": 1, "b": 5}}) == [("b", "5"), ("a", "1")]
    assert model.link_rows([{"error": "x"}]) == ["links unavailable: x"]
    assert model.link_rows([{"name": "hub", "rtt": "1ms", "x": None}]) == ["name=hub rtt=1ms"]


def test_action_error_text() -> None:
    assert model.action_error_text("forbidden_by_policy", "locked").startswith(
        "Refused by fleet policy"
    )
    assert model.action_error_text("permission_denied", "wrong PIN").startswith("Not allowed")
    assert model.action_error_text("other", "plain") == "plain"


def test_resolve_jump() -> None:
    assert resolve_jump(":wl") == "workloads"
    assert resolve_jump(" Peers ") == "peers"
    assert resolve_jump("sync") == "peers"
    assert resolve_jump("nope") is None
