"""A silent link cut (a pulled cable: no FIN, no RST) heals in seconds, both ways (issue 9).

A hub and a site node run as real daemons, each in its own network namespace; the node's leaf
link to the hub crosses veths on a bridge. Both sides write changes the whole time. The node's
veth is taken down for 20 s, the field case: TCP connections survive such a cut, and before
the fix the leaf connection did, on a retransmit timer backed off to seconds, so one direction
stayed blocked for 5-18 s after the heal. Now both servers drop the silent link during the cut
(PINGs unanswered) and the node redials it as soon as the cable is back.

The bound on the heal is generous (the target is 2 s; the figure is in bench/README.md, from
bench/link_cut_netns.py); it is there to fail when the dead connection outlives the cut.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.integration.node_harness import wait_for
from tests.sync.netns_harness import (
    Flow,
    NetnsLab,
    NetnsNode,
    hub_and_site,
    netns_unavailable,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(netns_unavailable() is not None, reason=str(netns_unavailable())),
]

CUT_S = 20.0
# Measured ~1 s (bench); a connection that outlived the cut took 5-18 s.
HEAL_FLOW_BOUND_S = 5.0


@pytest.fixture
def linked() -> Iterator[tuple[NetnsLab, NetnsNode, NetnsNode]]:
    with NetnsLab() as lab, hub_and_site(lab) as (hub, node):
        yield lab, hub, node


def leaf_links(node: NetnsNode) -> list[dict[str, object]]:
    return [link for link in node.json_cli("peers")["links"] if "peer" in link]


def test_a_silent_cut_is_noticed_during_the_cut_and_heals_both_ways_at_once(
    linked: tuple[NetnsLab, NetnsNode, NetnsNode],
) -> None:
    lab, hub, node = linked
    flow = Flow(hub, node)
    flow.setup()
    with flow:
        flow.wait_flowing(time.monotonic(), 60)
        assert [link["up"] for link in leaf_links(node)] == [True]
        assert [link["direction"] for link in leaf_links(hub)] == ["inbound"]

        lab.cut("site")
        cut_at = time.time()
        time.sleep(CUT_S)  # nobody asks about the links meanwhile
        # Both ends gave up on the dead connection while the cable was out, and the node
        # recorded when, not when it was asked.
        (link,) = leaf_links(node)
        assert not link["up"], f"the silent link still looked up after {CUT_S:.0f} s"
        assert cut_at < float(str(link["since"])) < cut_at + CUT_S / 2, link
        assert leaf_links(hub) == []

        healed = time.monotonic()
        lab.heal("site")
        took = flow.wait_flowing(healed, 60)
        assert took < HEAL_FLOW_BOUND_S, f"changes flowed both ways only {took:.1f} s after"

    def same_everywhere() -> bool:
        own = f"node/{node.node_id}"
        return hub.export("fleet", own) == node.export("fleet", own)

    wait_for(same_everywhere, timeout=30, what="identical documents after the heal")
    # The transitions were logged, at both ends.
    assert f"leaf link to {node.peers[0].leaf_url} is down" in node.log()
    assert f"peer {hub.node_id} (site hq) is down" in node.log()
    assert f"peer {node.node_id} (site s1) is down" in hub.log()
