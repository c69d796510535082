"""The planner is pure: feed it (desired, observed, ctx) and check the actions."""

from __future__ import annotations

from dataclasses import replace

from noderuntime.reconcile.plan import (
    VANISH_GRACE_S,
    Backoff,
    CreateContainer,
    Plan,
    PlanContext,
    PlannedWorkload,
    RemoveContainer,
    StartContainer,
    StopContainer,
    backoff_delay_s,
    next_backoff,
    plan,
)
from noderuntime.runtime.base import ContainerSpec, ContainerState, ObservedContainer

NOW = 10_000.0
BOOT = 1_000.0


def wl(
    name: str = "web", h: str = "h1", policy: str = "always", enabled: bool = True
) -> PlannedWorkload:
    return PlannedWorkload(
        name=name,
        spec_hash=h,
        container=ContainerSpec(
            name=f"nr-n1-{name}", image="localhost/busybox:1", stop_timeout_s=7
        ),
        restart_policy=policy,
        enabled=enabled,
    )


def ctr(
    cid: str = "c1",
    workload: str = "web",
    h: str = "h1",
    state: ContainerState = ContainerState.RUNNING,
    exit_code: int | None = None,
    started: float | None = NOW - 100,
    finished: float | None = None,
) -> ObservedContainer:
    return ObservedContainer(
        id=cid,
        name=f"nr-n1-{workload}",
        workload=workload,
        spec_hash=h,
        state=state,
        exit_code=exit_code,
        started_at=started,
        finished_at=finished,
    )


def ctx(**kw: object) -> PlanContext:
    return replace(PlanContext(now=NOW, boot_time=BOOT), **kw)  # type: ignore[arg-type]


def desired(*ws: PlannedWorkload) -> dict[str, PlannedWorkload]:
    return {w.name: w for w in ws}


def test_empty_is_converged() -> None:
    assert plan({}, [], ctx()).converged


def test_missing_container_is_created() -> None:
    p = plan(desired(wl()), [], ctx())
    assert p.actions == (CreateContainer("web", wl().container, "h1"),)


def test_running_matching_container_is_adopted_untouched() -> None:
    assert plan(desired(wl()), [ctr()], ctx()).converged


def test_changed_spec_replaces_container_remove_first() -> None:
    p = plan(desired(wl(h="h2")), [ctr(h="h1")], ctx())
    assert p.actions == (
        RemoveContainer("web", "c1", timeout_s=7),
        CreateContainer("web", wl(h="h2").container, "h2"),
    )


def test_undesired_containers_are_removed_once_gone_for_the_grace() -> None:
    gone = {"old": NOW - VANISH_GRACE_S}
    p = plan({}, [ctr(workload="old")], ctx(gone_since=gone))
    assert p.actions == (RemoveContainer("old", "c1", timeout_s=10),)


def test_a_workload_that_vanished_a_moment_ago_keeps_its_container() -> None:
    # A CRDT update applied before the repair it depends on hides a value for ~1 s after a heal.
    for gone in ({}, {"old": NOW - 1.0}):
        p = plan({}, [ctr(workload="old")], ctx(gone_since=gone))
        assert p.actions == ()
        assert p.requeue_after_s is not None and 0 < p.requeue_after_s <= VANISH_GRACE_S


def test_duplicates_keep_the_running_matching_one() -> None:
    a = ctr("a", state=ContainerState.EXITED, exit_code=0, finished=NOW - 5)
    b = ctr("b")
    p = plan(desired(wl()), [a, b], ctx())
    assert p.actions == (RemoveContainer("web", "a", timeout_s=7),)


def test_created_container_is_started_not_counted_as_restart() -> None:
    p = plan(desired(wl()), [ctr(state=ContainerState.CREATED, started=None)], ctx())
    assert p.actions == (StartContainer("web", "c1", restart=False),)


def test_container_stopped_by_reboot_comes_back_whatever_the_policy() -> None:
    for policy in ("always", "on-failure", "never"):
        c = ctr(state=ContainerState.EXITED, exit_code=137, finished=BOOT - 50, started=BOOT - 500)
        p = plan(desired(wl(policy=policy)), [c], ctx())
        assert p.actions == (StartContainer("web", "c1", restart=False),), policy


