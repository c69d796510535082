"""The reconcile loop over FakeRuntime: crash loops, adoption, spec changes, reboots, outages.

Passes are driven one by one (``Harness.settle`` / ``tick``) with a manual clock, so back-offs
are tested by moving the clock, not by waiting. The same behaviours against real Podman are in
tests/integration/test_node_lifecycle.py and test_node_resilience.py.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from noderuntime.crdt import records, schema
from noderuntime.crdt.store import MemoryStore, SQLiteStore
from noderuntime.reconcile import desired as desired_module
from noderuntime.reconcile.plan import VANISH_GRACE_S
from noderuntime.runtime.base import ContainerSpec, ContainerState
from noderuntime.runtime.fake import FakeRuntime, ManualClock
from tests.unit.reconciler_harness import BOOT, IMAGE, START, Harness, harness, workload


async def test_apply_creates_and_runs_then_nothing_more_to_do() -> None:
    async with harness() as h:
        await h.apply(workload("web"))
        await h.settle()
        (c,) = h.runtime.of("web")
        assert c.state is ContainerState.RUNNING
        assert h.status("web").phase == "Running"
        assert h.status("web").container_id == c.id
        assert h.rec.last_plan is not None and h.rec.last_plan.converged
        assert h.runtime.count("create") == 1


async def test_crash_loop_backs_off_exponentially_and_counts_restarts() -> None:
    async with harness(crashBackoffInitialSeconds=1, crashBackoffMaxSeconds=8) as h:
        await h.apply(workload("web"))
        await h.settle()
        first = h.runtime.running("web").id
        delays = []
        for restarts in range(1, 7):
            h.clock.advance(0.5)
            h.runtime.die("web", exit_code=3)
            crashed_at = h.clock.now
            wait = await h.tick()
            if h.status("web").phase != "Running":
                status = h.status("web")
                assert status.phase == "Failed"
                assert status.message == "CrashLoopBackOff: exited with code 3"
                assert status.retry_at is not None
                assert wait == pytest.approx(status.retry_at - h.clock.now)  # wakes then
                h.clock.advance(wait / 2)
                await h.tick()
                assert h.runtime.containers[first].state is ContainerState.EXITED
                h.clock.advance(wait / 2)
                await h.tick()
            delays.append(h.clock.now - crashed_at)
            assert h.runtime.running("web").id == first  # restarted, not re-created
            assert h.status("web").restarts == restarts
        # At once, then 1, 2, 4, 8, 8 s (doubling, capped) after the previous start; each run
        # lasted 0.5 s of that.
        assert delays == [0, 0.5, 1.5, 3.5, 7.5, 7.5]
        assert h.kinds("web").count("restarted") == 6


async def test_a_long_healthy_run_forgives_earlier_crashes() -> None:
    async with harness(crashBackoffInitialSeconds=1, crashBackoffResetSeconds=60) as h:
        await h.apply(workload("web"))
        await h.settle()
        for _ in range(4):
            h.runtime.die("web")
            await h.tick()
            h.clock.advance(10)
            await h.tick()
        assert h.rec.runtime_state("web").backoff.failures == 4
        h.clock.advance(120)  # a long run, then crashes again
        h.runtime.die("web")
        await h.tick()
        assert h.status("web").phase == "Running"  # restarted at once...
        h.runtime.die("web")
        await h.tick()
        retry_at = h.status("web").retry_at
        assert retry_at == h.clock.now + 1  # ...and the back-off starts over at 1 s


async def test_restarted_node_adopts_the_containers_it_labelled() -> None:
    clock = ManualClock(START)
    runtime = FakeRuntime(clock=clock, images=[IMAGE])
    store = MemoryStore()
    async with harness(runtime=runtime, store=store, clock=clock) as h:
        await h.apply(workload("web"), workload("db"), workload("gone"))
        await h.settle()
        ids = {w: h.runtime.running(w).id for w in ("web", "db", "gone")}
        await h.delete("gone")
        # The node stops before it acted on the delete: "gone"'s container is left behind.
    creates = runtime.count("create")

    async with harness(runtime=runtime, store=store, clock=clock) as h:
        await h.settle()
        assert runtime.count("create") == creates  # nothing re-created
        assert h.runtime.running("web").id == ids["web"]
        assert h.runtime.running("db").id == ids["db"]
        assert h.runtime.of("gone") != []  # gone a moment ago: kept for the vanish grace
        clock.advance(VANISH_GRACE_S)
        await h.tick()
        await h.settle()
        assert h.runtime.of("gone") == []  # ours, labelled, no longer desired: removed
        assert h.status("web").container_id == ids["web"]
        assert "gone" not in h.state.snapshot().node.status


async def test_containers_of_other_nodes_and_unlabelled_ones_are_never_touched() -> None:
    runtime = FakeRuntime(clock=ManualClock(START), images=[IMAGE])
    theirs = runtime.add_container(
        ContainerSpec(
            name="nr-n2-web",
            image=IMAGE,
            labels=(
                ("io.noderuntime.managed", "true"),
                ("io.noderuntime.node", "n2"),
                ("io.noderuntime.spec-hash", "0123"),
                ("io.noderuntime.workload", "web"),
            ),
        )
    )
    by_hand = runtime.add_container(ContainerSpec(name="by-hand", image=IMAGE))
    async with harness(runtime=runtime) as h:
        await h.apply(workload("web"))
        await h.settle()
        assert {c.spec.name for c in runtime.of("web")} == {"nr-n1-web", "nr-n2-web"}
        assert runtime.containers[theirs].state is ContainerState.RUNNING
        assert runtime.containers[by_hand].state is ContainerState.RUNNING
        assert {m for m, cid in runtime.calls if cid in (theirs, by_hand)} == set()


async def test_changed_spec_replaces_the_container_old_one_removed_first() -> None:
    async with harness() as h:
        await h.apply(workload("web", env={"MODE": "a"}))
        await h.settle()
        old = h.runtime.running("web").id
        old_hash = h.status("web").spec_hash
        h.runtime.calls.clear()
        await h.apply(workload("web", env={"MODE": "b"}))
        await h.settle()
        (c,) = h.runtime.of("web")
        assert c.id != old and c.state is ContainerState.RUNNING
        assert dict(c.spec.env) == {"MODE": "b"}
        methods = [m for m, _ in h.runtime.calls if m in ("remove", "create")]
        assert methods == ["remove", "create"]  # the name and ports are free for the new one
        assert h.status("web").spec_hash not in (None, old_hash)
        assert h.status("web").container_id == c.id


async def test_containers_stopped_by_a_reboot_come_back_whatever_their_policy() -> None:
    clock = ManualClock(START)
    runtime = FakeRuntime(clock=clock, images=[IMAGE])
    store = MemoryStore()
    async with harness(runtime=runtime, store=store, clock=clock) as h:
        await h.apply(workload("once", policy="never"), workload("batch", policy="on-failure"))
        await h.settle()
        # Before the reboot, "batch" completed on its own: that one stays completed.
        clock.advance(10)
        runtime.die("batch", exit_code=0)
        await h.tick()
        assert h.status("batch").phase == "Stopped"
    clock.advance(60)
    boot = clock.now - 30
    runtime.reboot(boot)

    async with harness(runtime=runtime, store=store, clock=clock, boot_time=boot) as h:
        await h.settle()
        assert h.runtime.running("once").started_at == clock.now
        assert h.status("once").phase == "Running"
        assert h.status("once").restarts == 0  # a reboot is not a crash
        # ...but a container that ended before the reboot started again: "finished before boot"
        # covers it too, as it would after any reboot (Podman cannot tell the two apart).
        assert h.status("batch").phase == "Running"


async def test_an_exit_after_boot_follows_the_policy() -> None:
    async with harness(boot_time=BOOT) as h:
        await h.apply(workload("once", policy="never"))
        await h.settle()
        h.clock.advance(5)
        h.runtime.die("once", exit_code=2)
        await h.tick()
        assert h.status("once").phase == "Failed"
        assert h.status("once").message == "exited with code 2 (restartPolicy never)"
        h.clock.advance(3600)
        await h.tick()
        assert h.runtime.of("once")[0].state is ContainerState.EXITED


async def test_podman_down_marks_everything_unknown_backs_off_and_adopts_on_return() -> None:
    async with harness() as h:
        await h.apply(workload("web"), workload("db"))
        await h.settle()
        ids = {w: h.runtime.running(w).id for w in ("web", "db")}
        h.runtime.go_down()
        waits = [await h.tick() for _ in range(4)]
        assert waits == sorted(waits) and waits[0] < waits[-1]  # backing off
        assert h.rec.runtime_error is not None and "cannot connect" in h.rec.runtime_error
        for w in ("web", "db"):
            assert h.status(w).phase == "Unknown"
            assert h.status(w).container_id == ids[w]  # kept: we cannot know otherwise
        assert h.kinds("").count("runtime") == 1  # said once, not every pass
        h.runtime.die("db")  # ...and while it was away, db exited

        h.runtime.come_back()
        await h.tick()
        await h.settle()
        assert h.rec.runtime_error is None
        assert h.runtime.running("web").id == ids["web"]
        assert h.runtime.running("db").id == ids["db"]  # restarted, not re-created
        assert h.status("web").phase == "Running" and h.status("db").phase == "Running"
        assert h.kinds("").count("runtime") == 2


async def test_a_create_that_fails_once_is_retried_after_its_backoff() -> None:
    async with harness(crashBackoffInitialSeconds=2) as h:
        h.runtime.fail_create(times=1)
        await h.apply(workload("web"))
        await h.settle()
        status = h.status("web")
        assert status.phase == "Pending"
        assert "OCI runtime error" in status.message
        assert status.retry_at == h.clock.now + 2
        assert h.runtime.of("web") == []
        h.clock.advance(2)
        await h.tick()
        await h.settle()
        assert h.status("web").phase == "Running"
        assert h.runtime.count("create") == 2


async def test_pulls_in_progress_hold_creates_not_the_pass() -> None:
    other = "localhost/other:1"
    async with harness(images=[]) as h:
        h.runtime.registry.update({IMAGE, other})
        h.runtime.hold_pull(IMAGE)
        await h.apply(workload("a"), workload("b"), workload("c", image=other))
        await h.settle()
        # One pull per image; "c" does not wait for "a" and "b"'s image.
        await _until(lambda: h.rec.pending)  # c's pull ended and asked for a pass
        assert h.runtime.count("pull_image") == 2
        await h.settle()
        assert h.status("c").phase == "Running"
        for w in ("a", "b"):
            assert h.status(w).phase == "Pending"
            assert h.status(w).message == f"pulling image {IMAGE}"
        passes_before = h.rec.passes
        await h.tick()  # a pass while the pull runs starts no second pull and writes nothing
        writes = h.state.writes
        await h.tick()
        assert h.runtime.count("pull_image") == 2 and h.state.writes == writes
        assert h.rec.passes == passes_before + 2

        h.runtime.release_pull(IMAGE)
        await _until(lambda: h.rec.pending)
        await h.settle()
        assert h.status("a").phase == "Running" and h.status("b").phase == "Running"


async def test_a_failed_pull_is_reported_and_retried_with_backoff() -> None:
    async with harness(images=[]) as h:
        h.runtime.fail_pull(IMAGE)
        await h.apply(workload("web"))
        await h.settle()
        await _until(lambda: h.rec.pending)
        await h.settle()
        status = h.status("web")
        assert status.phase == "Pending"
        assert "could not be pulled" in status.message and "podman load" in status.message
        assert status.retry_at is not None
        h.runtime.registry.add(IMAGE)
        h.runtime.heal()
        h.clock.advance(status.retry_at - h.clock.now)
        await h.settle() if h.rec.pending else await h.tick()
        await _until(lambda: IMAGE in h.runtime.images)  # the retried pull is done
        await h.settle()
        assert h.status("web").phase == "Running"
        assert h.runtime.count("pull_image") == 2


async def test_events_wake_the_loop_and_lost_events_are_caught_by_the_timer() -> None:
    async with harness(loop=True, reconcileIntervalSeconds=0.05) as h:
        await h.apply(workload("web", policy="always"))
        await _until(lambda: _phase(h, "web") == "Running")
        await _until(lambda: h.rec.triggers["podman-event"] == 1)  # the start's event came
        h.runtime.lose_events()
        events = h.rec.triggers["podman-event"]
        h.runtime.die("web")
        await _until(lambda: _restarts(h) == 1)
        assert h.rec.triggers["podman-event"] == events  # no event arrived: the timer did it


async def _until(cond: Any, timeout_s: float = 5.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not cond():  # noqa: ASYNC110 - a condition of plain state, no event to wait on
            await asyncio.sleep(0.005)


def _phase(h: Harness, name: str) -> str | None:
    st = h.state.snapshot().node.status.get(name)
    return st.phase if st else None


def _restarts(h: Harness) -> int:
    st = h.state.snapshot().node.status.get("web")
    return st.restarts if st else 0


# --- less work per pass --------------------------------------------------------------------------


async def test_an_idle_pass_validates_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = desired_module.workload_from_dict

    def counting(data: Any) -> Any:
        calls.append(str(data.get("metadata", {}).get("name")))
        return real(data)

    monkeypatch.setattr(desired_module, "workload_from_dict", counting)
    async with harness() as h:
        await h.apply(*(workload(f"w{i}") for i in range(5)))
        await h.settle()
        assert sorted(calls) == [f"w{i}" for i in range(5)]
        calls.clear()
        for _ in range(10):
            await h.tick()
        h.runtime.die("w1")  # a status write moves the store's generation: still nothing
        await h.tick()
        await h.settle()
        assert h.state.generation > 0 and calls == []
        await h.override("w3", "env.MODE", "x")
        await h.settle()
        assert calls == ["w3", "w3"]  # w3 alone: its spec, then with the override applied


@pytest.mark.parametrize("sqlite", [False, True], ids=["memory", "sqlite"])
async def test_own_status_write_does_not_ask_for_another_pass(sqlite: bool, tmp_path: Path) -> None:
    # SQLite commits on its own task, so listeners hear of a write from a callback, not from
    # the writer's task; memory commits at once. Both must be recognised as our own write.
    store = SQLiteStore(tmp_path / "state.db") if sqlite else MemoryStore()
    async with harness(store=store) as h:
        await h.apply(workload("job", policy="never"))
        await h.settle()
        writes = h.state.writes
        h.runtime.die("job", exit_code=1)
        h.rec.trigger("podman-event")
        assert await h.settle() == 1  # the pass that recorded "Failed" was the only one
        assert h.state.writes == writes + 1
        assert h.status("job").phase == "Failed"
        assert h.rec.triggers["state"] == 1  # the apply, not any of our status writes
        await h.apply(workload("other"))
        assert h.rec.pending  # other writers still wake it


async def test_what_runs_is_kept_when_its_record_turns_unreadable_or_invalid() -> None:
    # Not knowing what is wanted is no reason to destroy: a stored spec that fails validation
    # here (a newer writer, stricter bounds) or a record set aside as unreadable keeps its
    # container; every other workload goes on.
    from pycrdt import Map

    async with harness() as h:
        await h.apply(workload("web"), workload("db"), workload("api"))
        await h.settle()
        ids = {w: h.runtime.running(w).id for w in ("web", "db", "api")}

        def poison(doc: Any) -> None:
            # Over web's own version (this node wrote it): unreadable.
            versions: Map[Any] = doc.get(records.versions_map(schema.WORKLOADS), type=Map)
            versions[f"web{records.SLOT_SEP}{doc.client_id}"] = "[" * 3000
            bad = dict(workload("db"))
            bad["spec"] = {**bad["spec"], "resources": {"cpus": 1.0e308}}
            schema.put_workload(doc, "db", bad)

        await h.state.write(h.state.fleet_doc, poison)
        await h.delete("api")
        for _ in range(3):
            h.clock.advance(VANISH_GRACE_S)
            await h.tick()
            await h.settle()
        assert h.runtime.running("web").id == ids["web"]
        assert h.runtime.running("db").id == ids["db"]
        assert h.runtime.of("api") == []  # really deleted: removed after the grace
        assert [q.key for q in h.state.snapshot().quarantined] == ["web"]


class FakeHold:
    """A store guard: holds while ``reason`` is set; ``lift_at_check`` lifts it mid-pass."""

    def __init__(self, reason: str | None, lift_at_check: bool = False) -> None:
        self.reason = reason
        self.lift_at_check = lift_at_check
        self.seen: list[int] = []

    @property
    def holding(self) -> str | None:
        return self.reason

    async def check(self, containers: int) -> str | None:
        self.seen.append(containers)
        if self.lift_at_check:
            self.reason = None
        return self.reason


async def test_a_held_node_removes_nothing_its_store_forgot_until_the_hold_lifts() -> None:
    clock = ManualClock(START)
    runtime = FakeRuntime(clock=clock, images=[IMAGE])
    async with harness(runtime=runtime, clock=clock) as h:
        await h.apply(workload("web"))
        await h.settle()
        cid = h.runtime.running("web").id
    hold = FakeHold("state.db is missing")
    # A new, empty store: nothing is desired, and the container must stay.
    async with harness(runtime=runtime, clock=clock, hold=hold) as h:
        await h.settle()
        clock.advance(VANISH_GRACE_S + 60)
        await h.tick()
        await h.settle()
        assert h.runtime.running("web").id == cid
        assert hold.seen and hold.seen[-1] == 1
        assert h.rec.hold == "state.db is missing"
        assert h.rec.last_plan is not None and h.rec.last_plan.held == ("web",)
        assert "store-hold" in h.kinds("")
        hold.reason = None  # reset --i-mean-it
        await h.tick()
        clock.advance(VANISH_GRACE_S)
        await h.tick()
        await h.settle()
        assert h.runtime.of("web") == []
        assert h.kinds("").count("store-hold") == 2  # held, then lifted


async def test_a_hold_lifted_after_a_pass_read_the_store_holds_that_pass() -> None:
    clock = ManualClock(START)
    runtime = FakeRuntime(clock=clock, images=[IMAGE])
    async with harness(runtime=runtime, clock=clock) as h:
        await h.apply(workload("web"))
        await h.settle()
    hold = FakeHold("store lost")
    async with harness(runtime=runtime, clock=clock, hold=hold) as h:
        await h.tick()
        clock.advance(VANISH_GRACE_S + 60)
        hold.lift_at_check = True
        await h.tick()  # the resync landed after this pass took its snapshot
        assert h.runtime.of("web") != [] and h.rec.last_plan is not None
        assert h.rec.last_plan.held == ("web",)
        await h.tick()  # the next pass reads the store as it is now
        assert h.runtime.of("web") == []


async def test_a_new_node_without_containers_says_nothing_of_a_hold() -> None:
    hold = FakeHold("empty store, no mark", lift_at_check=True)
    async with harness(hold=hold) as h:
        await h.apply(workload("web"))
        await h.settle()
        assert h.runtime.running("web") is not None
        assert hold.seen[0] == 0 and "store-hold" not in h.kinds("")


async def test_views_read_desired_state_from_the_store_not_the_last_pass() -> None:
    # Issue 9 §5: after a burst of changes views showed an older value for seconds.
    async with harness() as h:
        await h.apply(workload("web", image=IMAGE))
        await h.settle()
        await h.apply(workload("web", image="localhost/other:2"), workload("db"))
        # No pass has run since: the view still reports what the documents hold.
        desired = h.rec.desired
        assert desired is not None
        assert desired.workloads["web"].workload.spec.image == "localhost/other:2"
        assert "db" in desired.workloads
