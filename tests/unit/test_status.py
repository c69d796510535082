"""Derived status must stay the same for the whole back-off: every change is a signed write."""

from __future__ import annotations

from noderuntime.api.views import workload_view
from noderuntime.crdt.schema import StatusRecord
from noderuntime.reconcile.plan import Backoff, PlanContext, PlannedWorkload, next_backoff
from noderuntime.reconcile.status import Derived, Phase, derive
from noderuntime.runtime.base import ContainerSpec, ContainerState, ObservedContainer

NOW = 10_000.0
BOOT = 1_000.0
W = PlannedWorkload(
    name="web",
    spec_hash="h1",
    container=ContainerSpec(name="nr-n1-web", image="localhost/busybox:1"),
    restart_policy="always",
)
CRASHED = ObservedContainer(
    id="c1",
    name="nr-n1-web",
    workload="web",
    spec_hash="h1",
    state=ContainerState.EXITED,
    exit_code=1,
    started_at=NOW - 2,
    finished_at=NOW - 1,
)


def derived(now: float, backoff: Backoff, keep: ObservedContainer | None = CRASHED) -> Derived:
    ctx = PlanContext(now=now, boot_time=BOOT, backoff={"web": backoff})
    error = None if keep is not None else "image localhost/nope:1 not found"
    return derive(W, keep, ctx, health=None, last_error=error, runtime_error=None)


def record(d: Derived) -> StatusRecord:
    return StatusRecord(
        phase=d.phase.value,
        container_id=d.container_id,
        message=d.message,
        exit_code=d.exit_code,
        retry_at=d.retry_at,
    )


def test_crash_loop_status_is_identical_throughout_one_backoff() -> None:
    backoff = Backoff(4, NOW + 275)
    first, later = derived(NOW, backoff), derived(NOW + 200, backoff)
    assert first.phase is Phase.FAILED
    assert record(first) == record(later)  # no transition, so no write
    assert first.retry_at == NOW + 275
    assert "retrying" not in first.message


def test_failed_create_status_is_identical_throughout_one_backoff() -> None:
    backoff = Backoff(2, NOW + 30)
    assert record(derived(NOW, backoff, None)) == record(derived(NOW + 29, backoff, None))


def test_a_new_attempt_changes_the_status() -> None:
    backoff = Backoff(4, NOW + 8)
    again = next_backoff(
        backoff, now=NOW + 9, ran_for_s=0.5, initial_s=1, max_s=300, reset_after_s=600
    )
    assert record(derived(NOW, backoff)) != record(derived(NOW + 9.5, again))


def test_status_record_round_trips_and_reads_old_records() -> None:
    rec = record(derived(NOW, Backoff(4, NOW + 8)))
    assert StatusRecord.from_json(rec.to_json()) == rec
    assert StatusRecord.from_json('{"phase": "Running"}').retry_at is None


def test_view_renders_the_countdown_at_read_time() -> None:
    rec = record(derived(NOW, Backoff(4, NOW + 275)))
    view = workload_view("web", None, rec, now=NOW)
    assert view["message"] == "CrashLoopBackOff: exited with code 1; retrying in 275s"
    assert view["retry_at"] == NOW + 275
    assert workload_view("web", None, rec, now=NOW + 300)["message"] == rec.message


def test_status_record_keeps_enabled_and_reads_old_disabled_records() -> None:
    rec = StatusRecord(phase="Running", enabled=True, enabled_at=NOW)
    assert StatusRecord.from_json(rec.to_json()) == rec
    old = '{"phase": "Stopped", "message": "disabled by override"}'
    assert StatusRecord.from_json(old).enabled is False
    assert StatusRecord.from_json('{"phase": "Stopped"}').enabled is True


def test_pulling_status_is_identical_for_the_whole_pull() -> None:
    def during(now: float) -> Derived:
        ctx = PlanContext(
            now=now,
            boot_time=BOOT,
            backoff={"web": Backoff(2, NOW - 5)},
            pulling=frozenset({"localhost/busybox:1"}),
        )
        return derive(W, None, ctx, health=None, last_error="older error", runtime_error=None)

    first, later = during(NOW), during(NOW + 500)
    assert first.phase is Phase.PENDING
    assert first.message == "pulling image localhost/busybox:1"
    assert first.retry_at is None
    assert record(first) == record(later)
