"""Site cluster transport (issue 11): what clustering costs and gives, without root.

Run: .venv/bin/python bench/site_transport.py

- Latency of a message from one node's local server to another's, over a cluster route
  (mutual TLS) against today's leaf link (mutual TLS), loopback, 1 KB payloads (a typical
  signed CRDT update), 500 round trips each: the sync engine's own work is the same on both,
  so this is the part clustering changes.
- nats-server RSS: a clustered member with JetStream (3-node site, lease-sized bucket)
  against a leaf-linked node without JetStream, after the same warm-up.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import nats

from bench._common import rss_kb
from noderuntime.fleet import FleetAuthority
from noderuntime.sync.natsconfig import NatsServerSettings
from noderuntime.sync.natsserver import NatsServer
from tests.quorum.cluster_harness import site_cluster
from tests.sync.test_natsserver import member

ROUNDS = 500
PAYLOAD = b"x" * 1024


async def round_trips(a: NatsServer, b: NatsServer) -> list[float]:
    """Request at ``a``, reply at ``b``: the time there and back, ``ROUNDS`` times."""
    ca = await nats.connect(a.client_url, token=a.client_token)
    cb = await nats.connect(b.client_url, token=b.client_token)
    try:

        async def echo(msg: nats.aio.msg.Msg) -> None:
            await msg.respond(msg.data)

        await cb.subscribe("bench.echo", cb=echo)
        await cb.flush()
        deadline = time.monotonic() + 30
        while True:  # interest must have crossed the link first
            try:
                await ca.request("bench.echo", PAYLOAD, timeout=0.5)
                break
            except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)
        out = []
        for _ in range(ROUNDS):
            t = time.perf_counter()
            await ca.request("bench.echo", PAYLOAD, timeout=5)
            out.append(time.perf_counter() - t)
        return out
    finally:
        await ca.close()
        await cb.close()


def line(what: str, values: list[float]) -> str:
    ordered = sorted(values)
    p99 = ordered[round(0.99 * (len(ordered) - 1))]
    return (
        f"{what}: round trip median {statistics.median(values) * 1e6:.0f} us, "
        f"p99 {p99 * 1e6:.0f} us (n={len(values)})"
    )


async def main() -> None:
    with tempfile.TemporaryDirectory(prefix="nrb-") as d:
        base = Path(d)
        fleet = FleetAuthority.init(base / "fleet", "alice")
        (base / "site").mkdir()
        async with site_cluster(["c1", "c2", "c3"], fleet, base / "site") as servers:
            routed = await round_trips(servers[0], servers[1])
            await asyncio.sleep(2)
            clustered_rss = [rss_kb(s.pid) for s in servers if s.pid is not None]
        (base / "leaf").mkdir()
        hub_dir, hub_tls = member(fleet, "l1", base / "leaf")
        n_dir, n_tls = member(fleet, "l2", base / "leaf")
        hub_s = NatsServerSettings(
            "l1", client_port=0, leaf_port=0, leaf_host="127.0.0.1", tls=hub_tls
        )
        async with NatsServer(hub_s, hub_dir / "nats") as hub:
            url = f"nats-leaf://127.0.0.1:{hub.leaf_port}"
            node_s = NatsServerSettings("l2", client_port=0, remotes=(url,), tls=n_tls)
            async with NatsServer(node_s, n_dir / "nats") as node:
                leafed = await round_trips(node, hub)
                await asyncio.sleep(2)
                leaf_rss = [rss_kb(s.pid) for s in (hub, node) if s.pid is not None]
    print(line("cluster route (TLS)", routed))
    print(line("leaf link (TLS)", leafed))
    print(
        "nats-server RSS: clustered with JetStream "
        + ", ".join(f"{v / 1024:.1f}" for v in clustered_rss)
        + " MiB; leaf-linked without JetStream "
        + ", ".join(f"{v / 1024:.1f}" for v in leaf_rss)
        + " MiB"
    )


if __name__ == "__main__":
    asyncio.run(main())
