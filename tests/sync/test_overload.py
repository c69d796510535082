"""Bursts larger than a node can take in at once: every message lost on the way is counted.

The attack trial sent 200 x 1 MiB messages; the local nats-server dropped the node's own
connection as a slow consumer (it buffers 64 MiB for a client) while ``overload`` and
``inbound_dropped`` stayed 0, so nothing told an operator that messages were lost.
"""

from __future__ import annotations

import logging
import os

import nats

from noderuntime.sync.nats_channel import NatsChannel
from noderuntime.sync.protocol import PROTOCOL_VERSION, Kind
from tests.sync.conftest import FLEET, Cluster, until


async def publish_burst(url: str, subject: str, count: int, size: int) -> None:
    nc = await nats.connect(url)
    try:
        payload = bytes((PROTOCOL_VERSION, Kind.UPDATES.value)) + os.urandom(size - 2)
        for _ in range(count):
            await nc.publish(subject, payload)
        await nc.flush()
    finally:
        await nc.close()


async def test_a_slow_consumer_drop_by_the_server_is_counted_as_overload(
    cluster: Cluster,
) -> None:
    srv = cluster.server("n1")
    n1 = await cluster.node("n1", "s1", srv.url)
    await publish_burst(srv.url, f"nr.{FLEET}.u.fleet", 200, 1_000_000)
    await until(
        lambda: n1.engine.counters.slow_consumer_drops >= 1 and n1.engine.connected,
        within_s=30,
        what="the drop counted and the engine reconnected",
    )
    assert n1.engine.rejections.counts.get("overload", 0) >= 1
    assert "internal" not in n1.engine.rejections.counts


class Recorder:
    """A channel listener that keeps count."""

    def __init__(self) -> None:
        self.received = 0
        self.dropped = 0

    async def on_connected(self, *, again: bool) -> None:
        return None

    async def on_disconnected(self) -> None:
        return None

    async def on_message(self, subject: str, data: bytes) -> None:
        self.received += 1

    async def on_dropped(self, subject: str) -> None:
        self.dropped += 1


async def test_messages_past_the_subscription_pending_limit_are_reported(
    cluster: Cluster,
) -> None:
    srv = cluster.server("n1")
    channel = NatsChannel(
        srv.url, name="t", log=logging.getLogger("t"), pending_msgs=5, pending_bytes=2_000
    )
    listener = Recorder()
    await channel.open([f"nr.{FLEET}.u.fleet"], listener)
    try:
        await publish_burst(srv.url, f"nr.{FLEET}.u.fleet", 200, 900)
        await until(
            lambda: listener.received + listener.dropped == 200,
            what="every message delivered or reported dropped",
        )
        assert listener.dropped > 0
    finally:
        await channel.close()
