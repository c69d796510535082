"""Issue 11 with real daemons: a 3-node site, each node in its own network namespace, their
nats-servers clustered over veths (routes, mutual TLS, JetStream R3). One lab is shared by
the tests of this module (starting a site costs ~15 s)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.node_harness import wait_for
from tests.quorum.site_lab import SiteLab, netns_unavailable

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(netns_unavailable() is not None, reason=str(netns_unavailable())),
]


@pytest.fixture(scope="module")
def site() -> Iterator[SiteLab]:
    with SiteLab(3) as lab:
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
