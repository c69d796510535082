"""Issue 11 §4: a placement-scoped workload runs only where this node holds a slot.

The reconciler over FakeRuntime with a stand-in ``PlacementSource`` (what ``site/manager.py``
is to a real node): the test decides which slots are held and checks what the node does.
"""

from __future__ import annotations

from collections.abc import Mapping

from noderuntime.reconcile.placement import PlacementWant, SlotHolder, SlotInfo
from noderuntime.reconcile.plan import PlanContext, StopContainer, plan
from noderuntime.runtime.base import ContainerState
from tests.unit.reconciler_harness import harness, workload
from tests.unit.test_plan import BOOT, NOW, ctr, wl

SINGLETON = {"placement": {"scope": "site", "replicas": 1}}


class Slots:
    def __init__(self) -> None:
        self.held: set[str] = set()
        self.wanted: Mapping[str, PlacementWant] = {}
        self.running: frozenset[str] = frozenset()

    def update(
        self, wanted: Mapping[str, PlacementWant], running: frozenset[str], runtime_ok: bool
    ) -> None:
        self.wanted, self.running = wanted, running

    def held_slots(self) -> Mapping[str, SlotInfo]:
        return {w: SlotInfo(0, 0.0) for w in self.held}

    def slots_of(self, workload: str) -> list[SlotHolder]:
        return [SlotHolder(0, "n1" if workload in self.held else None, None)]


async def test_a_node_without_the_slot_creates_nothing_and_shows_standby() -> None:
    async with harness() as h:
        slots = Slots()
        h.rec.placement = slots
        await h.apply(workload("grid", **SINGLETON), workload("web"))
        await h.settle()
        assert h.runtime.of("grid") == []
        assert h.status("grid").phase == "Standby"
        assert h.runtime.running("web")  # not placement-scoped: runs as before
        assert dict(slots.wanted) == {"grid": PlacementWant(1, {})}


async def test_the_instance_starts_with_the_slot_and_is_fenced_when_it_goes() -> None:
    async with harness() as h:
        slots = Slots()
        h.rec.placement = slots
        slots.held.add("grid")
        await h.apply(workload("grid", stopTimeoutSeconds=30, **SINGLETON))
        await h.settle()
        assert h.runtime.running("grid")
        assert h.status("grid").phase == "Running"
        assert slots.running == frozenset({"grid"})
        slots.held.clear()  # the lease is lost (or its fence passed)
        h.rec.trigger("placement")
        await h.settle()
        (c,) = h.runtime.of("grid")
        assert c.state is not ContainerState.RUNNING
        assert ("stop", c.id) in h.runtime.calls
        assert h.status("grid").phase == "Standby"
        assert slots.running == frozenset()
        slots.held.add("grid")  # taken again: the same container starts again
        h.rec.trigger("placement")
        await h.settle()
        assert h.runtime.running("grid").id == c.id


async def test_without_a_placement_source_every_selected_node_runs_it() -> None:
    async with harness() as h:
        await h.apply(workload("grid", **SINGLETON))
        await h.settle()
        assert h.runtime.running("grid")


def test_fencing_uses_the_short_grace_and_is_never_withheld_by_a_store_hold() -> None:
    w = wl("grid")
    w = type(w)(**{**w.__dict__, "placed": True})
    ctx = PlanContext(now=NOW, boot_time=BOOT, slots=frozenset(), hold="store lost its memory")
    p = plan({"grid": w}, [ctr(workload="grid")], ctx)
    assert p.actions == (StopContainer("grid", "c1", 1),)
    # Held, the same node keeps it running.
    ctx = PlanContext(now=NOW, boot_time=BOOT, slots=frozenset({"grid"}))
    assert plan({"grid": w}, [ctr(workload="grid")], ctx).actions == ()
