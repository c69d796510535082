"""Staged rollouts, pure parts: waves, what a node runs, gates, windows, revisions."""

from __future__ import annotations

import calendar
from typing import Any

import pytest

from noderuntime.crdt.schema import FleetView, StateSnapshot, StatusRecord
from noderuntime.errors import NotFoundError, SpecError
from noderuntime.reconcile.desired import compute_desired
from noderuntime.rollout import revisions
from noderuntime.rollout.gate import NodeState, evaluate, status_view
from noderuntime.rollout.record import Progress, Rollout, State, progress_of, rollout_summary
from noderuntime.rollout.waves import NodeFacts, bucket, parse_waves, pick, wave_of
from noderuntime.rollout.windows import parse_window, window_open

NOW = 1_000_000.0


def spec(name: str, image: str) -> dict[str, Any]:
    return {"apiVersion": "noderuntime/v1", "kind": "Workload", "metadata": {"name": name},
            "spec": {"image": image}}  # fmt: skip


def rollout(waves: str = "site=lab,50%,100%", **kw: Any) -> Rollout:
    return Rollout(
        id="web.2.abcd",
        workload="web",
        revision=2,
        candidate=spec("web", "img:v2"),
        candidate_hash="h2",
        previous_revision=1,
        waves=parse_waves(waves),
        gate_for_s=kw.pop("gate_for_s", 10.0),
        start_deadline_s=kw.pop("start_deadline_s", 60.0),
        **kw,
    )


def nodes() -> list[NodeFacts]:
    return [NodeFacts(f"lab-{i}", "lab") for i in range(2)] + [
        NodeFacts(f"n{i}", f"s{i % 2}") for i in range(8)
    ]


def running(since: float, h: str = "h2") -> StatusRecord:
    return StatusRecord(phase="Running", spec_hash=h, since=since)


# --- waves ------------------------------------------------------------------------------------


def test_waves_parse_and_end_with_everyone() -> None:
    assert parse_waves("site=lab,10%,50%") == ("site=lab", "10%", "50%", "100%")
    assert parse_waves(["label=ring=canary", "100%"]) == ("label=ring=canary", "100%")
    for bad in ("", "50%,10%", "site", "150%", "label=ring", "nope"):
        with pytest.raises(SpecError):
            parse_waves(bad)


def test_membership_is_a_function_of_the_node_id_and_percentages_are_cumulative() -> None:
    ids = [f"node-{i}" for i in range(1000)]
    assert [bucket(i) for i in ids] == [bucket(i) for i in ids]
    waves = parse_waves("10%,50%,100%")
    index = [wave_of(waves, NodeFacts(i, "s")) for i in ids]
    share = [index.count(k) / len(ids) for k in range(3)]
    assert 0.05 < share[0] < 0.15 and 0.3 < share[1] < 0.5
    # Same node, other site or labels: same wave for a percentage.
    assert wave_of(waves, NodeFacts("node-7", "x", {"a": "b"})) == index[7]


def test_selectors_pick_site_and_label_first() -> None:
    waves = parse_waves("site=lab,label=ring=canary,100%")
    assert wave_of(waves, NodeFacts("a", "lab")) == 0
    assert wave_of(waves, NodeFacts("b", "s1", {"ring": "canary"})) == 1
    assert wave_of(waves, NodeFacts("c", "s1")) == 2


# --- what a node runs -------------------------------------------------------------------------


def test_node_runs_candidate_only_where_its_wave_is_released_and_not_after_a_bad_end() -> None:
    r = rollout()
    stable = spec("web", "img:v1")
    lab, other = NodeFacts("lab-0", "lab"), NodeFacts("zz", "s1")
    released = Progress({"go/0/lab": {"at": NOW}})
    assert pick(stable, r, released, lab) is r.candidate
    assert pick(stable, r, released, other) is stable
    paused = Progress({"go/0/lab": {"at": NOW}, "pause/1": {}})
    assert paused.state() is State.PAUSED and pick(stable, r, paused, lab) is r.candidate
    for end in ("RolledBack", "Aborted", "Complete"):
        done = Progress({"go/0/lab": {"at": NOW}, f"end/{end}": {"at": NOW}})
        assert pick(stable, r, done, lab) is stable
    # A new workload (no stable spec) runs nowhere its wave is not released.
    assert pick(None, r, released, other) is None


