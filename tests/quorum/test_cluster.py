"""The site cluster's nats-servers: routes with the fleet's mutual TLS, JetStream R3 over them."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import nats
import pytest
from nats.js.errors import KeyWrongLastSequenceError

from noderuntime.fleet import FleetAuthority
from noderuntime.sync.natsconfig import NatsServerSettings, render_config
from tests.quorum.cluster_harness import site_cluster
from tests.sync.test_natsserver import member


@pytest.fixture
def fleet(tmp_path: Path) -> FleetAuthority:
    return FleetAuthority.init(tmp_path / "fleet", "alice")


def test_a_node_alone_in_its_site_runs_no_cluster_and_no_jetstream(
    fleet: FleetAuthority, tmp_path: Path
) -> None:
    _, tls = member(fleet, "n1", tmp_path)
    text = render_config(
        NatsServerSettings("n1", tls=tls), token="t", client_port=1, monitor_port=2, leaf_port=None
    )
    assert "cluster {" not in text and "jetstream" not in text


async def test_three_members_route_to_each_other_and_agree_through_a_replicated_kv(
    fleet: FleetAuthority, tmp_path: Path
) -> None:
    async with site_cluster(["n1", "n2", "n3"], fleet, tmp_path) as servers:
        text = servers[0].config_file.read_text()
        assert "sync_interval: always" in text and "verify: true" in text
        clients = [await nats.connect(s.client_url, token=s.client_token) for s in servers]
        try:
            deadline = time.monotonic() + 30
            while True:  # the meta group needs a leader before a stream can be made
                try:
                    kv = (
                        await clients[0]
                        .jetstream()
                        .create_key_value(bucket="t", replicas=3, history=1)
                    )
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.2)
            revision = await kv.create("k", b"n1")
            other = await clients[2].jetstream().key_value("t")
            with pytest.raises(KeyWrongLastSequenceError):
                await other.update("k", b"n3", last=revision - 1 if revision > 1 else 99)
            assert (await other.get("k")).value == b"n1"
            routez = await servers[1].monitor("/routez")
            assert routez["num_routes"] >= 2
        finally:
            for c in clients:
                await c.close()
