"""Field defects of issue 9 in the reconciler, reproduced over FakeRuntime.

§2 an unexpected error in one workload's action; §3 a failed create/start; §10 a status change
too large for one write; §11 status that lies (failed writes, start-up, ``since``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from noderuntime.api.views import NOT_OBSERVED, shown_status, workload_view
from noderuntime.cli.main import render_status
from noderuntime.crdt.envelope import MAX_UPDATE_BYTES
from noderuntime.crdt.store import MemoryStore, NewUpdate
from noderuntime.errors import ImageNotFoundError, StoreError
from noderuntime.reconcile import loop as loop_module
from noderuntime.runtime.base import ContainerState
from noderuntime.runtime.fake import OCI_CREATE_FAILED, FakeRuntime, ManualClock
from tests.unit.reconciler_harness import IMAGE, START, Harness, harness, workload

# --- §2: one workload's bug is that workload's failure -------------------------------------------


async def test_an_unexpected_error_in_one_action_fails_that_workload_not_the_pass() -> None:
    async with harness(crashBackoffInitialSeconds=2) as h:
        # What building Podman's body for `cpus: 1.0e+308` raised, and any other bug.
        overflow = OverflowError("cannot convert float infinity to integer")
        h.runtime.fail_create(overflow, times=None, name="nr-n1-a-bad")
        h.runtime.fail_create(ValueError("bad value"), times=None, name="nr-n1-c-bad")
        await h.apply(*(workload(n) for n in ("a-bad", "b-good", "c-bad", "d-good")))
        await h.settle()
        assert h.status("b-good").phase == "Running"
        assert h.status("d-good").phase == "Running"
        bad = h.status("a-bad")
        assert bad.phase == "Pending"
        assert (
            bad.message == "internal error: OverflowError: cannot convert float infinity to integer"
        )
        assert bad.retry_at == h.clock.now + 2  # retried with back-off, not on every pass
        assert "ValueError: bad value" in h.status("c-bad").message
        creates = h.runtime.count("create")
        await h.tick()
        assert h.runtime.count("create") == creates
        h.clock.advance(2)
        await h.tick()
        assert h.runtime.count("create") == creates + 2


async def test_a_spec_whose_container_cannot_be_built_fails_alone_and_keeps_its_container(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = loop_module.to_container_spec

    def convert(w: Any, **kw: Any) -> Any:
        if w.spec.env.get("BREAK"):
            raise ValueError("conversion bug")
        return real(w, **kw)

    monkeypatch.setattr(loop_module, "to_container_spec", convert)
    async with harness() as h:
        await h.apply(workload("a"), workload("b"))
        await h.settle()
        kept = h.runtime.running("a").id
        await h.apply(workload("a", env={"BREAK": "1"}), workload("c"))
        await h.settle()
        assert h.status("c").phase == "Running" and h.status("b").phase == "Running"
        assert h.status("a").phase == "Failed"
        assert "ValueError: conversion bug" in h.status("a").message
        assert h.runtime.running("a").id == kept  # neither removed nor replaced


# --- §3: a failed create or start says so and is retried ----------------------------------------


async def test_a_start_refused_by_the_oci_runtime_is_failed_with_retry_at_and_retried() -> None:
    async with harness(crashBackoffInitialSeconds=1) as h:
        h.runtime.fail_start(times=None)  # "runc create failed: no cgroup mount found"
        await h.apply(workload("web"))
        await h.settle()
        (c,) = h.runtime.of("web")
        assert c.state is ContainerState.CREATED  # what Podman leaves behind
        status = h.status("web")
        assert status.phase == "Failed"  # not "Starting", for as long as the cause lasts
        assert status.message == f"could not start the container: {OCI_CREATE_FAILED}"
        assert status.retry_at == h.clock.now + 1
        retries = []
        for _ in range(6):
            retry_at = h.status("web").retry_at
            assert retry_at is not None
            retries.append(retry_at - h.clock.now)
            h.clock.advance(retries[-1])
            await h.tick()
            assert h.status("web").phase == "Failed"
        assert retries == [1, 2, 4, 8, 16, 30]  # the usual back-off, capped as a create's
        assert h.runtime.count("start") == 7
        h.runtime.heal()
        h.clock.advance(30)
        await h.tick()
        assert h.status("web").phase == "Running"
        assert h.runtime.running("web").id == c.id


async def test_a_refused_create_is_pending_with_the_reason_and_retry_at() -> None:
    async with harness(crashBackoffInitialSeconds=1) as h:
        h.runtime.fail_create(times=2)
        await h.apply(workload("web"))
        await h.settle()
        status = h.status("web")
        assert status.phase == "Pending" and OCI_CREATE_FAILED in status.message
        assert status.retry_at == h.clock.now + 1
        h.clock.advance(1)
        await h.tick()
        assert h.status("web").retry_at == h.clock.now + 2
        h.clock.advance(2)
        await h.tick()
        assert h.status("web").phase == "Running"


# --- §10: no fleet size makes a pass fail --------------------------------------------------------


class SizeCheckingStore(MemoryStore):
    """Records the size of every update appended."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[int] = []

    def _append_now(self, updates: Sequence[NewUpdate]) -> list[int]:
        self.sizes += [len(u.data) for u in updates]
        return super()._append_now(updates)


