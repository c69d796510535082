"""Sync benchmarks over real nats-servers (leaf links to a hub server), engines in-process.

Run: .venv/bin/python bench/sync_cluster.py [nodes=20] [partition_changes=500] [partition_s=10]

Prints: hub change -> visible on all N nodes (p50/p99); partition with changes on both sides ->
time to converge after heal (engines watch their server's /leafz for link changes, as the
daemon's do); bytes on the wire per change vs the pycrdt update; anti-entropy bytes for a
100-change gap in a 10,000-key document vs the missing updates; RSS of one node process
(Python engine + store) and of its nats-server.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from noderuntime.crdt import schema  # noqa: E402
from noderuntime.sync import protocol  # noqa: E402
from noderuntime.sync.engine import SyncEngine, SyncSettings  # noqa: E402
from noderuntime.sync.settings import ANTI_ENTROPY_INTERVAL_S, HEARTBEAT_INTERVAL_S  # noqa: E402
from tests.sync.conftest import FLEET, Cluster, put, submit_as, until  # noqa: E402


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(p * (len(s) - 1)))]


async def fanout(c: Cluster, n_nodes: int, rounds: int = 50) -> None:
    h = c.server("hub", accept_leafs=True)
    hub = await c.node("hub", "hq", h.url, role="hub", anti_entropy_interval_s=30)
    nodes = []
    for i in range(n_nodes):
        srv = c.server(f"n{i}", remotes=[h.leaf_port or 0])
        nodes.append(await c.node(f"n{i}", f"s{i % 4}", srv.url, anti_entropy_interval_s=30))
    await until(lambda: hub.engine.status()["peers_up"] == n_nodes, within_s=30)
    await asyncio.sleep(1.0)
    lat: list[float] = []
    for r in range(rounds):
        t0 = time.perf_counter()
        await submit_as(hub.state, c.operator, "fleet", put(f"f{r}", f"v{r}"))
        await until(lambda r=r: all(f"f{r}" in n.workloads() for n in nodes), within_s=10)  # type: ignore[misc]
        lat.append(time.perf_counter() - t0)
    print(
        f"fanout hub -> {n_nodes} nodes: p50 {statistics.median(lat) * 1000:.1f} ms, "
        f"p99 {pct(lat, 0.99) * 1000:.1f} ms over {rounds} changes"
    )
    # Wire bytes per change: one fleet change, as broadcast.
    (u,) = (await hub.state._store.updates_since("fleet", 0))[-1:]
    wire = protocol.encode_updates(
        "hub", "fleet", [protocol.WireUpdate(u.author, u.signature, u.ts, u.meta, u.data)]
    )
    print(
        f"bytes on the wire per change: {len(wire)} B for a {len(u.data)} B pycrdt update "
        f"(overhead {len(wire) - len(u.data)} B incl. 64 B signature, author, meta {len(u.meta)} B)"
    )


async def partition(c: Cluster, changes: int, partition_s: float) -> None:
    h = c.server("hub", accept_leafs=True)
    s1 = c.server("n1", accept_leafs=True, remotes=[h.leaf_port or 0])
    s2 = c.server("n2", remotes=[s1.leaf_port or 0])
    # The daemon's intervals (heartbeats every 2 s, rounds every 10 s), not the tests' fast
    # ones: a heal must be noticed from the leaf link, not from a quick heartbeat.
    prod = {
        "heartbeat_interval_s": HEARTBEAT_INTERVAL_S,
        "anti_entropy_interval_s": ANTI_ENTROPY_INTERVAL_S,
    }
    hub = await c.node("hub", "hq", h.url, role="hub", **prod)
    n1 = await c.node("n1", "s1", s1.url, **prod)
    n2 = await c.node("n2", "s1", s2.url, **prod)
    nodes = [hub, n1, n2]
    await until(lambda: all(n.engine.status()["peers_up"] == 2 for n in nodes))
    h.stop()
    await until(lambda: not hub.engine.connected)
    t_start = time.monotonic()
    for i in range(changes):
        await submit_as(hub.state, c.operator, "fleet", put(f"h{i}", "x"))
        await submit_as(n1.state, c.operator, "fleet", put(f"s{i}", "y"))
    await asyncio.sleep(max(0.0, partition_s - (time.monotonic() - t_start)))
    t0 = time.perf_counter()
    h.start()
    await until(lambda: all(len(n.workloads()) == 2 * changes for n in nodes), within_s=120)
    print(
        f"partition {partition_s:.0f} s with {changes} changes each side: converged "
        f"{time.perf_counter() - t0:.2f} s after heal (from restarting the hub's server: incl. "
        "its start, the leaf link's reconnect (1 s retry), /leafz link detection (0.5 s poll) "
        "and the repair)"
    )


async def anti_entropy_gap(tmp: Path) -> None:
    c = Cluster(tmp / "ae")
    (tmp / "ae").mkdir()
    try:
        srv = c.server("shared")
        a = await c.node("a", "s1", srv.url, role="hub", anti_entropy_interval_s=3600)
        for chunk in range(10):  # 10 x 1,000 keys (one 10,000-key update exceeds maxUpdateBytes)
            await a.state.write(
                "fleet",
                lambda d, chunk=chunk: (
                    [
                        schema.put_workload(d, f"k{i}", {"v": i})
                        for i in range(chunk * 1000, (chunk + 1) * 1000)
                    ]
                    and None
                ),
            )
        b = await c.node("b", "s1", srv.url, anti_entropy_interval_s=3600)
        await until(lambda: len(b.workloads()) == 10_000, within_s=30)
        await b.engine.__aexit__(None, None, None)
        for i in range(100):
            await a.state.write("fleet", put(f"k{i * 97}", f"changed-{i}"))
        missing = await a.state.missing_for("fleet", b.state.state_vector_map("fleet"))
        raw = sum(len(u.data) for u in missing)
        signed = sum(len(u.data) + 64 + len(u.author) + len(u.meta) for u in missing)
        before_out = a.engine.counters.bytes_out
        peer_before = a.engine.peers["b"].bytes_out if "b" in a.engine.peers else 0
        b2 = SyncEngine(
            b.state,
            c.trust,
            b.identity,
            SyncSettings(fleet=FLEET, node_id="b", site="s1", anti_entropy_interval_s=3600),
            nats_url=srv.url,
        )
        sv_size = len(b.state.state_vector("fleet"))
        async with b2:
            try:
                await until(
                    lambda: b.workloads().get("k9603", {}).get("image") == "changed-99",
                    within_s=10,
                )
            except AssertionError:
                print(b2.status(), a.engine.status(), b.workloads().get("k9603"))
                raise
            sent = a.engine.peers["b"].bytes_out - peer_before
            total = a.engine.counters.bytes_out - before_out
        print(
            f"anti-entropy, 100-change gap in a 10,000-key doc: repair {sent} B + state vector "
            f"{sv_size} B; missing pycrdt updates {raw} B ({len(missing)} updates), signed "
            f"{signed} B; ratio {(sent + sv_size) / raw:.2f}x of raw updates, "
            f"{(sent + sv_size) / signed:.2f}x of signed; all of a's output meanwhile {total} B"
        )
    finally:
        await c.close()


CHILD = r"""
import asyncio, sys
sys.path.insert(0, sys.argv[1])
from tests.sync.natsfixtures import FakeTrust
from noderuntime.crdt.state import StateStore
from noderuntime.crdt.store import SQLiteStore
from noderuntime.sync.engine import SyncEngine, SyncSettings
from pathlib import Path
async def main():
    t = FakeTrust(); ident = t.enroll("node:r", "node", "s1")
    async with StateStore(SQLiteStore(Path(sys.argv[3])), ident, node_id="r", site="s1") as st:
        async with SyncEngine(st, t, ident, SyncSettings(fleet="f1", node_id="r", site="s1"),
                              nats_url=sys.argv[2]) as e:
            await e.wait_connected()
            print("ready", flush=True)
            await asyncio.sleep(3600)
