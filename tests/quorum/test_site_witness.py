"""Issue 11: a site of two nodes cannot form a majority alone; with a witness (a third cluster
member that votes and runs nothing) it survives losing either node like a 3-node site. Real
daemons in network namespaces, the instance sampled from outside every 100 ms."""

from __future__ import annotations

import time

import pytest

from tests.integration.node_harness import wait_for
from tests.quorum.site_lab import SiteLab, netns_unavailable, singleton_yaml

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(netns_unavailable() is not None, reason=str(netns_unavailable())),
]


def test_two_nodes_and_a_witness_fail_over_and_the_witness_never_runs_it() -> None:
    with SiteLab(3, witnesses=1) as site:
        witness = site.nodes[2]
        site.apply(singleton_yaml("ctl"))
        with site.monitor("ctl") as monitor:
            (holder_id,) = wait_for(
                lambda: monitor.last() if len(monitor.last()) == 1 else None,
                timeout=120,
                what="exactly one instance",
            )
            (other,) = (n for n in site.nodes[:2] if n.node_id != holder_id)
            holder = next(n for n in site.nodes if n.node_id == holder_id)
            lost_at = time.monotonic()
            site.power_off(holder)  # daemon, nats-server and container at once
            wait_for(
                lambda: monitor.first_after(lost_at, lambda s: s == {other.node_id}),
                timeout=120,
                what="the other node running the instance",
            )
            assert all(witness.node_id not in s for _, s in monitor.samples)
            assert monitor.overlaps == []
