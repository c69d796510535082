"""Secret delivery to N nodes: seal at the operator, sync through a hub, open at every node.

Run: .venv/bin/python bench/secret_delivery.py [nodes=20] [rounds=20]

Real nats-servers (leaf links to a hub's), sync engines and SQLite stores in-process, as in
bench/sync_cluster.py. Each node publishes its sealing key in its node document as the daemon
does; the hub sees them all. Each round is one rotation: the operator's CLI code seals a new
value for every node (`cli.secret.build_record`), the hub prepares the fleet change and the
operator signs it (`submit_as`, as `--as`), and the round ends when every node holds the new
version and has opened its own box with its own key (what the executor does before a create).
Container replacement is Podman's time, not delivery, and is left out.

Prints: sealing time for N boxes, the record's size, and set -> opened at all N nodes
(p50/p99/max over the rounds).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey  # noqa: E402

from noderuntime.cli.secret import build_record  # noqa: E402
from noderuntime.crdt import schema  # noqa: E402
from noderuntime.identity.sealing import (  # noqa: E402
    Sealed,
    open_sealed,
    public_key_text,
    public_raw,
)
from noderuntime.reconcile.secrets import match_targets, sealed_for  # noqa: E402
from noderuntime.sync.settings import HEARTBEAT_INTERVAL_S  # noqa: E402
from tests.sync.conftest import Cluster, SyncNode, submit_as, until  # noqa: E402

NAME = "db-password"
# 21 engines share one process: heartbeats as the daemon sends them, not the tests' 0.3 s.
QUIET: dict[str, Any] = {"heartbeat_interval_s": HEARTBEAT_INTERVAL_S}


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(p * (len(s) - 1)))]


def opened(node: SyncNode, key: X25519PrivateKey, version: int, value: bytes) -> bool:
    record = node.state.snapshot().fleet.secrets.get(NAME)
    if record is None or record.get("version") != version:
        return False
    box = sealed_for(record, node.node_id)
    assert box is not None, f"no box for {node.node_id}"
    got = open_sealed(
        Sealed.from_wire(dict(box)), key, name=NAME, node_id=node.node_id, version=version
    )
    assert got == value
    return True


def held_infos(hub: SyncNode) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for doc in hub.state.doc_names:
        if doc.startswith("node/"):
            view = hub.state.read(doc, schema.read_node)
            if isinstance(view, schema.NodeView) and view.info:
                out.append((doc.partition("/")[2], dict(view.info)))
    return out


async def run(n_nodes: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        c = Cluster(Path(tmp))
        try:
            h = c.server("hub", accept_leafs=True)
            hub = await c.node("hub", "hq", h.url, role="hub", anti_entropy_interval_s=30, **QUIET)
            nodes: list[tuple[SyncNode, X25519PrivateKey]] = []
            for i in range(n_nodes):
                srv = c.server(f"n{i}", remotes=[h.leaf_port or 0])
                node = await c.node(
                    f"n{i}", f"s{i % 4}", srv.url, anti_entropy_interval_s=30, **QUIET
                )
                key = X25519PrivateKey.generate()
                info = {"nodeId": node.node_id, "site": node.site, "labels": {}}
                info["sealKey"] = public_key_text(public_raw(key))
                await node.state.write(node.state.node_doc, lambda d, i=info: schema.put_info(d, i))
                nodes.append((node, key))
            await until(lambda: len(held_infos(hub)) == n_nodes, within_s=60, what="node keys")
            seal_ms: list[float] = []
            lat: list[float] = []
            size = 0
            for r in range(1, rounds + 1):
                value = f"value-{r}-{'x' * 32}".encode()
                t0 = time.perf_counter()
                infos = held_infos(hub)
                found = match_targets(infos, sites=["s0", "s1", "s2", "s3"])
                reply = {
                    "version": r,
                    "targets": [{"node": t.node_id, "sealKey": t.seal_key} for t in found],
                }
                t1 = time.perf_counter()
                record = build_record(
                    NAME, value, reply, by="operator:ann", selector={}, now=time.time()
                )
                seal_ms.append((time.perf_counter() - t1) * 1000)
                size = len(json.dumps(record))
                await submit_as(
                    hub.state,
                    c.operator,
                    "fleet",
                    lambda d, rec=record: schema.put_entry(d, schema.SECRETS, NAME, rec),
                )
                waiting = list(nodes)

                def all_opened(
                    r: int = r,
                    v: bytes = value,
                    waiting: list[tuple[SyncNode, X25519PrivateKey]] = waiting,
                ) -> bool:
                    # Each node opens its box once, when its version arrives (polling all 20
                    # every 50 ms would starve the engines sharing this event loop).
                    waiting[:] = [(n, k) for n, k in waiting if not opened(n, k, r, v)]
                    return not waiting

                await until(all_opened, within_s=120, what=f"round {r} opened everywhere")
                lat.append(time.perf_counter() - t0)
            print(
                f"seal {n_nodes} boxes: median {statistics.median(seal_ms):.2f} ms; "
                f"record {size} bytes ({size / n_nodes:.0f} per node, 40-byte value)"
            )
            print(
                f"secret set -> opened at all {n_nodes} nodes: p50 "
                f"{statistics.median(lat) * 1000:.0f} ms, p99 {pct(lat, 0.99) * 1000:.0f} ms, "
                f"max {max(lat) * 1000:.0f} ms over {rounds} rotations"
            )
        finally:
            await c.close()


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    asyncio.run(run(n, rounds))
