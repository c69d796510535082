"""Replication between in-process engines over real nats-servers linked as leaf nodes.

Topology (unless a test says otherwise): hub server H; site s1's gateway node n1's server leafs
to H; n2 and n3 leaf to n1. A hub engine on H, one engine per node server.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import nats
import pytest

from noderuntime.crdt import schema
from noderuntime.crdt.envelope import signing_input
from noderuntime.crdt.state import StateStore
from noderuntime.crdt.store import SQLiteStore
from noderuntime.errors import UpdateRejectedError
from noderuntime.identity import keys as identity
from noderuntime.sync import protocol
from noderuntime.sync.engine import SyncEngine, SyncSettings
from noderuntime.sync.protocol import WireUpdate
from tests.sync.conftest import FLEET, Cluster, SyncNode, put, submit_as, until
from tests.sync.natsfixtures import FakeTrust


async def site_topology(
    c: Cluster, **settings: Any
) -> tuple[SyncNode, SyncNode, SyncNode, SyncNode]:
    h = c.server("hub", accept_leafs=True)
    assert h.leaf_port
    s1 = c.server("n1", accept_leafs=True, remotes=[h.leaf_port])
    assert s1.leaf_port
    s2 = c.server("n2", remotes=[s1.leaf_port])
    s3 = c.server("n3", remotes=[s1.leaf_port])
    hub = await c.node("hub", "hq", h.url, role="hub", **settings)
    n1 = await c.node("n1", "s1", s1.url, **settings)
    n2 = await c.node("n2", "s1", s2.url, **settings)
    n3 = await c.node("n3", "s1", s3.url, **settings)
    everyone = [hub, n1, n2, n3]
    await until(
        lambda: all(e.engine.status()["peers_up"] == 3 for e in everyone), what="all peers up"
    )
    return hub, n1, n2, n3


def same_everywhere(nodes: list[SyncNode], doc: str) -> bool:
    def content(n: SyncNode) -> object:
        if doc == "fleet":
            return n.workloads()
        # A hub creates a site document only once a member of that site sends it a change.
        return n.state.read(doc, schema.read_site) if n.state.holds(doc) else None

    first = content(nodes[0])
    return all(content(n) == first for n in nodes[1:])


async def test_change_at_hub_reaches_every_node(cluster: Cluster) -> None:
    hub, n1, n2, n3 = await site_topology(cluster)
    await submit_as(hub.state, cluster.operator, "fleet", put("web", "v1"))
    await until(lambda: all("web" in n.workloads() for n in (n1, n2, n3)), what="fleet change")
    # A site change made at n2 reaches its site and the hub.
    await n2.state.write(n2.state.site_doc, lambda d: schema.set_override(d, "web", "image", "x"))
    await until(
        lambda: all(
            n.state.holds("site/s1")
            and n.state.read("site/s1", schema.read_site) == {"web": {"image": "x"}}
            for n in (hub, n1, n3)
        ),
        what="site change",
    )
    # Node docs go to the hub only.
    rec = schema.StatusRecord("Running")
    await n3.state.write("node/n3", lambda d: schema.put_status(d, "web", rec))
    await until(lambda: hub.state.holds("node/n3"), what="hub holds node/n3")
    assert not n1.state.holds("node/n3")


async def test_a_hubs_own_key_writing_a_fleet_workload_is_refused_everywhere(
    cluster: Cluster,
) -> None:
    # Issue 13 §6: a stolen hub must not reach every host. Its key relays what operators
    # signed; a workload of its own (here one mounting the host's /) runs nowhere.
    hub, n1, n2, n3 = await site_topology(cluster)
    rogue = {"name": "rogue", "image": "x", "volumes": [{"hostPath": "/", "path": "/host"}]}
    await hub.state.write("fleet", lambda d: schema.put_workload(d, "rogue", rogue))
    await submit_as(hub.state, cluster.operator, "fleet", put("after", "ok"))
    nodes = (n1, n2, n3)
    await until(lambda: all("after" in n.workloads() for n in nodes), what="operator change")
    await until(
        lambda: all(n.engine.rejections.counts.get("unauthorised", 0) >= 1 for n in nodes),
        what="every node counted the hub's write as unauthorised",
    )
    assert not any("rogue" in n.workloads() for n in nodes)


async def test_partition_with_concurrent_conflicting_edits_converges(cluster: Cluster) -> None:
    hub, n1, n2, n3 = await site_topology(cluster)
    await submit_as(hub.state, cluster.operator, "fleet", put("web", "v0"))
    await until(lambda: all(n.workloads().get("web") for n in (n1, n2, n3)))
    hub_server = cluster.servers[0]
    hub_server.stop()  # kill the hub's server: the site is cut off
    await until(lambda: not hub.engine.connected, what="hub disconnected")
    op = cluster.operator
    # Conflicting edits on both sides of the partition.
    assert (await submit_as(hub.state, op, "fleet", put("web", "v-hub"))).value == "applied"
    await submit_as(hub.state, cluster.operator, "fleet", put("hub-only", "h"))
    assert (await submit_as(n2.state, op, "fleet", put("web", "v-site"))).value == "applied"
    assert (await submit_as(n1.state, op, "fleet", put("site-only", "s"))).value == "applied"
    await n3.state.write("site/s1", lambda d: schema.set_override(d, "web", "image", "n3"))
    await n2.state.write("site/s1", lambda d: schema.set_override(d, "web", "image", "n2"))
    await until(lambda: "site-only" in n3.workloads(), what="site side converges")
    assert "site-only" not in hub.workloads() and "hub-only" not in n1.workloads()
    hub_server.start()  # heal
    nodes = [hub, n1, n2, n3]
    await until(
        lambda: (
            same_everywhere(nodes, "fleet")
            and {"web", "hub-only", "site-only"} <= set(hub.workloads())
            and same_everywhere(nodes, "site/s1")
        ),
        within_s=20,
        what="convergence after heal",
    )
    # One of the conflicting values won, the same one everywhere.
    assert hub.workloads()["web"]["image"] in ("v-hub", "v-site")
    for n in nodes:
        assert n.engine.rejections.total == 0, n.engine.rejections.counts


async def test_offline_node_catches_up_on_1000_changes(cluster: Cluster) -> None:
    hub, _n1, n2, n3 = await site_topology(cluster)
    s3 = cluster.servers[3]
    s3.stop()
    await until(lambda: not n3.engine.connected, what="n3 offline")
    for i in range(1000):
        await submit_as(hub.state, cluster.operator, "fleet", put(f"w{i}", f"img{i}"))
    await until(lambda: len(n2.workloads()) == 1000, what="n2 has 1000")
    s3.start()
    t0 = time.monotonic()
    await until(lambda: len(n3.workloads()) == 1000, within_s=20, what="n3 catches up")
    assert n3.workloads()["w999"]["image"] == "img999"
    assert time.monotonic() - t0 < 20


async def test_late_joiner_catches_up(cluster: Cluster) -> None:
    hub, n1, _n2, _n3 = await site_topology(cluster)
    for i in range(50):
        await submit_as(hub.state, cluster.operator, "fleet", put(f"w{i}"))
    await n1.state.write("site/s1", lambda d: schema.set_override(d, "w1", "image", "s"))
    s4 = cluster.server("n4", remotes=[cluster.servers[1].leaf_port or 0])
    n4 = await cluster.node("n4", "s1", s4.url)
    await until(
        lambda: (
            len(n4.workloads()) == 50
            and n4.state.read("site/s1", schema.read_site) == {"w1": {"image": "s"}}
        ),
        what="late joiner catches up",
    )


async def test_forged_tampered_replayed_unknown_unauthorised_oversized(cluster: Cluster) -> None:
    hub, n1, n2, n3 = await site_topology(cluster, max_message_bytes=64 * 1024)
    nodes = [hub, n1, n2, n3]
    await submit_as(hub.state, cluster.operator, "fleet", put("web", "v1"))
    await until(lambda: all("web" in n.workloads() for n in nodes))
    (genuine,) = await hub.state._store.updates_since("fleet", 0)
    stranger = __import__("noderuntime.identity.keys", fromlist=["generate"]).generate(
        "operator:eve"
    )

    # Build updates on a scratch copy of the fleet doc so they would apply cleanly.
    def signed(doc: str, author: str, key: object, image: str) -> WireUpdate:
        data = n1.state.prepare(doc, put("web", image))
        assert data is not None
        sig = key.sign(signing_input(doc, data, "{}"))  # type: ignore[attr-defined]
        return WireUpdate(author, sig, time.time(), "{}", data)

    op = cluster.operator
    forged = signed("fleet", "operator:ann", stranger, "forged")  # ann's name, eve's key
    unknown = signed("fleet", "operator:eve", stranger, "unknown")
    unauthorised = signed("fleet", "node:n1", n1.identity, "unauthorised")  # nodes can't
    good = signed("fleet", "operator:ann", op, "good")
    tampered = WireUpdate(good.author, good.signature, good.ts, good.meta, good.data[:-1] + b"x")
    replay = WireUpdate(genuine.author, genuine.signature, genuine.ts, genuine.meta, genuine.data)
    subject = protocol.update_subject(FLEET, "fleet")
    nc = await nats.connect(cluster.servers[2].url)  # inject at n2's server
    try:
        for u in (forged, unknown, unauthorised, tampered, replay):
            await nc.publish(subject, protocol.encode_updates("x", "fleet", [u]))
        await nc.publish(subject, b"\x01\x01" + b"\x00" * (64 * 1024 + 1))
        # Site s2's node may not write site/s1.
        intruder = cluster.trust.enroll("node:m1", "node", "s2")
        bad_site = signed("site/s1", "node:m1", intruder, "x")
        await nc.publish(
            protocol.update_subject(FLEET, "site.s1"),
            protocol.encode_updates("m1", "site/s1", [bad_site]),
        )
        await nc.flush()
    finally:
        await nc.close()
    expected = {"bad_signature": 2, "unknown_author": 1, "unauthorised": 1}

    def counted(n: SyncNode) -> bool:
        c = n.engine.rejections.counts
        return all(c.get(k, 0) >= v for k, v in expected.items()) and c.get("oversized", 0) >= 1

    await until(lambda: all(counted(n) for n in nodes), what="rejections at every node")
    await until(lambda: all(n.engine.counters.duplicates >= 1 for n in nodes), what="replays")
    # Site s1's members refused the intruder's site change too.
    await until(lambda: all(n.engine.rejections.counts.get("unauthorised", 0) >= 2 for n in nodes))
    for n in nodes:
        assert n.workloads()["web"]["image"] == "v1"
    # And everyone is still healthy: a genuine change still replicates.
    await submit_as(hub.state, cluster.operator, "fleet", put("after", "ok"))
    await until(lambda: all("after" in n.workloads() for n in nodes))


async def test_sovereign_site_keeps_its_docs(cluster: Cluster) -> None:
    h = cluster.server("hub", accept_leafs=True)
    s1 = cluster.server("n1", remotes=[h.leaf_port or 0])
    hub = await cluster.node("hub", "hq", h.url, role="hub")
    n1 = await cluster.node("n1", "s9", s1.url, sovereign=True)
    await until(lambda: hub.engine.status()["peers_up"] == 1)
    await until(lambda: "s9" in hub.engine.scopes.sovereign_sites)
    await n1.state.write("site/s9", lambda d: schema.set_override(d, "web", "image", "secret"))
    await submit_as(hub.state, cluster.operator, "fleet", put("web"))
    await until(lambda: "web" in n1.workloads(), what="fleet doc still reaches the site")
    await n1.state.write(
        "node/n1", lambda d: schema.put_status(d, "web", schema.StatusRecord("Running"))
    )
    await hub.engine.anti_entropy()
    await until(lambda: hub.engine.rejections.counts.get("sovereign", 0) >= 2, what="refused")
    for doc in ("site/s9", "node/n1"):
        assert not hub.state.holds(doc) or not hub.state.state_vector_map(doc)


async def test_a_write_too_large_to_replicate_is_refused_and_changes_nothing(
    cluster: Cluster,
) -> None:
    hub, n1, n2, _n3 = await site_topology(cluster)
    await n1.state.write("site/s1", lambda d: schema.set_override(d, "w", "image", "small"))
    huge = "x" * (protocol.DEFAULT_MAX_UPDATE_BYTES + 1)
    with pytest.raises(UpdateRejectedError, match="at most 262144 bytes"):
        await n1.state.write("site/s1", lambda d: schema.set_override(d, "w", "env.BIG", huge))
    with pytest.raises(UpdateRejectedError, match="262144"):
        n1.state.prepare("site/s1", lambda d: schema.set_override(d, "w", "env.BIG", huge))
    assert n1.state.read("site/s1", schema.read_site) == {"w": {"image": "small"}}
    # A change just under the limit goes (alone) and reaches everyone holding the doc.
    near = "y" * (protocol.DEFAULT_MAX_UPDATE_BYTES - 1000)
    await n1.state.write("site/s1", lambda d: schema.set_override(d, "w", "env.NEAR", near))
    await until(
        lambda: (
            n2.state.read("site/s1", schema.read_site)
            == {"w": {"image": "small", "env.NEAR": near}}
        ),
        what="near-limit change replicates",
    )
    assert n1.engine.counters.updates_undeliverable == 0
    assert "oversized" not in hub.engine.rejections.counts


async def test_inbound_queue_is_bounded_by_bytes(tmp_path: Path) -> None:
    ident = identity.generate("node:n1")
    async with StateStore(SQLiteStore(tmp_path / "n1.db"), ident, node_id="n1", site="s1") as st:
        settings = SyncSettings(fleet=FLEET, node_id="n1", site="s1", max_inbox_bytes=3000)
        engine = SyncEngine(st, FakeTrust(), ident, settings, nats_url="nats://127.0.0.1:1")
        for _ in range(5):  # the worker is not running: everything waits in the queue
            await engine.on_message("x", bytes(1000))
        c = engine.status()["counters"]
        assert (c["inbound_dropped"], c["inbound_dropped_bytes"]) == (2, 2000)
        assert engine.status()["rejections"] == {"overload": 2}
        async with engine:  # the worker drains it, and the bytes are free again
            await until(lambda: engine.inbox.bytes == 0, what="queue drained")
            await engine.on_message("x", bytes(1000))
            await until(lambda: engine.counters.messages_in == 4, what="accepted again")
        assert engine.counters.inbound_dropped == 2


async def test_heartbeats_after_a_clock_step_back_are_not_replays(tmp_path: Path) -> None:
    trust = FakeTrust()
    ident = trust.enroll("node:n1", "node", "s1")
    peer = trust.enroll("node:n2", "node", "s1")
    async with StateStore(SQLiteStore(tmp_path / "n1.db"), ident, node_id="n1", site="s1") as st:
        settings = SyncSettings(fleet=FLEET, node_id="n1", site="s1")
        engine = SyncEngine(st, trust, ident, settings, nats_url="nats://127.0.0.1:1")

        def heartbeat(ts: float, n: int | None, boot: str = "b1") -> bytes:
            body: dict[str, Any] = {"node": "n2"} | ({"boot": boot, "n": n} if n else {})
            part = protocol.heartbeat_signed_part("node:n2", ts, json.dumps(body).encode())
            return part + peer.sign(protocol.signing_bytes(part))

        now = time.time()
        first = heartbeat(now, 1)
        await engine.handle(first)
        await engine.handle(heartbeat(now - 1e9, 2))  # its clock stepped back a lot
        await engine.handle(heartbeat(now - 1e9 + 2, 3))
        assert engine.counters.heartbeats_received == 3
        await engine.handle(first)  # a replay is still one
        await engine.handle(heartbeat(now - 1e9 + 4, 1, boot="b2"))  # restarted, clock behind
        assert engine.rejections.counts == {"replayed": 1, "stale": 1}  # (issue 10: see docs)
        await engine.handle(heartbeat(now + 6, 1, boot="b3"))  # restarted, clock set right
        assert engine.counters.heartbeats_received == 4
        await engine.handle(heartbeat(now + 5, None))  # no counter: judged by time, as before
        assert engine.rejections.counts == {"replayed": 2, "stale": 1}
