"""The fleet view's rows and site summaries (noderuntime/fleetops/view.py): pure, over builders."""

from __future__ import annotations

import pytest

from noderuntime.crdt.schema import StatusRecord
from noderuntime.errors import InvalidInputError
from noderuntime.fleetops.view import (
    FleetFilter,
    NodeSnapshot,
    fleet_rows,
    revision_index,
    rollout_step_notes,
    site_summaries,
)

NOW = 1_000_000.0


def node(
    ident: str,
    site: str,
    *,
    heard_ago: float | None = 1.0,
    phases: dict[str, str] | None = None,
    **kw: object,
) -> NodeSnapshot:
    status = {
        name: StatusRecord(phase=ph, restarts=1, since=NOW - 60, spec_hash=f"h-{name}")
        for name, ph in (phases or {"web": "Running"}).items()
    }
    return NodeSnapshot(
        node_id=ident,
        site=site,
        status=status,
        last_seen=None if heard_ago is None else NOW - heard_ago,
        stale_after_s=6.0,
        **kw,  # type: ignore[arg-type]
    )


def test_one_row_per_node_and_workload_sorted_by_site_node_name() -> None:
    nodes = [
        node("b1", "lab", phases={"web": "Running", "db": "Failed"}),
        node("a1", "shop", phases={"web": "Pending"}),
        node("a2", "lab", phases={"web": "Running"}),
    ]
    rows = fleet_rows(nodes, now=NOW)
    assert [(r["site"], r["node"], r["name"]) for r in rows] == [
        ("lab", "a2", "web"),
        ("lab", "b1", "db"),
        ("lab", "b1", "web"),
        ("shop", "a1", "web"),
    ]
    r = rows[1]
    assert r["phase"] == "Failed" and r["restarts"] == 1 and r["spec_hash"] == "h-db"
    assert r["since"] == NOW - 60 and r["last_seen"] == NOW - 1.0
    assert r["age_s"] == 1.0 and r["stale"] is False and r["revision"] is None


def test_a_node_silent_longer_than_its_heartbeat_allows_is_stale_with_its_age() -> None:
    rows = fleet_rows(
        [node("n1", "lab", heard_ago=6.5), node("n2", "lab", heard_ago=None)], now=NOW
    )
    assert [(r["node"], r["stale"], r["age_s"]) for r in rows] == [
        ("n1", True, 6.5),
        ("n2", True, None),
    ]


def test_this_node_itself_is_never_stale() -> None:
    me = node("hub", "core", heard_ago=None, is_self=True)
    assert fleet_rows([me], now=NOW)[0]["stale"] is False


def test_filters_by_site_node_and_labels_of_node_or_workload() -> None:
    nodes = [
        node("n1", "lab", labels={"ring": "canary"}, phases={"web": "Running", "db": "Running"}),
        node("n2", "lab", phases={"web": "Running"}),
        node("n3", "shop", phases={"web": "Running"}),
    ]

    def pick(f: FleetFilter) -> list[tuple[str, str]]:
        labels = {"db": {"app": "pg"}}
        rows = fleet_rows(nodes, now=NOW, flt=f, workload_labels=labels)
        return [(r["node"], r["name"]) for r in rows]

    assert pick(FleetFilter.parse("shop", None, [])) == [("n3", "web")]
    assert pick(FleetFilter.parse(None, "n2", [])) == [("n2", "web")]
    assert pick(FleetFilter.parse(None, None, ["ring=canary"])) == [("n1", "db"), ("n1", "web")]
    assert pick(FleetFilter.parse(None, None, ["app=pg"])) == [("n1", "db")]
    assert pick(FleetFilter.parse("lab", None, ["app=pg", "ring=none"])) == []


def test_a_selector_must_be_key_equals_value() -> None:
    with pytest.raises(InvalidInputError):
        FleetFilter.parse(None, None, ["ring"])


def test_revision_comes_from_the_fleet_revisions_by_spec_hash() -> None:
    revs = revision_index(
        {
            "web/1": {"revision": 1, "specHash": "h-old"},
            "web/2": {"revision": 2, "specHash": "h-web"},
            "junk": {"revision": "x"},
        }
    )
    assert revs == {("web", "h-old"): 1, ("web", "h-web"): 2}
    assert fleet_rows([node("n1", "lab")], now=NOW, revisions=revs)[0]["revision"] == 2


def test_site_summaries_count_nodes_up_and_phases_and_say_rollouts_unknown() -> None:
    nodes = [
        node("n1", "lab", phases={"web": "Running", "db": "Failed"}),
        node("n2", "lab", heard_ago=30.0, phases={"web": "Running"}),
        # A sovereign site's node: no document held here, its heartbeat's counts instead.
        NodeSnapshot(
            node_id="s1",
            site="vault",
            last_seen=NOW - 2,
            sovereign=True,
            heartbeat_phases={"Running": 3},
            holds_doc=False,
        ),
    ]
    lab, vault = site_summaries(nodes, now=NOW, rollouts=None)
    assert lab == {
        "site": "lab",
        "nodes_up": 1,
        "nodes_total": 2,
        "workloads": {"Failed": 1, "Running": 2},
        "last_heard": NOW - 1,
        "sovereign": False,
        "rollout_in_progress": None,
    }
    assert vault["workloads"] == {"Running": 3} and vault["sovereign"] is True
    (lab2, _) = site_summaries(nodes, now=NOW, rollouts={"web": {"state": "Progressing"}})
    assert lab2["rollout_in_progress"] == [{"workload": "web", "state": "Progressing"}]


def test_new_rollout_steps_read_as_fleet_event_notes() -> None:
    rollouts = {"web": {"id": "r1", "workload": "web"}}
    steps = {
        "r1/go/0/lab": {},
        "r1/gate/0": {},
        "r1/end/RolledBack": {"reason": "gate failed on n3"},
        "r1/pause/1": {},
        "r1/weird": {},
    }
    assert rollout_step_notes(steps, steps, rollouts) == [
        ("web", "rollout RolledBack: gate failed on n3"),
        ("web", "wave 1 gate held"),
        ("web", "wave 1 released at site lab"),
        ("web", "rollout paused"),
    ]
