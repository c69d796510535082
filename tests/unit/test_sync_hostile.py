"""Hostile peers against the sync engine's bounds (issue 10), without a server.

Each test is one finding of the attack trial: unbounded tables (made-up authors, documents an
enrolled node names), replays (old heartbeats at a restarted receiver, replayed state vectors
drawing repairs) and poison payloads. Engines run over the in-memory bus; the messages are built
and signed the way a stolen key would.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pycrdt import Doc, Map

from noderuntime.crdt.envelope import signing_input
from noderuntime.crdt.state import IngestResult, StateStore
from noderuntime.crdt.store import MemoryStore, NewUpdate
from noderuntime.identity.keys import Identity
from noderuntime.sync import protocol
from noderuntime.sync.bounded import Buckets, LruTable, RateLimit
from noderuntime.sync.channel import MemoryHub
from noderuntime.sync.credentials import MAX_MISSING_AUTHORS, REQUEST_BUDGET, CredentialRelay
from noderuntime.sync.engine import SyncEngine, SyncSettings
from noderuntime.sync.inbox import Inbox, give_back_memory
from noderuntime.sync.instances import Instances
from noderuntime.sync.peers import (
    HEARTBEAT_MAX_AGE_S,
    Freshness,
    PeerStats,
    heartbeat_freshness,
)
from noderuntime.sync.protocol import WireUpdate
from tests.sync.natsfixtures import FakeTrust
from tests.unit.test_sync_engine_mem import put, until
from tests.unit.test_sync_parts import Clock

FLEET = "f1"


# --- bounded tables --------------------------------------------------------------------------


def test_a_bounded_table_forgets_the_least_recently_set_and_counts_it() -> None:
    evicted: list[int] = []
    table: LruTable[str, int] = LruTable(2, lambda: evicted.append(1))
    table["a"], table["b"] = 1, 2
    table["a"] = 3  # a is now the most recent
    table["c"] = 4
    assert list(table) == ["a", "c"] and len(evicted) == 1


def test_a_rate_limit_forgets_keys_and_counts_only_those_still_limited() -> None:
    clock, evicted = Clock(), []
    limit: RateLimit[str] = RateLimit(2.0, clock, cap=2, on_evict=lambda: evicted.append(1))
    assert limit.allow("a") and not limit.allow("a")
    clock.now += 2.0
    assert limit.allow("b") and limit.allow("c")  # a forgotten: its interval had passed
    assert evicted == []
    assert limit.allow("d")  # b forgotten while still limited
    assert evicted == [1] and len(limit) == 2


def test_buckets_allow_a_burst_then_a_steady_rate_per_key() -> None:
    clock = Clock()
    buckets: Buckets[str] = Buckets(2.0, 3, clock, cap=10)
    assert [buckets.take("p") for _ in range(4)] == [True, True, True, False]
    assert buckets.take("q")  # another key has its own bucket
    clock.now += 0.5
    assert buckets.take("p") and not buckets.take("p")


def test_made_up_authors_cost_a_receiver_bounded_memory_and_requests() -> None:
    clock = Clock()
    evicted: list[int] = []
    relay = CredentialRelay(FakeTrust(), clock, on_evict=lambda: evicted.append(1))
    asked = 0
    for i in range(20_000):
        asked += len(relay.to_request({f"node:made-up-{i}"}))
    assert len(relay.missing_authors) == MAX_MISSING_AUTHORS
    assert asked == REQUEST_BUDGET  # the clock stands still: the budget does not refill
    assert len(evicted) >= 20_000 - MAX_MISSING_AUTHORS
    # Names no credential can carry are not remembered or asked for at all.
    assert relay.to_request({"node:Bad Name", "root:x", "node:a\n", "x" * 300}) == []
    assert "node:a\n" not in relay.missing_authors


# --- heartbeats: counters, and an age bound for boots never seen ------------------------------


def test_the_first_heartbeat_of_a_boot_must_be_recent_by_our_clock() -> None:
    now = 1_000_000.0
    peer = PeerStats("n1")
    old = {"boot": "b1", "n": 7}
    assert heartbeat_freshness(peer, now - 420, old, now) is Freshness.STALE
    assert peer.boots == {}  # a stale one teaches nothing
    assert heartbeat_freshness(peer, now - 10, {"boot": "b1", "n": 8}, now) is Freshness.FRESH
    # Once a boot is known its counter rules: a clock stepped back an hour is still live.
    assert heartbeat_freshness(peer, now - 3600, {"boot": "b1", "n": 9}, now) is Freshness.FRESH
    assert heartbeat_freshness(peer, now, {"boot": "b1", "n": 9}, now) is Freshness.REPLAYED
    # Peers without a counter are judged by time alone.
    legacy = PeerStats("n2")
    assert heartbeat_freshness(legacy, now - 1, {}, now) is Freshness.FRESH
    legacy.last_heartbeat_ts = now - 1
    assert heartbeat_freshness(legacy, now - 1, {}, now) is Freshness.REPLAYED
    assert heartbeat_freshness(legacy, now - 2 * HEARTBEAT_MAX_AGE_S, {}, now) is (
        Freshness.REPLAYED
    )


# --- engines over the in-memory bus ------------------------------------------------------------


class Rig:
    """A hub engine and the keys of the members the test impersonates."""

    def __init__(self, trust: FakeTrust, hub: SyncEngine, state: StateStore) -> None:
        self.trust = trust
        self.hub = hub
        self.state = state

    def ident(self, principal: str) -> Identity:
        return self.trust.identities[principal]

    def heartbeat(self, principal: str, ts: float, payload: dict[str, Any] | bytes) -> bytes:
        raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        part = protocol.heartbeat_signed_part(principal, ts, raw)
        return part + self.ident(principal).sign(protocol.signing_bytes(part))

    def state_msg(self, principal: str, doc: str, sv: bytes, ts: float, target: str = "") -> bytes:
        part = protocol.state_signed_part(principal, doc, target, ts, sv)
        return part + self.ident(principal).sign(protocol.signing_bytes(part))


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    trust = FakeTrust()
    trust.enroll("operator:ann", "operator", None)
    trust.enroll("node:n1", "node", "s1")
    ident = trust.enroll("node:hub", "hub", "hq")
    async with contextlib.AsyncExitStack() as stack:
        state = await stack.enter_async_context(
            StateStore(MemoryStore(), ident, node_id="hub", site="hq")
        )
        settings = SyncSettings(fleet=FLEET, node_id="hub", site="hq", role="hub")
        engine = SyncEngine(state, trust, ident, settings, channel=MemoryHub().channel("hub"))
        await stack.enter_async_context(engine)
        await engine.wait_connected()
        yield Rig(trust, engine, state)


async def test_two_million_made_up_authors_leave_the_tables_bounded(rig: Rig) -> None:
    # 20,000 stands in for the trial's 2.1 million: what matters is that nothing grows with it.
    for i in range(20_000):
        update = WireUpdate(f"node:a{i}", bytes(64), 1.0, "{}", b"\x00\x00")
        await rig.hub.handle(protocol.encode_updates("x", "fleet", [update]))
    status = rig.hub.status()
    assert status["rejections"]["unknown_author"] == 20_000
    assert len(rig.hub.relay.missing_authors) <= MAX_MISSING_AUTHORS
    assert status["counters"]["table_evictions"] >= 20_000 - MAX_MISSING_AUTHORS
    # The request budget refills with time (64 a second): far fewer than one per author.
    assert status["counters"]["credentials_requested"] < 2_000
    assert status["counters"]["rate_limited"] > 0


async def test_a_node_cannot_make_a_hub_create_documents_it_may_not_write(rig: Rig) -> None:
    # Something in it: a hub takes on a document only if the peer has some of it.
    await rig.state.write("fleet", put("w"))
    sv = rig.state.state_vector("fleet")
    now = time.time()
    for doc in ["site/s2", "node/n9", "site/plant-a\n", "site/s1", "node/n1"]:
        await rig.hub.handle(rig.state_msg("node:n1", doc, sv, now))
        now += 0.001
    assert rig.state.holds("site/s1") and rig.state.holds("node/n1")
    assert not any(rig.state.holds(d) for d in ("site/s2", "node/n9", "site/plant-a\n"))
    counts = rig.hub.rejections.counts
    assert counts["unauthorised"] == 2 and counts["bad_doc"] == 1


async def test_a_restarted_receiver_refuses_an_old_heartbeat(rig: Rig) -> None:
    now = time.time()
    await rig.hub.handle(rig.heartbeat("node:n1", now - 420, {"boot": "b1", "n": 200}))
    assert rig.hub.rejections.counts == {"stale": 1}
    assert rig.hub.status()["peers_up"] == 0
    await rig.hub.handle(rig.heartbeat("node:n1", now, {"boot": "b2", "n": 1}))
    assert rig.hub.status()["peers_up"] == 1


async def test_replayed_state_vectors_are_counted_and_draw_few_repairs(rig: Rig) -> None:
    for i in range(3):
        await rig.state.write("fleet", put(f"w{i}"))
    now = time.time()
    await rig.hub.handle(rig.heartbeat("node:n1", now, {"boot": "b1", "n": 1}))
    empty = rig.state_msg("node:n1", "fleet", b"\x00", now, target="hub")
    for _ in range(2000):
        await rig.hub.handle(empty)
    # Distinct announcements signed (or captured) in a burst: repairs are rate-limited.
    for i in range(1, 201):
        await rig.hub.handle(rig.state_msg("node:n1", "fleet", b"\x00", now + i / 1000, "hub"))
    counters = rig.hub.status()["counters"]
    assert rig.hub.rejections.counts["replayed"] == 1999
    # One answer to the first, and to a few of the burst (3 updates each), not 2,200.
    assert counters["repairs_sent"] <= 3 * 20
    assert counters["rate_limited"] >= 150
    # An announcement older than the bound by the sender's own clock is stale.
    await rig.hub.handle(rig.state_msg("node:n1", "fleet", b"\x00", now - 3600, "hub"))
    assert rig.hub.rejections.counts["stale"] == 1


async def test_a_poison_heartbeat_payload_is_malformed_not_an_internal_error(rig: Rig) -> None:
    await rig.hub.handle(rig.heartbeat("node:n1", time.time(), b"[" * 3000))
    await rig.hub.handle(rig.heartbeat("node:n1", time.time(), b"[" * 30_000 + b"]" * 30_000))
    assert rig.hub.rejections.counts == {"malformed": 2}


# --- a cloned enrolment: two live instances of one node id -------------------------------------


def test_a_restart_is_one_switch_and_a_clone_alternates() -> None:
    clock = Clock()
    seen = Instances("hub", "hub-boot", timeout_s=6.0, uptime=lambda: 100.0)
    assert seen.heard("n1", "a", 50.0, clock.now, clock.now).accept
    clock.now += 2
    assert seen.heard("n1", "b", 1.0, clock.now, clock.now).accept  # a restart
    for _ in range(5):
        clock.now += 2
        assert seen.heard("n1", "b", None, clock.now, clock.now).accept
    assert seen.clones(clock.now) == []
    # A replay of the old instance after the restart: signed before b's first heartbeat.
    assert seen.heard("n1", "a", None, clock.now - 20, clock.now).accept
    assert seen.heard("n1", "b", None, clock.now, clock.now).accept
    assert seen.clones(clock.now) == []
    # n2 and its clone, started 30 s later, alternate.
    verdicts = []
    for i in range(4):
        clock.now += 1
        verdicts.append(seen.heard("n2", "orig", 100.0 + i, clock.now, clock.now))
        verdicts.append(seen.heard("n2", "twin", 70.0 + i, clock.now, clock.now))
    detected = [v.detected for v in verdicts if v.detected is not None]
    assert len(detected) == 1 and detected[0]["newcomer"] == "twin"
    # Detected at the fourth switch; the twin's heartbeats are refused from then on.
    assert [v.accept for v in verdicts] == [True] * 5 + [False, True, False]
    (clone,) = seen.clones(clock.now)
    assert clone["node"] == "n2" and clone["live"] is True
    assert [i["instance"] for i in clone["instances"]] == ["orig", "twin"]


def test_an_instance_hearing_its_twin_suspends_only_if_it_is_the_newcomer() -> None:
    clock = Clock()
    older = Instances("n1", "orig", timeout_s=6.0, uptime=lambda: 100.0)
    newer = Instances("n1", "twin", timeout_s=6.0, uptime=lambda: 5.0)
    # Our own previous start's heartbeat (signed before we started) is no twin.
    assert newer.heard_self("prev", 300.0, clock.now - 10, clock.now).accept
    assert newer.clones(clock.now) == []
    for _ in range(2):
        clock.now += 1
        a = older.heard_self("twin", 5.0, clock.now, clock.now)
        b = newer.heard_self("orig", 100.0, clock.now, clock.now)
    assert a.accept and a.detected is not None
    assert not b.accept and b.detected is not None and b.detected["newcomer"] == "twin"


async def test_a_cloned_enrolment_is_detected_and_the_newcomer_falls_silent() -> None:
    trust = FakeTrust()
    hub_ident = trust.enroll("node:hub", "hub", "hq")
    n1_ident = trust.enroll("node:n1", "node", "s1")
    bus = MemoryHub()
    async with contextlib.AsyncExitStack() as stack:

        async def engine(node_id: str, site: str, role: str, ident: Identity) -> SyncEngine:
            state = await stack.enter_async_context(
                StateStore(MemoryStore(), ident, node_id=node_id, site=site)
            )
            settings = SyncSettings(
                fleet=FLEET, node_id=node_id, site=site, role=role, heartbeat_interval_s=0.1
            )
            e = SyncEngine(state, trust, ident, settings, channel=bus.channel(node_id))
            await stack.enter_async_context(e)
            await e.wait_connected()
            return e

        hub = await engine("hub", "hq", "hub", hub_ident)
        original = await engine("n1", "s1", "node", n1_ident)
        original.out._started -= 60  # it has run a minute when the clone starts
        clone = await engine("n1", "s1", "node", n1_ident)  # the same token, used again
        await until(
            lambda: (
                clone.status()["suspended"] is not None
                and bool(hub.status()["clones"])
                and bool(original.status()["clones"])
            ),
            "the clone noticed everywhere",
        )
        assert original.status()["suspended"] is None
        (incident,) = hub.status()["clones"]
        assert incident["node"] == "n1" and incident["newcomer"] == clone.out.boot
        assert original.status()["clones"][0]["newcomer"] == clone.out.boot
        # The hub's view of n1 is the original's; the clone publishes nothing any more.
        sent = clone.counters.messages_out
        await until(lambda: original.counters.heartbeats_sent >= 5, "a few heartbeats later")
        assert clone.counters.messages_out == sent
        assert hub.peers["n1"].heartbeat["boot"] == original.out.boot


async def test_a_chain_with_a_withheld_link_is_not_resent_at_every_round(rig: Rig) -> None:
    # A stolen key signs a chain of changes and withholds the first: the rest wait here, and
    # must not be sent again to every peer whose state vector arrives.
    d: Any = Doc()
    chain = []
    for i in range(5):
        before = d.get_state()
        d.get("overrides", type=Map)[f"w{i}/image"] = '"x"'
        chain.append(d.get_update(before))
    n1 = rig.ident("node:n1")
    updates = [
        NewUpdate(
            "site/s1", data, n1.name, n1.sign(signing_input("site/s1", data, "{}")), 1.0, "{}"
        )
        for data in chain[1:]
    ]
    assert all(r is IngestResult.APPLIED for r in await rig.state.ingest(updates, create_docs=True))
    now = time.time()
    await rig.hub.handle(rig.heartbeat("node:n1", now, {"boot": "b1", "n": 1}))
    await rig.hub.handle(rig.state_msg("node:n1", "site/s1", b"\x00", now, target="hub"))
    assert rig.hub.status()["counters"]["repairs_sent"] == 0
    # With something integrated the peer lacks, that goes and the waiting tail stays.
    await rig.state.write(
        "site/s1", lambda doc: doc.get("overrides", type=Map).__setitem__("a", "1")
    )
    await rig.hub.handle(rig.state_msg("node:n1", "site/s1", b"\x00", now + 1, target="hub"))
    counters = rig.hub.status()["counters"]
    assert counters["repairs_sent"] == 1 and counters["repairs_held"] == 4


async def test_the_inbox_remembers_its_high_water_for_giving_memory_back() -> None:
    inbox = Inbox(max_bytes=10_000)
    assert inbox.offer("a", bytes(3000)) and inbox.offer("b", bytes(4000))
    for _ in range(2):
        _, data = await inbox.get()
        inbox.done(data)
    assert inbox.empty() and inbox.bytes == 0 and inbox.high_water == 7000
    give_back_memory()  # glibc's malloc_trim here; a no-op where there is none