def test_restart_policy_decides_after_an_exit() -> None:
    crashed = ctr(state=ContainerState.EXITED, exit_code=1, finished=NOW - 1)
    done = ctr(state=ContainerState.EXITED, exit_code=0, finished=NOW - 1)
    assert plan(desired(wl(policy="always")), [done], ctx()).actions == (
        StartContainer("web", "c1", restart=True),
    )
    assert plan(desired(wl(policy="on-failure")), [crashed], ctx()).actions == (
        StartContainer("web", "c1", restart=True),
    )
    assert plan(desired(wl(policy="on-failure")), [done], ctx()).converged
    assert plan(desired(wl(policy="never")), [crashed], ctx()).converged


def test_crash_loop_waits_for_backoff_and_requeues() -> None:
    crashed = ctr(state=ContainerState.EXITED, exit_code=1, finished=NOW - 1)
    p = plan(desired(wl()), [crashed], ctx(backoff={"web": Backoff(3, NOW + 4)}))
    assert p.actions == ()
    assert p.requeue_after_s == 4
    # Feed the later time back in: the restart happens.
    p2 = plan(desired(wl()), [crashed], ctx(now=NOW + 4, backoff={"web": Backoff(3, NOW + 4)}))
    assert p2.actions == (StartContainer("web", "c1", restart=True),)


def test_failed_create_waits_for_backoff() -> None:
    p = plan(desired(wl()), [], ctx(backoff={"web": Backoff(1, NOW + 2)}))
    assert p == Plan((), 2.0)


def test_disabled_workload_is_stopped_not_removed_and_not_created() -> None:
    assert plan(desired(wl(enabled=False)), [ctr()], ctx()).actions == (
        StopContainer("web", "c1", 7),
    )
    assert plan(desired(wl(enabled=False)), [], ctx()).converged
    stopped = ctr(state=ContainerState.EXITED, exit_code=143, finished=NOW - 1)
    assert plan(desired(wl(enabled=False)), [stopped], ctx()).converged


def test_reenabled_workload_stopped_by_us_starts_even_with_policy_never() -> None:
    stopped = ctr(state=ContainerState.EXITED, exit_code=143, finished=NOW - 1)
    p = plan(desired(wl(policy="never")), [stopped], ctx(stopped_by_us=frozenset({"c1"})))
    assert p.actions == (StartContainer("web", "c1", restart=False),)


def test_reenabled_workload_starts_whatever_its_policy_and_exit_code() -> None:
    # Nothing in memory says the node stopped it (the node restarted, or it had completed
    # before `stop`): its container finished before the user re-enabled the workload.
    done = ctr(state=ContainerState.EXITED, exit_code=0, finished=NOW - 50)
    for policy in ("never", "on-failure"):
        p = plan(desired(wl(policy=policy)), [done], ctx(enabled_at={"web": NOW - 10}))
        assert p.actions == (StartContainer("web", "c1", restart=False),)
        # Once it has run again after being re-enabled, the policy decides as usual.
        later = replace(done, finished_at=NOW - 5)
        assert plan(
            desired(wl(policy=policy)), [later], ctx(enabled_at={"web": NOW - 10})
        ).converged
        assert plan(desired(wl(policy=policy)), [done], ctx()).converged


def test_unhealthy_container_is_restarted_unless_policy_never() -> None:
    c = ctr()
    p = plan(desired(wl()), [c], ctx(unhealthy=frozenset({"c1"})))
    assert p.actions == (StopContainer("web", "c1", 7), StartContainer("web", "c1", restart=True))
    assert plan(desired(wl(policy="never")), [c], ctx(unhealthy=frozenset({"c1"}))).converged


def test_other_workloads_are_independent() -> None:
    p = plan(desired(wl("a"), wl("b")), [ctr("x", workload="a")], ctx())
    assert p.actions == (CreateContainer("b", wl("b").container, "h1"),)


def test_paused_container_is_respected() -> None:
    assert plan(desired(wl()), [ctr(state=ContainerState.PAUSED)], ctx()).converged