async def test_a_status_change_of_600_workloads_is_split_to_fit_the_update_bound() -> None:
    store = SizeCheckingStore()
    async with harness(store=store, images=[]) as h:
        # A registry's answer is long; every workload's record carries it.
        reason = "initializing source docker://registry.example/busybox:1: " + "x" * 300
        h.runtime.fail_pull(IMAGE, ImageNotFoundError(reason))
        names = [f"w{i:03d}" for i in range(600)]

        def put(doc: Any) -> None:
            from noderuntime.crdt import schema

            for n in names:
                schema.put_workload(doc, n, workload(n))

        await h.state.write(h.state.fleet_doc, put)
        await h.settle()
        await _pull_ends(h)
        writes = h.state.writes
        await h.settle()
        statuses = h.state.snapshot().node.status
        assert all(reason in statuses[n].message for n in names)
        assert h.rec.status_write_error is None
        assert h.state.writes - writes > 1  # split, not refused
        assert max(store.sizes) <= MAX_UPDATE_BYTES
        assert sum(store.sizes[-(h.state.writes - writes) :]) > MAX_UPDATE_BYTES  # needed it


async def _pull_ends(h: Harness) -> None:
    import asyncio

    async with asyncio.timeout(5):
        while not h.rec.pending:  # noqa: ASYNC110 - the pull task ends on its own
            await asyncio.sleep(0.001)


# --- §11: status that tells the truth ------------------------------------------------------------


class DiskFull(MemoryStore):
    """A store whose commits fail while ``full`` (as SQLite's do with ENOSPC)."""

    def __init__(self) -> None:
        super().__init__()
        self.full = False

    def _append_now(self, updates: Sequence[NewUpdate]) -> list[int]:
        if self.full:
            self.last_error = "commit failed: database or disk is full"
            raise StoreError("cannot write to state database: database or disk is full")
        self.last_error = None
        return super()._append_now(updates)


async def test_a_failed_status_write_is_retried_and_views_show_the_observed_phase() -> None:
    store = DiskFull()
    async with harness(store=store) as h:
        await h.apply(workload("web"))
        await h.settle()
        await h.override("web", "enabled", False)  # `stop`, acknowledged: it is durable
        store.full = True
        await h.settle()
        assert h.runtime.of("web")[0].state is ContainerState.EXITED  # it did stop
        assert h.status("web").phase == "Running"  # ...but the store could not say so
        assert h.rec.status_write_error is not None and "disk is full" in h.rec.status_write_error
        assert not h.rec.converged
        shown, problem = _shown(h, "web")
        view = workload_view("web", None, shown, store_problem=problem)
        assert view["phase"] == "Stopped" and view["message"] == "disabled by override"
        assert problem is not None and "disk is full" in problem
        assert h.state.last_write_error is not None
        wait = await h.tick()  # retried soon, with back-off, not at the 15 s timer
        assert wait == 2.0 and h.rec.status_write_error is not None  # 0.5, 1, 2 s: 3rd failure
        assert [e.message for e in h.rec.events if e.kind == "store"] == [
            "status could not be stored (will retry): "
            "cannot write to state database: database or disk is full"
        ]

        store.full = False
        await h.tick()
        assert h.status("web").phase == "Stopped"
        assert h.rec.status_write_error is None and h.rec.converged
        assert _shown(h, "web") == (h.status("web"), None)


