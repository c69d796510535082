"""Fixtures for sync tests: nodes (StateStore + SyncEngine) over real nats-servers."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from noderuntime.crdt import schema
from noderuntime.crdt.envelope import signing_input
from noderuntime.crdt.state import IngestResult, Origin, StateStore
from noderuntime.crdt.store import NewUpdate, SQLiteStore
from noderuntime.identity.keys import Identity
from noderuntime.sync.engine import SyncEngine, SyncSettings
from tests.sync.natsfixtures import FakeTrust, NatsServer

FLEET = "f1"


@dataclass
class SyncNode:
    node_id: str
    site: str
    role: str
    identity: Identity
    state: StateStore
    engine: SyncEngine
    stack: contextlib.AsyncExitStack

    async def stop(self) -> None:
        await self.stack.aclose()

    def workloads(self) -> dict[str, Any]:
        return {k: dict(v) for k, v in self.state.snapshot().fleet.workloads.items()}


async def until(cond: Callable[[], bool], within_s: float = 15.0, what: str = "") -> None:
    deadline = time.monotonic() + within_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or cond}")
        await asyncio.sleep(0.02)


def put(name: str, image: str = "img") -> Callable[[Any], None]:
    return lambda doc: schema.put_workload(doc, name, {"metadata": {"name": name}, "image": image})


async def submit_as(state: StateStore, op: Identity, doc: str, mutate: Any) -> IngestResult:
    """What `noderuntime apply --as FLEETDIR` does: prepare at the node, sign, submit."""
    data = state.prepare(doc, mutate)
    assert data is not None
    meta = '{"summary":"operator change"}'
    sig = op.sign(signing_input(doc, data, meta))
    (result,) = await state.ingest(
        [NewUpdate(doc, data, op.name, sig, time.time(), meta)], origin=Origin.SUBMITTED
    )
    return result


class Cluster:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.trust = FakeTrust()
        self.operator = self.trust.enroll("operator:ann", "operator", None)
        self.servers: list[NatsServer] = []
        self.nodes: dict[str, SyncNode] = {}

    def server(self, name: str, **kw: Any) -> NatsServer:
        srv = NatsServer(name, **kw).start()
        self.servers.append(srv)
        return srv

    async def node(
        self,
        node_id: str,
        site: str,
        url: str,
        *,
        role: str = "node",
        sovereign: bool = False,
        watch_links: bool = True,
        **settings: Any,
    ) -> SyncNode:
        """A node syncing through the server at ``url``; like the daemon, its engine watches
        that server's leaf links (``/leafz``) unless ``watch_links`` is False (as with an
        external NATS: heartbeats only)."""
        principal = f"node:{node_id}"
        ident = self.trust.identities.get(principal) or self.trust.enroll(principal, role, site)
        stack = contextlib.AsyncExitStack()
        state = await stack.enter_async_context(
            StateStore(SQLiteStore(self.tmp / f"{node_id}.db"), ident, node_id=node_id, site=site)
        )
        params = {"heartbeat_interval_s": 0.3, "anti_entropy_interval_s": 2.0} | settings
        engine = await stack.enter_async_context(
            SyncEngine(
                state,
                self.trust,
                ident,
                SyncSettings(
                    fleet=FLEET,
                    node_id=node_id,
                    site=site,
                    role=role,
                    sovereign=sovereign,
                    **params,
                ),
                nats_url=url,
                monitor_port=next(
                    (s.monitor_port for s in self.servers if s.url == url and watch_links), None
                ),
            )
        )
        await engine.wait_connected()
        n = SyncNode(node_id, site, role, ident, state, engine, stack)
        self.nodes[node_id] = n
        return n

    async def close(self) -> None:
        for n in list(self.nodes.values()):
            with contextlib.suppress(Exception):
                await n.stop()
        for s in self.servers:
            s.stop()


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        await c.close()
