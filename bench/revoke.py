"""Time from `revoke` to refusal at every node of a fleet (issue 13 §2).

Run: .venv/bin/python bench/revoke.py [nodes=20] [rounds=5]

A hub nats-server and one nats-server per node (leaf links to the hub, as in
bench/sync_cluster.py), sync engines in-process over the test harness's shared ``FakeTrust``.
Each node's engine sees revocations through its own store, as the daemon's does: a per-node
trust holds what that node's fleet document says (``fleet.revocation.parse_revocations``,
``Revocation.covers``), so a node refuses the revoked key only once the record has reached it.

Each round an operator's signed revocation of one node is submitted at the hub (what
`noderuntime revoke --as` does). Measured from the submit:
- *held*: until every other node (and the hub) holds the record, i.e. refuses anything the key
  signs from then on;
- *refused*: until every one of them has refused a real message of the revoked node (its
  heartbeats, every 0.3 s here: the tests' interval, so the wait for the next one stays small).
The revoked node is stopped after its round. Not measured here: closing its leaf link (the
daemon restarts its nats-server with pinned certificates, ~1 s; tests/sync/test_revocation.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from noderuntime.crdt import schema  # noqa: E402
from noderuntime.crdt.state import StateStore  # noqa: E402
from noderuntime.crdt.store import SQLiteStore  # noqa: E402
from noderuntime.fleet.revocation import Revocation, parse_revocations, revocation_entry  # noqa: E402
from noderuntime.sync.acl import MemberLike  # noqa: E402
from noderuntime.sync.engine import SyncEngine, SyncSettings  # noqa: E402
from tests.sync.conftest import FLEET, Cluster, submit_as, until  # noqa: E402
from tests.sync.natsfixtures import FakeTrust  # noqa: E402


@dataclass
class NodeTrust:
    """One node's view: the shared members, and the revocations its own store holds."""

    shared: FakeTrust
    revocations: dict[str, Revocation] = field(default_factory=dict)
    node: MemberLike | None = None

    def member(self, principal: str) -> MemberLike | None:
        return self.shared.member(principal)

    def members_of(self, principal: str) -> Sequence[MemberLike]:
        return self.shared.members_of(principal)

    def members(self) -> Sequence[MemberLike]:
        return self.shared.members()

    def add(self, blob: bytes) -> MemberLike:
        return self.shared.add(blob)

    def expired(self, member: MemberLike) -> bool:
        return False

    def revoked(self, member: MemberLike) -> bool:
        rev = self.revocations.get(member.principal)
        key_id = self.shared.by_principal[member.principal].key_id
        return rev is not None and rev.covers(member.principal, key_id, 0)


@dataclass
class Node:
    node_id: str
    state: StateStore
    engine: SyncEngine
    trust: NodeTrust
    stack: contextlib.AsyncExitStack
    held_at: dict[str, float] = field(default_factory=dict)


async def start(c: Cluster, node_id: str, site: str, url: str, role: str = "node") -> Node:
    principal = f"node:{node_id}"
    ident = c.trust.enroll(principal, role, site)
    trust = NodeTrust(c.trust)
    stack = contextlib.AsyncExitStack()
    state = await stack.enter_async_context(
        StateStore(SQLiteStore(c.tmp / f"{node_id}.db"), ident, node_id=node_id, site=site)
    )
    settings = SyncSettings(
        fleet=FLEET,
        node_id=node_id,
        site=site,
        role=role,
        heartbeat_interval_s=0.3,
        anti_entropy_interval_s=10.0,
    )
    engine = await stack.enter_async_context(
        SyncEngine(state, trust, ident, settings, nats_url=url)
    )
    node = Node(node_id, state, engine, trust, stack)

    def changed() -> None:  # what node/revocations.py does, at the same moment
        seen = parse_revocations(state.snapshot().fleet.revocations)
        now = time.perf_counter()
        for principal in seen.keys() - trust.revocations.keys():
            node.held_at[principal] = now
        trust.revocations = seen

    stack.callback(state.subscribe(changed))
    await engine.wait_connected()
    return node


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(p * (len(s) - 1)))]


async def one_round(
    c: Cluster, hub: Node, victim: Node, others: list[Node]
) -> tuple[list[float], float]:
    """Revoke ``victim`` at the hub; (seconds until each other member held it, seconds until
    every one of them had refused a message of the victim). The victim is stopped after."""
    principal = f"node:{victim.node_id}"
    before = {n.node_id: n.engine.rejections.counts.get("revoked", 0) for n in others}
    record = revocation_entry(principal, keys=[], by="operator:ann", at=time.time()).to_dict()

    def mutate(doc: Any) -> None:
        schema.put_entry(doc, schema.REVOCATIONS, principal, record)

    t0 = time.perf_counter()
    await submit_as(hub.state, c.operator, "fleet", mutate)
    await until(lambda: all(principal in n.held_at for n in others), within_s=30)

    def all_refused() -> bool:
        counts = {n.node_id: n.engine.rejections.counts.get("revoked", 0) for n in others}
        return all(counts[k] > v for k, v in before.items())

    await until(all_refused, within_s=30)
    refused = time.perf_counter() - t0
    await victim.stack.aclose()
    await asyncio.sleep(0.5)
    return [n.held_at[principal] - t0 for n in others], refused


async def run(c: Cluster, n_nodes: int, rounds: int) -> None:
    h = c.server("hub", accept_leafs=True)
    hub = await start(c, "hub", "hq", h.url, role="hub")
    nodes: list[Node] = []
    for i in range(n_nodes):
        srv = c.server(f"n{i}", remotes=[h.leaf_port or 0])
        nodes.append(await start(c, f"n{i}", f"s{i % 4}", srv.url))
    await until(lambda: hub.engine.status()["peers_up"] == n_nodes, within_s=60)
    await asyncio.sleep(1.0)
    held_all: list[float] = []
    refused_all: list[float] = []
    held_each: list[float] = []
    for r in range(min(rounds, n_nodes - 1)):
        held, refused = await one_round(c, hub, nodes[r], [hub, *nodes[r + 1 :]])
        held_all.append(max(held))
        held_each += held
        refused_all.append(refused)
    ms = 1000.0
    print(
        f"revoke at the hub -> held by every member left (hub + up to {n_nodes - 1} nodes): "
        f"p50 {statistics.median(held_all) * ms:.0f} ms, max {max(held_all) * ms:.0f} ms over "
        f"{len(held_all)} revocations (per member: p50 {statistics.median(held_each) * ms:.0f} "
        f"ms, p99 {pct(held_each, 0.99) * ms:.0f} ms)"
    )
    print(
        f"revoke -> a message of the revoked node refused (cause `revoked`) at every member: "
        f"p50 {statistics.median(refused_all) * ms:.0f} ms, max {max(refused_all) * ms:.0f} ms "
        "(includes waiting for its next heartbeat, every 0.3 s)"
    )
    for n in [hub, *nodes[len(held_all) :]]:
        with contextlib.suppress(Exception):
            await n.stack.aclose()


async def main() -> None:
    n_nodes = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    with tempfile.TemporaryDirectory() as d:
        c = Cluster(Path(d))
        try:
            await run(c, n_nodes, rounds)
        finally:
            with contextlib.suppress(Exception):
                await c.close()


if __name__ == "__main__":
    asyncio.run(main())
