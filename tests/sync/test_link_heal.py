"""A healed leaf link is repaired at once: the engine learns of it from its own server's /leafz.

Real nats-servers; the hub's leaf link runs through an asyncio TCP proxy, so cutting it leaves
both engines connected to their own servers (no reconnect round) and only the link drops.
"""

from __future__ import annotations

import asyncio
import contextlib

from noderuntime.sync.natsserver import http_get_json
from tests.ports import free_port
from tests.sync.conftest import Cluster, put, submit_as, until

DEADLINE_S = 30.0
# Longer than every poll deadline below: no heartbeat tick and no periodic anti-entropy round
# can happen during the test, and peers never time out (so the "peer up" path stays idle too).
NEVER_S = 10 * DEADLINE_S


class LinkProxy:
    """Forwards 127.0.0.1:port to ``target``; ``cut`` drops every connection and the listener."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def heal(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for w in list(self._writers):
            w.close()
        self._writers.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_w}

        async def pump(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, ConnectionError):
                while data := await r.read(65536):
                    w.write(data)
                    await w.drain()
            w.close()

        await asyncio.gather(pump(reader, up_w), pump(up_r, writer))


async def leafs(port: int) -> int:
    return len((await http_get_json(port, "/leafz")).get("leafs") or [])


async def until_leafs(port: int, n: int) -> None:
    deadline = asyncio.get_running_loop().time() + DEADLINE_S
    while await leafs(port) != n:
        assert asyncio.get_running_loop().time() < deadline, f"/leafz never showed {n} link(s)"
        await asyncio.sleep(0.05)


async def cut_change_heal(
    cluster: Cluster, *, peers_time_out: bool = False, **settings: float | bool
) -> None:
    """Link hub <- n1 through a proxy, change both sides while it is cut, heal, converge."""
    h = cluster.server("hub", accept_leafs=True)
    proxy = LinkProxy(h.leaf_port or 0)
    await proxy.heal()
    s1 = cluster.server("n1", remotes=[proxy.port])
    hub = await cluster.node("hub", "hq", h.url, role="hub", **settings)  # type: ignore[arg-type]
    n1 = await cluster.node("n1", "s1", s1.url, **settings)  # type: ignore[arg-type]
    await submit_as(hub.state, cluster.operator, "fleet", put("before"))
    await until(lambda: "before" in n1.workloads(), DEADLINE_S, "first change to reach n1")

    await proxy.cut()
    await until_leafs(h.monitor_port, 0)
    await until_leafs(s1.monitor_port, 0)
    await submit_as(hub.state, cluster.operator, "fleet", put("at-hub"))
    await submit_as(n1.state, cluster.operator, "fleet", put("at-n1"))
    assert "at-n1" not in hub.workloads() and "at-hub" not in n1.workloads()
    if peers_time_out:
        await until(
            lambda: all(n.engine.status()["peers_up"] == 0 for n in (hub, n1)),
            DEADLINE_S,
            "peers to time out",
        )

    await proxy.heal()
    want = {"before", "at-hub", "at-n1"}
    await until(
        lambda: all(set(n.workloads()) == want for n in (hub, n1)),
        DEADLINE_S,
        "both sides to converge after the heal",
    )
    await proxy.cut()
    assert hub.engine.rejections.total == 0 and n1.engine.rejections.total == 0


async def test_healed_link_triggers_anti_entropy_without_a_heartbeat_tick(
    cluster: Cluster,
) -> None:
    await cut_change_heal(cluster, heartbeat_interval_s=NEVER_S, anti_entropy_interval_s=NEVER_S)
    for node in cluster.nodes.values():
        # Both engines saw the link come up twice (first link, then the healed one).
        assert node.engine.counters.link_ups >= 2
        # Peers never timed out, so the repair came from the link event, not a "peer up".
        assert node.engine.status()["peers_up"] == 1


async def test_without_a_monitoring_port_heartbeats_still_heal(cluster: Cluster) -> None:
    # An external NATS: no /leafz to watch, so a heal shows only through heartbeats.
    await cut_change_heal(
        cluster, peers_time_out=True, watch_links=False, anti_entropy_interval_s=NEVER_S
    )
    for node in cluster.nodes.values():
        assert node.engine.counters.link_ups == 0
