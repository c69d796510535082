"""Hostile sync floods against real daemons: messages tried and peak RSS under each (issue 10).

For each flood a fresh hub and node (`noderuntime run`, each with its nats-server and Podman
service, linked), then the flood of ``tests/sync/hostile_floods.py`` with N messages, published
on the hub's own server (the leaf link carries what the node subscribes to); and a burst of
200 x 1 MiB at the node's own server. For each: messages tried, time to publish and drain,
both daemons' RSS before and their peak during the flood (sampled every 20 ms), the RSS after,
and what the hub counted.

    .venv/bin/python bench/hostile_sync.py [N=20000] [FLOOD...]   (default: every flood, burst)
    NR_BENCH_RATE=3000 .venv/bin/python bench/hostile_sync.py 300000 unknown_authors  (paced)

To measure code from before a change, run the daemons from another checkout (this script and
its floods stay the same), from a directory holding no ``noderuntime`` (``python -m`` puts the
working directory first): ``cd /tmp && PYTHONPATH=/path/to/old/checkout
/path/to/.venv/bin/python /path/to/bench/hostile_sync.py N``. The first line says which code
the daemons run.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from _common import ROOT, rss_kb, wait_for

sys.path.insert(0, str(ROOT))
import nats

from noderuntime.identity import keys as identity
from tests.sync.fleet_harness import FleetNode, hub_and_node
from tests.sync.hostile_floods import FLOODS, Message, Target

BURST = 200
# Messages a second (env NR_BENCH_RATE; 0: as fast as the bus takes them). Paced below what a
# node handles, a flood is handled rather than dropped as overload: tables see every message.
RATE = float(os.environ.get("NR_BENCH_RATE", "0"))
QUIET_S = 2.0
AFTER_S = 5.0
BURST_BYTES = 1_000_000


class Peak:
    """The highest RSS of some processes while it runs (sampled in a thread)."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.peak = {name: 0 for name in pids}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for name, pid in self.pids.items():
                with contextlib.suppress(OSError, RuntimeError):
                    self.peak[name] = max(self.peak[name], rss_kb(pid))
            time.sleep(0.02)

    def __enter__(self) -> Peak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


async def publish(at: FleetNode, messages: list[Message], rate: float = 0.0) -> None:
    """Publish ``messages``; at most ``rate`` a second if given (0: as fast as possible)."""
    nc = await nats.connect(
        f"nats://127.0.0.1:{at.nats_port}", token=at.client_token, pending_size=64 * 1024 * 1024
    )
    start = time.monotonic()
    try:
        for i, (subject, data) in enumerate(messages):
            await nc.publish(subject, data)
            if i % 500 == 499:
                await nc.flush(timeout=60)
                if rate > 0:
                    await asyncio.sleep(max(0.0, start + (i + 1) / rate - time.monotonic()))
        await nc.flush(timeout=60)
    finally:
        await nc.close()


def sync(n: FleetNode) -> dict[str, Any]:
    return dict(n.call("node.status")["sync"])


def handled(n: FleetNode) -> int:
    """What only hostile messages move (legitimate traffic is heartbeats and state vectors):
    refusals, applied updates, and documents a hub took on."""
    status = n.call("node.status")
    s, c = status["sync"], status["sync"]["counters"]
    return (
        int(s["rejected_total"])
        + len(status["store"]["documents"])
        + sum(int(c.get(k, 0)) for k in ("updates_applied", "duplicates", "awaiting_credentials"))
    )


def drained(nodes: list[FleetNode], quiet_s: float = QUIET_S, limit_s: float = 600) -> None:
    """Wait until what the floods move stood still for ``quiet_s`` at every node."""
    deadline = time.monotonic() + limit_s
    last: list[int] = []
    still_since = time.monotonic()
    while time.monotonic() < deadline:
        now = [handled(n) for n in nodes]
        if now != last:
            last, still_since = now, time.monotonic()
        elif time.monotonic() - still_since >= quiet_s:
            return
        time.sleep(0.1)