def test_an_offline_node_returning_after_a_rollback_computes_the_stable_spec() -> None:
    """The node evaluates the record before the candidate: never the bad revision."""
    r = rollout()
    fleet = FleetView(
        workloads={"web": spec("web", "img:v1")},
        rollouts={"web": r.to_dict()},
        rollout_steps={
            f"{r.id}/go/0/lab": {"at": NOW},
            f"{r.id}/end/RolledBack": {"at": NOW, "reason": "x", "failed": ["lab-0"]},
        },
    )
    snap = StateSnapshot(generation=1, fleet=fleet, site_overrides={}, node=_node_view())
    desired = compute_desired(snap, node_id="lab-0", site="lab", node_labels={})
    assert desired.workloads["web"].workload.spec.image == "img:v1"
    live = FleetView(
        workloads=fleet.workloads,
        rollouts=fleet.rollouts,
        rollout_steps={f"{r.id}/go/0/lab": {"at": NOW}},
    )
    snap2 = StateSnapshot(generation=2, fleet=live, site_overrides={}, node=_node_view())
    desired2 = compute_desired(snap2, node_id="lab-0", site="lab", node_labels={})
    assert desired2.workloads["web"].workload.spec.image == "img:v2"


def _node_view() -> Any:
    from noderuntime.crdt.schema import NodeView

    return NodeView()


# --- gates ------------------------------------------------------------------------------------


def test_first_wave_released_then_gate_waits_for_gate_for_then_next_wave() -> None:
    r = rollout()
    ev = evaluate(r, Progress(), nodes(), {}, now=NOW)
    assert ev.facts.keys() == {"go/0/lab"}
    p = Progress(dict(ev.facts))
    reports = {"lab-0": running(NOW + 1), "lab-1": running(NOW + 2)}
    assert evaluate(r, p, nodes(), reports, now=NOW + 5).facts == {}
    ev = evaluate(r, p, nodes(), reports, now=NOW + 12.5)
    assert "gate/0" in ev.facts and any(k.startswith("go/1/") for k in ev.facts)
    assert "end/Complete" not in ev.facts


def test_a_failing_node_rolls_back_with_reason_and_failed_nodes() -> None:
    r = rollout()
    p = Progress({"go/0/lab": {"at": NOW}})
    reports = {
        "lab-0": StatusRecord(phase="Failed", spec_hash="h2", message="CrashLoopBackOff"),
        "lab-1": running(NOW),
    }
    ev = evaluate(r, p, nodes(), reports, now=NOW + 3)
    end = ev.facts["end/RolledBack"]
    assert end["failed"] == ["lab-0"] and "CrashLoopBackOff" in end["reason"]
    # A crash loop seen between restarts (Starting, but exited 3) fails too.
    looping = {"lab-0": StatusRecord(phase="Starting", spec_hash="h2", exit_code=3)}
    assert (
        "code 3" in evaluate(r, p, nodes(), looping, now=NOW + 1).facts["end/RolledBack"]["reason"]
    )
    # Later waves were never released.
    assert not any(k.startswith("go/1") for k in ev.facts)
    # Allowing one failure: the gate waits for the rest instead.
    ev = evaluate(rollout(max_unhealthy=1), p, nodes(), reports, now=NOW + 3)
    assert "end/RolledBack" not in ev.facts


def test_not_started_within_the_deadline_is_a_failure_and_old_hash_is_pending() -> None:
    r = rollout(start_deadline_s=30)
    p = Progress({"go/0/lab": {"at": NOW}})
    reports = {"lab-0": running(NOW - 100, "h1"), "lab-1": running(NOW)}
    ev = evaluate(r, p, nodes(), reports, now=NOW + 10)
    assert ev.facts == {} and ev.waves[0].count(NodeState.PENDING) == 1
    ev = evaluate(r, p, nodes(), reports, now=NOW + 31)
    assert ev.facts["end/RolledBack"]["failed"] == ["lab-0"]


def test_overridden_node_is_not_waited_for_nor_failed() -> None:
    r = rollout()
    p = Progress({"go/0/lab": {"at": NOW}})
    reports = {"lab-1": running(NOW)}
    ev = evaluate(r, p, nodes(), reports, overridden=frozenset({"lab-0"}), now=NOW + 11)
    assert "gate/0" in ev.facts
    view = status_view(r, p, ev)
    assert {"node": "lab-0", "site": "lab", "wave": 1, "state": "overridden"} | {
        "reason": "a site or node override changes it here"
    } in view["nodes"]