def _shown(h: Harness, name: str) -> Any:
    return shown_status(
        h.state.snapshot().node.status.get(name),
        h.rec.live_status.get(name),
        observed=h.rec.observed_once,
        write_error=h.rec.status_write_error,
    )


async def rebooted() -> tuple[ManualClock, FakeRuntime, MemoryStore]:
    """A node that ran ``web``, then a host reboot: the store says Running, nothing runs."""
    clock = ManualClock(START)
    runtime = FakeRuntime(clock=clock, images=[IMAGE])
    store = MemoryStore()
    async with harness(runtime=runtime, store=store, clock=clock) as h:
        await h.apply(workload("web"))
        await h.settle()
        assert h.status("web").phase == "Running"
    for c in runtime.containers.values():
        c.state = ContainerState.EXITED
    return clock, runtime, store


async def test_until_the_first_pass_has_observed_the_runtime_the_phase_is_unknown() -> None:
    clock, runtime, store = await rebooted()
    async with harness(runtime=runtime, store=store, clock=clock) as h:
        shown, _ = _shown(h, "web")
        assert h.status("web").phase == "Running"  # stored, from before
        assert shown.phase == "Unknown"
        assert shown.message == f"{NOT_OBSERVED} (last recorded: Running)"
        await h.tick()
        assert _shown(h, "web")[0].phase != "Unknown"


async def test_while_the_first_pass_runs_views_still_say_unknown_not_the_old_record() -> None:
    # The pass has listed the containers but not yet recorded what it found: the record from
    # before the restart ("Running", though nothing runs after the reboot) must not show.
    clock, runtime, store = await rebooted()
    async with harness(runtime=runtime, store=store, clock=clock) as h:
        entered, release = asyncio.Event(), asyncio.Event()
        real_start = runtime.start

        async def held_start(container_id: str) -> None:
            entered.set()
            await release.wait()
            await real_start(container_id)

        runtime.start = held_start  # type: ignore[method-assign]
        first = asyncio.create_task(h.tick())
        await entered.wait()
        assert _shown(h, "web")[0].phase == "Unknown"
        release.set()
        await first
        assert _shown(h, "web")[0].phase != "Unknown"


async def test_since_is_reset_when_the_container_is_re_created() -> None:
    async with harness() as h:
        await h.apply(workload("web", env={"V": "1"}))
        await h.settle()
        first = h.status("web").since
        h.clock.advance(100)
        await h.apply(workload("web", env={"V": "2"}))
        await h.settle()
        status = h.status("web")
        assert status.phase == "Running"
        assert status.since == first + 100  # a new container, running since now
        h.clock.advance(50)
        await h.tick()
        assert h.status("web").since == first + 100


def test_plain_status_shows_store_health_and_the_last_write_error() -> None:
    status: dict[str, Any] = {
        "node": {
            "id": "n1",
            "site": "s1",
            "role": "node",
            "version": "0",
            "started_at": START,
            "pid": 1,
            "data_dir": "/d",
        },
        "store": {
            "path": "/d/state.db",
            "updates": 3,
            "snapshots": 0,
            "size_bytes": 4096,
            "healthy": False,
            "error": "commit failed: database or disk is full",
            "last_write_error": {"at": START, "message": "write to node/n1 not stored: full"},
        },
        "podman": {"connected": True, "error": None, "socket": "/p", "supervised": False},
        "reconciler": {"passes": 3, "last_pass_at": START, "converged": False},
        "workloads": {"desired": 1, "phases": {"Running": 1}},
    }
    text = render_status(status)
    assert "UNHEALTHY" in text and "disk is full" in text
    assert "Last write error:" in text and "write to node/n1 not stored: full" in text
    status["store"] |= {"healthy": True, "error": None, "last_write_error": None}
    text = render_status(status)
    assert "healthy" in text.splitlines()[3] and "Last write error" not in text