def test_backoff_grows_caps_and_resets_after_a_long_run() -> None:
    assert [backoff_delay_s(n, 1, 60) for n in range(0, 9)] == [0, 1, 2, 4, 8, 16, 32, 60, 60]
    b = Backoff()
    for _ in range(3):
        b = next_backoff(b, now=NOW, ran_for_s=1, initial_s=1, max_s=60, reset_after_s=120)
    assert b == Backoff(3, NOW + 4)
    b = next_backoff(b, now=NOW, ran_for_s=500, initial_s=1, max_s=60, reset_after_s=120)
    assert b == Backoff(1, NOW + 1)


def test_workload_whose_image_is_being_pulled_waits_for_the_pull_not_a_timer() -> None:
    image = wl().container.image
    other = replace(wl("api"), container=replace(wl("api").container, image="localhost/x:2"))
    p = plan(desired(wl(), other), [], ctx(pulling=frozenset({image})))
    # The pull's end triggers a pass: no create, no requeue for it; others go on.
    assert p.actions == (CreateContainer("api", other.container, "h1"),)
    assert p.requeue_after_s is None
    assert plan(desired(wl()), [], ctx(pulling=frozenset({image}))).converged


def test_pulling_an_image_does_not_hold_up_removing_the_old_container() -> None:
    p = plan(desired(wl(h="h2")), [ctr(h="h1")], ctx(pulling=frozenset({wl().container.image})))
    assert p.actions == (RemoveContainer("web", "c1", timeout_s=7),)


# --- held: the store lost its memory, nothing may be destroyed ----------------------------

HOLD = "state.db is missing"


def test_held_keeps_containers_no_workload_wants() -> None:
    observed = [ctr("c1", "web"), ctr("c2", "db", state=ContainerState.EXITED, finished=NOW)]
    gone = {"web": NOW - VANISH_GRACE_S, "db": NOW - VANISH_GRACE_S}
    assert plan({}, observed, ctx(gone_since=gone)).actions  # not held: both removed
    p = plan({}, observed, ctx(hold=HOLD, gone_since=gone))
    assert p.actions == ()
    assert p.held == ("db", "web")
    assert p.converged


def test_held_keeps_the_old_container_and_creates_no_clashing_new_one() -> None:
    p = plan(desired(wl(h="h2")), [ctr(h="h1")], ctx(hold=HOLD))
    assert p.actions == ()
    assert p.held == ("web",)


def test_held_neither_stops_a_disabled_workload_nor_restarts_an_unhealthy_one() -> None:
    disabled = plan(desired(wl(enabled=False)), [ctr()], ctx(hold=HOLD))
    assert (disabled.actions, disabled.held) == ((), ("web",))
    sick = plan(desired(wl()), [ctr()], ctx(hold=HOLD, unhealthy=frozenset({"c1"})))
    assert (sick.actions, sick.held) == ((), ("web",))


def test_held_keeps_duplicates_but_still_starts_the_kept_container() -> None:
    kept = ctr("c1", state=ContainerState.EXITED, exit_code=1, finished=BOOT - 1, started=None)
    p = plan(desired(wl()), [kept, ctr("c2", h="old", started=None)], ctx(hold=HOLD))
    assert p.actions == (StartContainer("web", "c1", restart=False),)
    assert p.held == ("web",)


def test_held_still_creates_a_workload_that_has_no_container() -> None:
    gone = {"gone": NOW - VANISH_GRACE_S}
    p = plan(desired(wl("new")), [ctr("c9", "gone")], ctx(hold=HOLD, gone_since=gone))
    assert p.actions == (CreateContainer("new", wl("new").container, "h1"),)
    assert p.held == ("gone",)


def test_held_plan_fed_back_stays_the_same() -> None:
    observed = [ctr("c1", "web", h="h1")]
    first = plan(desired(wl(h="h2")), observed, ctx(hold=HOLD))
    assert plan(desired(wl(h="h2")), observed, ctx(hold=HOLD)) == first
    assert plan(desired(wl(h="h2")), observed, ctx()).actions == (
        RemoveContainer("web", "c1", timeout_s=7),
        CreateContainer("web", wl(h="h2").container, "h2"),
    )