def test_windows_hold_a_site_back_and_status_says_which() -> None:
    r = rollout("site=lab,100%")
    sat_3am = calendar.timegm((2026, 12, 5, 3, 0, 0))  # a Saturday
    windows = {"s0": "Sat 02:00-04:00", "s1": "Sun 02:00-04:00"}
    p = Progress({"go/0/lab": {"at": sat_3am - 100}, "gate/0": {"at": sat_3am - 50}})
    lab = {"lab-0": running(sat_3am - 90), "lab-1": running(sat_3am - 90)}
    ev = evaluate(r, p, nodes(), lab, windows=windows, now=sat_3am)
    assert set(ev.facts) == {"go/1/s0"}
    view = status_view(r, p, ev)
    assert view["waiting_sites"] == ["s1"] and view["state"] == "Progressing"


def test_paused_rollout_releases_nothing_but_still_rolls_back() -> None:
    r = rollout()
    p = Progress({"go/0/lab": {"at": NOW}, "pause/1": {}})
    reports = {"lab-0": running(NOW), "lab-1": running(NOW)}
    assert evaluate(r, p, nodes(), reports, now=NOW + 100).facts == {}
    bad = {"lab-0": StatusRecord(phase="Unhealthy", spec_hash="h2"), "lab-1": running(NOW)}
    assert "end/RolledBack" in evaluate(r, p, nodes(), bad, now=NOW + 1).facts


def test_all_gates_hold_completes_and_ended_rollouts_take_no_step() -> None:
    r = rollout("100%")
    p = Progress({"go/0/s0": {"at": NOW}, "go/0/s1": {"at": NOW}, "go/0/lab": {"at": NOW}})
    reports = {n.node_id: running(NOW) for n in nodes()}
    ev = evaluate(r, p, nodes(), reports, now=NOW + 11)
    assert {"gate/0", "end/Complete"} <= set(ev.facts)
    done = Progress({**p.facts, "end/Complete": {"at": NOW}, "end/RolledBack": {"at": NOW}})
    assert done.state() is State.ROLLED_BACK  # the conservative end wins
    assert evaluate(r, done, nodes(), {}, now=NOW + 500).facts == {}


# --- windows, records, revisions --------------------------------------------------------------


def test_window_parsing_and_midnight() -> None:
    w = parse_window("Fri 23:00-01:00")
    fri = calendar.timegm((2026, 12, 4, 23, 30, 0))
    assert w.open_at(fri) and w.open_at(fri + 3600) and not w.open_at(fri + 7200)
    assert parse_window("Mon-Fri 02:00-04:00").days == frozenset(range(5))
    assert window_open(None, fri) and not window_open("Sat 02:00-04:00", fri)
    for bad in ("Sat", "Xyz 02:00-03:00", "25:00-26:00", "02:00-02:00"):
        with pytest.raises(SpecError):
            parse_window(bad)


def test_summary_and_history_read_from_the_fleet_view() -> None:
    r = rollout()
    fleet = FleetView(
        rollouts={"web": r.to_dict(), "junk": {"nope": 1}},
        rollout_steps={f"{r.id}/go/0/lab": {"at": NOW}, "other.1/go/0/x": {"at": NOW}},
        revisions={
            revisions.revision_key("web", n): revisions.revision_record(
                "web", n, spec("web", f"img:v{n}"), f"h{n}", author="ann", at=NOW
            )
            for n in (1, 2)
        },
    )
    assert Rollout.from_dict(r.to_dict()) == r
    assert progress_of(fleet, r.id).facts.keys() == {"go/0/lab"}
    assert rollout_summary(fleet) == {
        "web": {"id": r.id, "revision": 2, "state": "Progressing", "wave": 0, "waves": 3}
    }
    rows = revisions.history_view(fleet, "web", "h1")
    assert [(x["revision"], x["spec_hash"], x["stable"]) for x in rows] == [
        (1, "h1", True),
        (2, "h2", False),
    ]
    assert revisions.latest_number(fleet, "web") == 2


# --- commands ---------------------------------------------------------------------------------


def _fleet_from(entries: list[Any], base: FleetView | None = None) -> FleetView:
    maps: dict[str, dict[str, Any]] = {
        "workloads": dict(base.workloads) if base else {},
        "revisions": dict(base.revisions) if base else {},
        "rollouts": dict(base.rollouts) if base else {},
        "rolloutSteps": dict(base.rollout_steps) if base else {},
        "windows": dict(base.windows) if base else {},
    }
    for map_name, key, value in entries:
        maps[map_name][key] = value
    return FleetView(
        workloads=maps["workloads"],
        revisions=maps["revisions"],
        rollouts=maps["rollouts"],
        rollout_steps=maps["rolloutSteps"],
        windows=maps["windows"],
    )


