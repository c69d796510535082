"""Issue 11, a 3 + 2 split of a 5-node site with real daemons in network namespaces: the two
(with the holder) run no singleton, the three take over, never both. The lab has one bridge,
so the two are each cut off rather than still linked to each other: two of five is no quorum
either way."""

from __future__ import annotations

import time

import pytest

from tests.integration.node_harness import wait_for
from tests.quorum.site_lab import SiteLab, netns_unavailable, singleton_yaml

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(netns_unavailable() is not None, reason=str(netns_unavailable())),
]


def test_the_minority_of_a_five_node_site_runs_no_singleton() -> None:
    with SiteLab(5) as site:
        site.apply(singleton_yaml("ctl"))
        with site.monitor("ctl") as monitor:
            (holder_id,) = wait_for(
                lambda: monitor.last() if len(monitor.last()) == 1 else None,
                timeout=120,
                what="exactly one instance",
            )
            holder = next(n for n in site.nodes if n.node_id == holder_id)
            other = next(n for n in site.nodes if n is not holder)
            minority = {holder.node_id, other.node_id}
            cut_at = time.monotonic()
            for node in (holder, other):  # both cut off from the three (and each other)
                site.cut(node)
            wait_for(
                lambda: monitor.first_after(cut_at, lambda s: len(s) == 1 and not (s & minority)),
                timeout=120,
                what="the majority of three running the instance",
            )
            wait_for(
                lambda: monitor.samples[-1][0] > cut_at + 25, timeout=60, what="25 s of samples"
            )
            late = [s for t, s in monitor.samples if t > cut_at + 15]
            assert all(not (s & minority) for s in late)
            assert monitor.overlaps == []