asyncio.run(main())
"""


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


async def node_rss(tmp: Path) -> None:
    from tests.sync.natsfixtures import NatsServer

    srv = NatsServer("rss").start()
    proc = subprocess.Popen(  # noqa: ASYNC220
        [sys.executable, "-c", CHILD, str(ROOT), srv.url, str(tmp / "rss.db")],
        stdout=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        proc.stdout.readline()
        await asyncio.sleep(3)
        py, ns = rss_kib(proc.pid), srv.rss_kib()
        print(
            f"RSS of a node (engine + store process) {py / 1024:.1f} MiB + its nats-server "
            f"{ns / 1024:.1f} MiB = {(py + ns) / 1024:.1f} MiB (idle, sync only; the full "
            "daemon adds the reconciler, API and Podman client)"
        )
    finally:
        proc.kill()
        srv.stop()


async def main() -> None:
    n_nodes = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    changes = int(sys.argv[2]) if len(sys.argv) > 2 else 500
    partition_s = float(sys.argv[3]) if len(sys.argv) > 3 else 10.0
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for name, fn in (
            ("fanout", lambda c: fanout(c, n_nodes)),
            ("partition", lambda c: partition(c, changes, partition_s)),
        ):
            (tmp / name).mkdir()
            c = Cluster(tmp / name)
            try:
                await fn(c)
            finally:
                with contextlib.suppress(Exception):
                    await c.close()
        await anti_entropy_gap(tmp)
        await node_rss(tmp)


if __name__ == "__main__":
    asyncio.run(main())