def test_start_records_the_stable_revision_first_and_refuses_a_second_rollout() -> None:
    from noderuntime.errors import ConflictError
    from noderuntime.rollout import commands

    fleet = FleetView(workloads={"web": spec("web", "img:v1")})
    r, entries = commands.start(
        fleet, spec("web", "img:v2"), "h2", "h1", waves="site=lab", gate_for_s=5,
        max_unhealthy=0, author="operator:ann", now=NOW,
    )  # fmt: skip
    assert (r.revision, r.previous_revision, r.waves) == (2, 1, ("site=lab", "100%"))
    fleet = _fleet_from(entries, fleet)
    assert [x["specHash"] for x in revisions.history(fleet, "web")] == ["h1", "h2"]
    with pytest.raises(ConflictError):
        commands.start(
            fleet, spec("web", "img:v3"), "h3", "h1", waves="100%", gate_for_s=5,
            max_unhealthy=0, author="x", now=NOW,
        )  # fmt: skip
    # Pause is idempotent; resume undoes it; abort ends it and then a new one may start.
    paused = _fleet_from(commands.pause(fleet, "web", by="x", now=NOW, resume=False), fleet)
    assert progress_of(paused, r.id).state() is State.PAUSED
    assert commands.pause(paused, "web", by="x", now=NOW, resume=False) == []
    resumed = _fleet_from(commands.pause(paused, "web", by="x", now=NOW, resume=True), paused)
    assert progress_of(resumed, r.id).state() is State.PROGRESSING
    aborted = _fleet_from(commands.abort(resumed, "web", by="x", now=NOW, reason="r"), resumed)
    assert progress_of(aborted, r.id).state() is State.ABORTED
    assert commands.active(aborted, "web") is None


def test_undo_goes_to_the_revision_before_the_stable_one_and_aborts_a_rollout() -> None:
    from noderuntime.rollout import commands

    fleet = FleetView(workloads={"web": spec("web", "img:v2")})
    recs = [
        (
            "revisions",
            revisions.revision_key("web", n),
            revisions.revision_record("web", n, spec("web", f"v{n}"), f"h{n}", author="a", at=NOW),
        )
        for n in (1, 2)
    ]
    fleet = _fleet_from(recs, fleet)
    to, entries = commands.undo(fleet, "web", "h2", to_revision=None, by="x", now=NOW)
    assert to == 1
    after = _fleet_from(entries, fleet)
    assert after.workloads["web"] == spec("web", "v1")
    assert revisions.history_view(after, "web", "h1")[-1]["note"] == "undo to revision 1"
    with pytest.raises(NotFoundError):
        commands.undo(fleet, "web", "h2", to_revision=7, by="x", now=NOW)


def test_an_operator_promotes_wave_by_wave_to_complete_with_no_hub() -> None:
    from noderuntime.rollout import commands

    r = rollout("site=lab,100%")
    fleet = FleetView(workloads={"web": spec("web", "img:v1")}, rollouts={"web": r.to_dict()})
    lab, other = NodeFacts("lab-0", "lab"), NodeFacts("n1", "s1")
    what, entries = commands.promote(fleet, "web", by="operator:ann", now=NOW)
    fleet = _fleet_from(entries, fleet)
    assert what == "wave 1 released at every site"
    p = progress_of(fleet, r.id)
    assert pick(None, r, p, lab) is r.candidate and pick(None, r, p, other) is None
    ev = evaluate(r, p, nodes(), {}, now=NOW)
    assert ev.waves[0].released == {"lab"} and "go/0/lab" not in ev.facts
    what, entries = commands.promote(fleet, "web", by="operator:ann", now=NOW)
    fleet = _fleet_from(entries, fleet)
    assert pick(None, r, progress_of(fleet, r.id), other) is r.candidate
    what, entries = commands.promote(fleet, "web", by="operator:ann", now=NOW)
    fleet = _fleet_from(entries, fleet)
    assert what == "complete" and progress_of(fleet, r.id).state() is State.COMPLETE
    assert fleet.workloads["web"] == r.candidate


def test_revision_history_is_bounded_per_workload() -> None:
    from noderuntime.crdt.schema import FleetView
    from noderuntime.rollout import revisions

    recs = {
        revisions.revision_key(w, n): {"workload": w, "revision": n}
        for w in ("web", "db")
        for n in range(1, 15)
    }
    fleet = FleetView(revisions=recs)
    gone = revisions.pruned_keys(fleet, "web", 15, frozenset({3}))
    kept = {int(k.rsplit("/", 1)[1]) for k in recs if k.startswith("web/") and k not in gone}
    assert kept == {3, *range(6, 15)}  # with 15, the newest REVISIONS_KEPT, plus the kept one
    assert all(k.startswith("web/") for k in gone)
