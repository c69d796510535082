"""A sovereign site's leaf links to hubs (``peers``) do not carry its documents' subjects;
links inside the site (``sitePeers``) carry everything. Real nats-servers, mutual TLS.

    hub (site hq)  <-peer-  n1 (s1, sovereign, leaf listener)  <-sitePeer-  n2 (s1, sovereign)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client

from noderuntime.config.model import NodeConfig
from noderuntime.fleet import FleetAuthority, FleetTrust
from noderuntime.sync import protocol
from noderuntime.sync.natsconfig import NatsServerSettings, render_config, settings_for_node
from noderuntime.sync.natsserver import NatsServer
from tests.sync.test_natsserver import member


@pytest.fixture
def fleet(tmp_path: Path) -> FleetAuthority:
    return FleetAuthority.init(tmp_path / "fleet", "alice")


class Inbox:
    """Every message a client receives on ``subjects``."""

    def __init__(self) -> None:
        self.got: list[str] = []

    async def listen(self, nc: Client, *subjects: str) -> None:
        async def cb(msg: nats.aio.msg.Msg) -> None:
            self.got.append(msg.subject)

        for s in subjects:
            await nc.subscribe(s, cb=cb)
        await nc.flush()


async def until(cond: Callable[[], bool], within_s: float = 15.0, what: str = "") -> None:
    deadline = time.monotonic() + within_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


@pytest.fixture
async def sovereign_tree(
    fleet: FleetAuthority, tmp_path: Path
) -> AsyncIterator[tuple[str, Client, Client, Client]]:
    f = fleet.fleet_id
    deny = tuple(protocol.sovereign_subjects(f, "s1"))
    hub_dir, hub_tls = member(fleet, "hub", tmp_path)
    n1_dir, n1_tls = member(fleet, "n1", tmp_path)
    n2_dir, n2_tls = member(fleet, "n2", tmp_path)
    hub_s = NatsServerSettings(
        "hub", client_port=0, leaf_port=0, leaf_host="127.0.0.1", tls=hub_tls
    )
    async with NatsServer(hub_s, hub_dir / "nats") as hub:
        n1_s = NatsServerSettings(
            "n1",
            client_port=0,
            leaf_port=0,
            leaf_host="127.0.0.1",
            remotes=(f"nats-leaf://127.0.0.1:{hub.leaf_port}",),
            tls=n1_tls,
            deny=deny,
            leaf_reconnect_s=1,
        )
        async with NatsServer(n1_s, n1_dir / "nats") as n1:
            n2_s = NatsServerSettings(
                "n2",
                client_port=0,
                site_remotes=(f"nats-leaf://127.0.0.1:{n1.leaf_port}",),
                tls=n2_tls,
                deny=deny,  # a sovereign node: but site peers are never filtered
                leaf_reconnect_s=1,
            )
            async with NatsServer(n2_s, n2_dir / "nats") as n2:
                for ns in (n1, n2):

                    async def up(ns: NatsServer = ns) -> bool:
                        links = await ns.leaf_links()
                        return all(link.up for link in links if link.direction == "outbound")

                    deadline = time.monotonic() + 15
                    while not await up():
                        assert time.monotonic() < deadline, f"{ns.settings.server_name} link up"
                        await asyncio.sleep(0.05)
                clients = [
                    await nats.connect(ns.client_url, token=ns.client_token) for ns in (hub, n1, n2)
                ]
                try:
                    yield f, clients[0], clients[1], clients[2]
                finally:
                    for c in clients:
                        await c.close()


async def test_sovereign_subjects_do_not_cross_links_to_hubs(
    sovereign_tree: tuple[str, Client, Client, Client],
) -> None:
    f, c_hub, c_n1, c_n2 = sovereign_tree
    site_u = protocol.update_subject(f, "site.s1")
    node_u = protocol.update_subject(f, "node.s1.n2")
    site_sv = protocol.state_subject(f, "site.s1")
    fleet_u = protocol.update_subject(f, "fleet")
    beat = protocol.heartbeat_subject(f, "s1", "n2")
    at_hub, at_n1, at_n2 = Inbox(), Inbox(), Inbox()
    await at_hub.listen(c_hub, f"nr.{f}.u.>", f"nr.{f}.sv.>", f"nr.{f}.hb.>")
    await at_n1.listen(c_n1, site_u, node_u, fleet_u, beat)
    await at_n2.listen(c_n2, site_u, fleet_u)

    # Outward: n2 publishes everything; the site's own subjects reach n1 but stop at the hub.
    async def outward() -> bool:
        for s in (site_u, node_u, site_sv, beat, fleet_u):
            await c_n2.publish(s, b"x")
        await c_n2.flush()
        await asyncio.sleep(0.1)
        return fleet_u in at_hub.got

    await until_async(outward, what="fleet subject at the hub")
    await until(lambda: {site_u, node_u, fleet_u, beat} <= set(at_n1.got), what="all at n1")
    assert beat in at_hub.got  # heartbeats still flow (the engine needs them)
    assert not {site_u, node_u, site_sv} & set(at_hub.got), at_hub.got

    # Inward: a hub publishing on the site's subjects doesn't reach into the site either.
    async def inward() -> bool:
        await c_hub.publish(site_u, b"from-hub")
        await c_hub.publish(fleet_u, b"from-hub")
        await c_hub.flush()
        await asyncio.sleep(0.1)
        return at_n2.got.count(fleet_u) > 0

    n2_site_before = at_n2.got.count(site_u)
    await until_async(inward, what="fleet subject from the hub at n2")
    assert at_n2.got.count(site_u) == n2_site_before


async def until_async(
    probe: Callable[[], Awaitable[bool]], within_s: float = 15.0, what: str = ""
) -> None:
    deadline = time.monotonic() + within_s
    while not await probe():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")


def test_node_config_puts_the_deny_lists_on_peers_only(
    fleet: FleetAuthority, tmp_path: Path
) -> None:
    data_dir, _ = member(fleet, "n1", tmp_path)
    trust = FleetTrust.load(data_dir)
    hub_url, site_url = "nats-leaf://hub.example:7422", "nats-leaf://10.0.0.2:7422"
    config = NodeConfig.model_validate(
        {
            "nodeId": "n1",
            "site": "s1",
            "sovereign": True,
            "peers": [hub_url],
            "sitePeers": [site_url],
        }
    )
    settings = settings_for_node(config, trust)
    assert settings.deny == tuple(protocol.sovereign_subjects(trust.fleet_id, "s1"))
    text = render_config(settings, token="t", client_port=1, monitor_port=2, leaf_port=None)
    hub_block, site_block = text.split(hub_url)[1].split(site_url)
    assert "deny_exports" in hub_block and "deny_imports" in hub_block
    assert "deny_" not in site_block
    # Not sovereign: nothing is filtered.
    plain = settings_for_node(config.model_copy(update={"sovereign": False}), trust)
    assert plain.deny == ()
    assert "deny_" not in render_config(
        plain, token="t", client_port=1, monitor_port=2, leaf_port=None
    )
