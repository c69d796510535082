"""The sync engine without a server: engines exchange messages over the in-memory channel.

The way pycrdt tests its sync over an in-memory channel: the same engine the daemon runs, its
transport swapped for ``MemoryHub`` (NATS subject matching, delivery before ``publish``
returns). What the server adds (leaf links, sovereign subject filters, reconnects of a real
socket) stays with tests/sync.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from noderuntime.crdt import schema
from noderuntime.crdt.envelope import signing_input
from noderuntime.crdt.state import IngestResult, Origin, StateStore
from noderuntime.crdt.store import MemoryStore, NewUpdate
from noderuntime.errors import ChannelError
from noderuntime.fleet.credential import Credential, MemberRole, fleet_id_for, sign_credential
from noderuntime.fleet.trust import FleetTrust
from noderuntime.identity import keys as identity
from noderuntime.identity.keys import Identity
from noderuntime.sync.acl import Trust
from noderuntime.sync.channel import ChannelListener, MemoryChannel, MemoryHub
from noderuntime.sync.engine import SyncEngine, SyncSettings
from noderuntime.sync.resync import ResyncWatch
from tests.sync.natsfixtures import FakeTrust, operator_write

FLEET = "f1"


async def until(cond: Callable[[], bool], what: str) -> None:
    """Wait for ``cond`` (messages are handled by each engine's worker task)."""
    deadline = time.monotonic() + 5
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


def put(name: str, image: str = "img") -> Callable[[Any], None]:
    return lambda doc: schema.put_workload(doc, name, {"metadata": {"name": name}, "image": image})


@dataclass
class MemNode:
    node_id: str
    state: StateStore
    engine: SyncEngine
    channel: MemoryChannel

    def workloads(self) -> dict[str, Any]:
        return {k: dict(v) for k, v in self.state.snapshot().fleet.workloads.items()}

    def site(self, site: str) -> object:
        return self.state.read(f"site/{site}", schema.read_site)


class MemFleet:
    def __init__(self, stack: contextlib.AsyncExitStack) -> None:
        self.stack = stack
        self.bus = MemoryHub()
        self.trust = FakeTrust()

    async def node(
        self,
        node_id: str,
        site: str,
        *,
        role: str = "node",
        trust: Trust | None = None,
        ident: Identity | None = None,
        resync: ResyncWatch | None = None,
    ) -> MemNode:
        principal = f"node:{node_id}"
        if ident is None:
            ident = self.trust.enroll(principal, role, site)
        state = await self.stack.enter_async_context(
            StateStore(MemoryStore(), ident, node_id=node_id, site=site)
        )
        channel = self.bus.channel(node_id)
        settings = SyncSettings(fleet=FLEET, node_id=node_id, site=site, role=role)
        engine = SyncEngine(
            state, trust or self.trust, ident, settings, channel=channel, resync=resync
        )
        await self.stack.enter_async_context(engine)
        await engine.wait_connected()
        return MemNode(node_id, state, engine, channel)


@pytest.fixture
async def fleet() -> AsyncIterator[MemFleet]:
    async with contextlib.AsyncExitStack() as stack:
        yield MemFleet(stack)


def up(node: MemNode, peer: str) -> bool:
    return any(v["node"] == peer and v["up"] for v in node.engine.peer_views())


async def test_a_change_converges(fleet: MemFleet) -> None:
    hub = await fleet.node("hub", "hq", role="hub")
    n1 = await fleet.node("n1", "s1")
    n2 = await fleet.node("n2", "s1")
    await operator_write(fleet.trust, hub.state, "fleet", put("web", "v1"))
    await n1.state.write("site/s1", lambda d: schema.set_override(d, "web", "image", "v2"))
    await until(
        lambda: (
            all(n.workloads().get("web", {}).get("image") == "v1" for n in (hub, n1, n2))
            and n2.site("s1") == {"web": {"image": "v2"}}
            and hub.state.holds("site/s1")
            and hub.site("s1") == {"web": {"image": "v2"}}
        ),
        "every node holds both changes",
    )
    for n in (hub, n1, n2):
        assert n.engine.rejections.total == 0, n.engine.rejections.counts
    assert hub.engine.counters.updates_broadcast == 1
    # Live broadcast or the connect-time repair may carry them (one batch or two): count >= 1.
    assert n2.engine.counters.updates_applied >= 1


async def test_a_heartbeat_marks_a_peer_up(fleet: MemFleet) -> None:
    n1 = await fleet.node("n1", "s1")
    n2 = await fleet.node("n2", "s1")
    # n1 connected first, so n2 met it only through n1's answer to n2's first heartbeat.
    await until(lambda: up(n1, "n2") and up(n2, "n1"), "each sees the other up")
    (view,) = n2.engine.peer_views()
    assert (view["node"], view["site"], view["role"]) == ("n1", "s1", "node")
    assert view["up_since"] is not None and view["messages_in"] >= 1
    assert n2.engine.peers["n1"].heartbeat["node"] == "n1"
    assert n1.engine.status()["peers_up"] == n2.engine.status()["peers_up"] == 1


async def test_a_gap_is_repaired_by_anti_entropy(fleet: MemFleet) -> None:
    hub = await fleet.node("hub", "hq", role="hub")
    n1 = await fleet.node("n1", "s1")

    def rounds() -> list[float | None]:
        return [n.engine.last_anti_entropy for n in (n1, hub)]

    at_connect = rounds()
    await until(lambda: up(n1, "hub") and up(hub, "n1"), "peers up")
    # Seeing each other come up, both run a (debounced) round: let it pass, so that only the
    # reconnect's round can repair what follows.
    await until(
        lambda: all(r != c for r, c in zip(rounds(), at_connect, strict=True)), "the peer-up rounds"
    )
    await n1.channel.cut()
    for i in range(3):
        await operator_write(fleet.trust, hub.state, "fleet", put(f"w{i}"))
    await until(lambda: hub.engine.counters.updates_broadcast == 3, "broadcast while n1 is away")
    assert n1.workloads() == {}
    assert not n1.engine.connected and n1.engine.counters.disconnects == 1
    await n1.channel.heal()  # the reconnect starts an anti-entropy round
    await until(lambda: {"w0", "w1", "w2"} <= set(n1.workloads()), "gap repaired")
    # The reconnect round repairs the gap; a heal-triggered round racing it may repair it again
    # (duplicates are harmless), so count at least, not exactly.
    assert hub.engine.counters.repairs_sent >= 3
    assert n1.engine.counters.connects == 2


class Root:
    """A fleet root issuing credentials (the authority's job, without its files)."""

    def __init__(self) -> None:
        self.key = identity.generate("fleet-root")
        self.fleet_id = fleet_id_for(self.key.public_bytes)
        self.serial = 0

    def issue(self, ident: Identity, role: MemberRole, site: str | None) -> bytes:
        self.serial += 1
        cred = Credential(
            fleet_id=self.fleet_id,
            principal=ident.name,
            role=role,
            public_key=ident.public_bytes,
            issued_at=int(time.time()),
            serial=self.serial,
            site=site,
        )
        return sign_credential(self.key, cred)

    def trust(self, data_dir: Path, node_blob: bytes) -> FleetTrust:
        trust = FleetTrust(data_dir, self.fleet_id, self.key.public_bytes, node_blob)
        trust.add(node_blob)
        return trust


async def test_an_unknown_authors_credential_is_requested_then_applied(
    fleet: MemFleet, tmp_path: Path
) -> None:
    root = Root()
    keys = {n: identity.generate(f"node:{n}") for n in ("n1", "n2", "n3")}
    blobs = {n: root.issue(k, MemberRole.NODE, "s1") for n, k in keys.items()}
    t1 = root.trust(tmp_path / "n1", blobs["n1"])
    t2 = root.trust(tmp_path / "n2", blobs["n2"])
    n1 = await fleet.node("n1", "s1", trust=t1, ident=keys["n1"])
    n2 = await fleet.node("n2", "s1", trust=t2, ident=keys["n2"])
    await until(
        lambda: t1.member("node:n2") is not None and t2.member("node:n1") is not None,
        "n1 and n2 learn each other's credentials",
    )
    # n3 wrote at n1 and left; only n1 holds its credential. Node credentials are relayed on
    # request only, so n2 can learn it in no other way.
    t1.add(blobs["n3"])
    data = n1.state.prepare("site/s1", lambda d: schema.set_override(d, "web", "image", "n3"))
    assert data is not None
    sig = keys["n3"].sign(signing_input("site/s1", data, "{}"))
    update = NewUpdate("site/s1", data, "node:n3", sig, time.time(), "{}")
    (result,) = await n1.state.ingest([update], origin=Origin.SUBMITTED)
    assert result is IngestResult.APPLIED
    await until(lambda: n2.site("s1") == {"web": {"image": "n3"}}, "n3's change reaches n2")
    assert n2.engine.rejections.counts.get("unknown_author") == 1  # the broadcast, refused
    assert n2.engine.counters.credentials_requested >= 1
    member = t2.member("node:n3")
    assert member is not None and member.blob == blobs["n3"]
    assert n1.engine.counters.repairs_sent >= 1  # the refused update, sent again


class NeverConnects:
    """A channel to a server that is not there: the engine's workers run, nothing is sent."""

    address = "memory://nowhere"

    async def open(self, subjects: Sequence[str], listener: ChannelListener) -> None:
        await asyncio.Event().wait()

    async def publish(self, subject: str, data: bytes) -> None:
        raise ChannelError("not connected")

    async def close(self) -> None:
        return None


async def test_inbox_drops_are_counted(fleet: MemFleet) -> None:
    ident = fleet.trust.enroll("node:n1", "node", "s1")
    async with StateStore(MemoryStore(), ident, node_id="n1", site="s1") as state:
        settings = SyncSettings(fleet=FLEET, node_id="n1", site="s1", max_inbox_bytes=3000)
        engine = SyncEngine(state, fleet.trust, ident, settings, channel=NeverConnects())
        for _ in range(5):  # not started: no worker takes anything off the queue
            await engine.on_message("x", bytes(1000))
        counters = engine.status()["counters"]
        assert (counters["inbound_dropped"], counters["inbound_dropped_bytes"]) == (2, 2000)
        assert engine.status()["rejections"] == {"overload": 2}
        assert engine.inbox.bytes == 3000
        async with engine:  # the worker drains it (refusing the junk) and frees the bytes
            await until(lambda: engine.inbox.bytes == 0, "queue drained")
            await engine.on_message("x", bytes(1000))
            await until(lambda: engine.counters.messages_in == 4, "accepted again")
        assert engine.counters.inbound_dropped == 2


async def test_a_slow_consumer_drop_is_counted_when_the_monitor_answers_late(
    fleet: MemFleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server's monitor is slowest right after it drops us (it was pushing a burst): the
    count is read again until it answers, and without a baseline every drop it counted is ours."""
    answers: list[tuple[str, int] | None] = [None, None, None, ("run-1", 2)]
    asked: list[int] = []

    async def varz(port: int) -> tuple[str, int] | None:
        asked.append(port)
        return answers.pop(0) if answers else ("run-1", 2)

    monkeypatch.setattr("noderuntime.sync.engine.read_slow_clients", varz)
    monkeypatch.setattr("noderuntime.sync.engine.SLOW_READ_RETRY_S", 0.0)
    ident = fleet.trust.enroll("node:n1", "node", "s1")
    async with StateStore(MemoryStore(), ident, node_id="n1", site="s1") as state:
        settings = SyncSettings(fleet=FLEET, node_id="n1", site="s1")
        channel = fleet.bus.channel("n1")
        engine = SyncEngine(state, fleet.trust, ident, settings, channel=channel, monitor_port=9)
        async with engine:
            await engine.wait_connected()  # the baseline read at connect: no answer
            await channel.cut()
            await until(lambda: engine.counters.slow_consumer_drops == 2, "the drops counted")
            assert engine.rejections.counts.get("overload") == 1
            await channel.heal()
            await engine.wait_connected()
            await channel.cut()  # a disconnect that was no drop: the count is unchanged
            await until(lambda: not answers and len(asked) >= 5, "read again")
            await asyncio.sleep(0.05)
            assert engine.counters.slow_consumer_drops == 2
