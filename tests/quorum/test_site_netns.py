"""Issue 11 with real daemons: a 3-node site, each node in its own network namespace, their
nats-servers clustered over veths (routes, mutual TLS, JetStream R3). One lab is shared by
the tests of this module (starting a site costs ~15 s)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.node_harness import wait_for
from tests.quorum.site_lab import (
    FAKETIME_LIB,
    InstanceMonitor,
    SiteLab,
    SiteNode,
    netns_unavailable,
    singleton_yaml,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(netns_unavailable() is not None, reason=str(netns_unavailable())),
]


@pytest.fixture(scope="module")
def site() -> Iterator[SiteLab]:
    with SiteLab(3, clocks=True) as lab:
        yield lab


def test_the_site_forms_one_cluster_over_its_links_with_a_jetstream_meta_leader(
    site: SiteLab,
) -> None:
    def routed() -> bool:
        for node in site.nodes:
            routez = node.nats_monitor("/routez") or {}
            names = {str(r.get("remote_name")) for r in routez.get("routes", [])}  # type: ignore[union-attr]
            if names != {n.node_id for n in site.nodes if n is not node}:
                return False
        return True

    wait_for(routed, timeout=60, what="every node routed to both others")

    def meta_leader() -> str | None:
        jsz = site.nodes[0].nats_monitor("/jsz") or {}
        meta = jsz.get("meta_cluster") or {}
        leader = meta.get("leader") if isinstance(meta, dict) else None
        return str(leader) if leader else None

    leader = wait_for(meta_leader, timeout=60, what="a JetStream meta leader")
    assert leader in {n.node_id for n in site.nodes}


SINGLETON = "ctl"


def holder_of(site: SiteLab, monitor: InstanceMonitor) -> SiteNode:
    """The one node running the singleton, once exactly one does."""
    found = wait_for(
        lambda: monitor.last() if len(monitor.last()) == 1 else None,
        timeout=90,
        what="exactly one instance",
    )
    (node_id,) = found
    return next(n for n in site.nodes if n.node_id == node_id)


@pytest.fixture(scope="module")
def singleton(site: SiteLab) -> Iterator[InstanceMonitor]:
    site.apply(singleton_yaml(SINGLETON))
    with site.monitor(SINGLETON) as monitor:
        yield monitor


STEADY_S = 10.0


def settle(site: SiteLab, monitor: InstanceMonitor) -> SiteNode:
    """Every node up and linked again, and one instance held by the same node for STEADY_S.

    Right after a heal the lease can still move once: a member that was cut off comes back with
    a higher Raft term and forces an election of the bucket's leader, and a renewal outage
    longer than ``ttl - margin`` fences the holder (safe: one restart). A test starts after it.
    """
    for node in site.nodes:
        site.heal(node)
        if node.proc is None or node.proc.poll() is not None:
            site.power_on(node)
    for node in site.nodes:
        node.wait_ready(timeout=90)

    def steady() -> SiteNode | None:
        holder = holder_of(site, monitor)
        since = time.monotonic() - STEADY_S
        recent = [s for t, s in monitor.samples if t >= since]
        steady_for = monitor.samples and monitor.samples[0][0] < since
        if steady_for and recent and all(s == {holder.node_id} for s in recent):
            return holder
        return None

    return wait_for(steady, timeout=120, interval=1.0, what=f"one holder for {STEADY_S} s")


def test_a_singleton_runs_on_exactly_one_node_and_the_others_stand_by(
    site: SiteLab, singleton: InstanceMonitor
) -> None:
    holder = holder_of(site, singleton)
    for node in site.nodes:
        node.wait_phase(SINGLETON, "Running" if node is holder else "Standby", timeout=30)
    assert singleton.overlaps == []


def test_power_loss_of_the_holder_moves_the_instance(
    site: SiteLab, singleton: InstanceMonitor
) -> None:
    holder = settle(site, singleton)
    lost_at = time.monotonic()
    site.power_off(holder)
    wait_for(
        lambda: singleton.first_after(lost_at, lambda s: len(s) == 1 and holder.node_id not in s),
        timeout=120,
        what="the instance running on another node",
    )
    assert singleton.overlaps == []


def test_a_partitioned_holder_stops_its_instance_and_the_majority_starts_one_never_both(
    site: SiteLab, singleton: InstanceMonitor
) -> None:
    holder = settle(site, singleton)
    cut_at = time.monotonic()
    site.cut(holder)  # the minority: one node of three
    wait_for(
        lambda: singleton.first_after(cut_at, lambda s: len(s) == 1 and holder.node_id not in s),
        timeout=120,
        what="the majority running the instance",
    )
    # The cut node keeps running without its links and never starts it again.
    healed_at = time.monotonic()
    site.heal(holder)
    holder.wait_ready(timeout=90)
    wait_for(
        lambda: len(singleton.samples) > 0 and singleton.samples[-1][0] > healed_at + 5,
        timeout=30,
        what="samples after the heal",
    )
    assert all(holder.node_id not in s for t, s in singleton.samples if t > cut_at + 20)
    assert singleton.overlaps == []


def test_a_cut_standby_node_changes_nothing_and_runs_no_instance(
    site: SiteLab, singleton: InstanceMonitor
) -> None:
    holder = settle(site, singleton)
    # The holder hands the lease stream's leadership to a standby (docs/architecture.md, "Site
    # quorum"). Cutting that standby costs an election (4-9 s): past `ttl - margin` (5.5 s) the
    # holder fences itself needlessly (safe, one restart). This test is the other standby.
    leader = wait_for(
        lambda: (lead := site.kv_leader()) != holder.node_id and lead,
        timeout=60,
        what="the lease stream's leadership off the holder",
    )
    standby = next(n for n in site.nodes if n is not holder and n.node_id != leader)
    cut_at = time.monotonic()
    site.cut(standby)  # 2 + 1: the holder is on the majority side
    wait_for(lambda: singleton.samples[-1][0] > cut_at + 20, timeout=60, what="20 s of samples")
    site.heal(standby)
    assert {s for t, s in singleton.samples if t > cut_at} == {frozenset({holder.node_id})}
    assert singleton.overlaps == []


def test_the_meta_leader_lost_changes_nothing_but_an_election(
    site: SiteLab, singleton: InstanceMonitor
) -> None:
    settle(site, singleton)
    leader = wait_for(lambda: site.meta_leader(), timeout=60, what="a JetStream meta leader")
    node = next(n for n in site.nodes if n.node_id == leader)
    lost_at = time.monotonic()
    site.kill_nats_server(node)  # its daemon restarts it; the others elect a new leader
    wait_for(lambda: singleton.samples[-1][0] > lost_at + 15, timeout=60, what="15 s of samples")
    holder_of(site, singleton)
    assert singleton.overlaps == []


@pytest.mark.skipif(not FAKETIME_LIB.exists(), reason="libfaketime not installed")
def test_a_clock_step_on_the_holder_and_a_standby_moves_nothing(
    site: SiteLab, singleton: InstanceMonitor
) -> None:
    # Leases fence on the monotonic clock; wall time is only for people (site/lease.py). So
    # +30 s on the holder and -30 s on a standby, then both back, change nothing at all.
    holder = settle(site, singleton)
    standby = next(n for n in site.nodes if n is not holder)
    for node in (holder, standby):  # the daemon itself reads the stepped clock
        pid = node.status()["node"]["pid"]
        assert "libfaketime" in Path(f"/proc/{pid}/maps").read_text()
    before = holder.workloads()[SINGLETON]
    stepped_at = time.monotonic()
    site.step_clock(holder, +30)
    site.step_clock(standby, -30)
    wait_for(lambda: singleton.samples[-1][0] > stepped_at + 15, timeout=60, what="15 s of samples")
    site.step_clock(holder, 0)
    site.step_clock(standby, 0)
    wait_for(lambda: singleton.samples[-1][0] > stepped_at + 25, timeout=60, what="10 s more")
    assert {s for t, s in singleton.samples if t > stepped_at} == {frozenset({holder.node_id})}
    after = holder.workloads()[SINGLETON]
    assert (after["container_id"], after["restarts"]) == (
        before["container_id"],
        before["restarts"],
    )
    for node in site.nodes:
        assert node.proc is not None and node.proc.poll() is None
    assert singleton.overlaps == []


def test_a_flapping_holder_link_never_gives_two_instances(
    site: SiteLab, singleton: InstanceMonitor
) -> None:
    holder = settle(site, singleton)
    for _ in range(8):  # cut / heal every 2 s
        site.cut(holder)
        time.sleep(2)
        site.heal(holder)
        time.sleep(2)
    holder_of(site, singleton)
    assert singleton.overlaps == []


def test_the_whole_site_restarting_together_brings_the_singleton_back_once(
    site: SiteLab, singleton: InstanceMonitor
) -> None:
    settle(site, singleton)
    for node in site.nodes:  # a power cut: every node at once, no hub anywhere
        site.power_off(node)
    for node in site.nodes:
        site.power_on(node)
    holder_of(site, singleton)
    assert singleton.overlaps == []


def test_drain_moves_the_instance_off_the_node_and_uncordon_lets_it_hold_again(
    site: SiteLab, singleton: InstanceMonitor
) -> None:
    holder = settle(site, singleton)
    drained_at = time.monotonic()
    holder.call("site.drain", {"node": holder.node_id})
    try:
        wait_for(
            lambda: singleton.first_after(
                drained_at, lambda s: len(s) == 1 and holder.node_id not in s
            ),
            timeout=90,
            what="the instance moved off the drained node",
        )
        holder.wait_phase(SINGLETON, "Standby", timeout=30)
    finally:
        holder.call("site.uncordon", {"node": holder.node_id})
    assert singleton.overlaps == []