def delta(after: dict[str, Any], before: dict[str, Any], key: str) -> int:
    return int(after.get(key, 0)) - int(before.get(key, 0))


def run_flood(
    name: str, messages: list[Message], at: FleetNode, hub: FleetNode, node: FleetNode
) -> None:
    assert hub.proc is not None and node.proc is not None
    pids = {"hub": hub.proc.pid, "node": node.proc.pid}
    base = {k: rss_kb(p) for k, p in pids.items()}
    before = {k: sync(n) for k, n in (("hub", hub), ("node", node))}
    docs_before = len(hub.call("node.status")["store"]["documents"])
    start = time.monotonic()
    with Peak(pids) as peak:
        asyncio.run(publish(at, messages, RATE))
        drained([hub, node])
    took = time.monotonic() - start - QUIET_S
    after = {k: sync(n) for k, n in (("hub", hub), ("node", node))}
    alive = all(p.poll() is None for p in (hub.proc, node.proc))
    h, hb = after["hub"], before["hub"]
    rejected = {
        c: delta(h["rejections"], hb["rejections"], c)
        for c in set(h["rejections"]) | set(hb["rejections"])
        if delta(h["rejections"], hb["rejections"], c)
    }
    counters = {
        k: delta(h["counters"], hb["counters"], k)
        for k in (
            "repairs_sent",
            "credentials_requested",
            "table_evictions",
            "rate_limited",
            "slow_consumer_drops",
            "inbound_dropped",
        )
        if delta(h["counters"], hb["counters"], k)
    }
    node_counters = {
        k: delta(after["node"]["counters"], before["node"]["counters"], k)
        for k in ("slow_consumer_drops", "inbound_dropped", "disconnects")
        if delta(after["node"]["counters"], before["node"]["counters"], k)
    }
    docs = len(hub.call("node.status")["store"]["documents"]) - docs_before
    time.sleep(AFTER_S)  # some floods move no counter while the last of them is handled
    end = {k: rss_kb(p) / 1024 if alive else 0.0 for k, p in pids.items()}
    print(
        f"{name:<20} tried {len(messages):>7}  {took:6.1f} s  "
        f"hub {base['hub'] / 1024:5.1f} peak {peak.peak['hub'] / 1024:5.1f} after "
        f"{end['hub']:5.1f} MB  node {base['node'] / 1024:5.1f} peak "
        f"{peak.peak['node'] / 1024:5.1f} after {end['node']:5.1f} MB  "
        f"alive={alive}  new docs at hub {docs}"
    )
    print(f"{'':<20} hub rejected {rejected}  hub {counters}  node {node_counters}")
    if not alive:
        raise SystemExit(f"a daemon died under {name}")


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    code = subprocess.run(
        [sys.executable, "-c", "import noderuntime; print(noderuntime.__file__)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    print(f"daemons run {code}; {n} messages per flood")
    only = set(sys.argv[2:])
    floods: dict[str, Callable[[Target], list[Message]]] = {
        name: (lambda t, flood=flood: flood(t, n))
        for name, flood in FLOODS.items()
        if not only or name in only
    }
    if not only or "burst" in only:
        floods["burst"] = lambda t: (
            [(f"nr.{t.fleet}.u.fleet", b"\x01\x01" + os.urandom(BURST_BYTES - 2))] * BURST
        )
    for name, make in floods.items():
        # Fresh daemons for each flood: one flood's backlog must not weigh on the next.
        with hub_and_node("bench") as (hub, node):
            wait_for(lambda: sync(hub)["peers_up"] == 1, timeout=60, what="the node up")
            key = identity.load_key(node.data_dir / "identity.key", f"node:{node.node_id}")
            t = Target(sync(hub)["fleet"], node.node_id, node.site, hub.node_id, hub.site, key)
            # The burst goes to the node's own server, the rest to the hub's.
            run_flood(name, make(t), node if name == "burst" else hub, hub, node)
            for who in (hub, node):
                assert who.cli("status", "-o", "json").returncode == 0


if __name__ == "__main__":
    main()
