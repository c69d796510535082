"""Issue 11 §3 against a real 3-member site cluster: the lease manager over JetStream KV.

Three ``SiteManager``s (one per member, each through its own member's client port), with a
stand-in reconciler that runs the instance exactly while the slot is held, sampled every 100 ms:
one holder at a time, failover when the holder loses power, corrupt entries survived.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import nats.errors
import nats.js.errors
import pytest

from noderuntime.fleet import FleetAuthority
from noderuntime.reconcile.placement import PlacementWant
from noderuntime.site.kv import NatsLeaseStore, bucket_name
from noderuntime.site.manager import SiteManager
from noderuntime.sync.natsserver import NatsServer
from tests.quorum.cluster_harness import site_cluster

NAMES = ["n1", "n2", "n3"]
WANT = {"grid": PlacementWant(replicas=1)}


class Site:
    def __init__(self, servers: list[NatsServer]) -> None:
        self.servers = dict(zip(NAMES, servers, strict=True))
        self.managers: dict[str, SiteManager] = {}
        self.stores: dict[str, NatsLeaseStore] = {}
        self.samples: list[tuple[float, frozenset[str]]] = []
        self.overlaps: list[tuple[float, frozenset[str]]] = []

    def holders(self) -> frozenset[str]:
        return frozenset(n for n, m in self.managers.items() if "grid" in m.held_slots())

    async def sample(self) -> None:
        while True:
            for m in self.managers.values():
                m.update(WANT, frozenset(m.held_slots()), True)
            now = self.holders()
            self.samples.append((time.monotonic(), now))
            if len(now) > 1:
                self.overlaps.append(self.samples[-1])
            await asyncio.sleep(0.1)

    async def wait(self, predicate: object, within_s: float, what: str) -> frozenset[str]:
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            now = self.holders()
            if callable(predicate) and predicate(now):
                return now
            await asyncio.sleep(0.1)
        state = {
            n: (m.problem, m.store_errors, m.lease_table(), m.members())
            for n, m in self.managers.items()
        }
        raise AssertionError(f"timed out waiting for {what}; holders {self.holders()}: {state}")


@contextlib.asynccontextmanager
async def running_site(tmp_path: Path, max_file_bytes: int | None = None) -> AsyncIterator[Site]:
    fleet = FleetAuthority.init(tmp_path / "fleet", "alice")
    async with (
        site_cluster(NAMES, fleet, tmp_path, max_file_bytes) as servers,
        contextlib.AsyncExitStack() as st,
    ):
        site = Site(servers)
        for name, server in site.servers.items():
            store = NatsLeaseStore(
                server.client_url_with_token, site="s1", cluster_size=3, ttl_s=8.0
            )
            st.push_async_callback(store.close)
            site.stores[name] = store
            site.managers[name] = await st.enter_async_context(
                SiteManager(node_id=name, labels={}, store=store, on_change=lambda: None)
            )
        sampler = asyncio.create_task(site.sample())
        try:
            yield site
        finally:
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler


@pytest.mark.slow
async def test_one_holder_failover_on_power_loss_and_corrupt_entries(tmp_path: Path) -> None:
    async with running_site(tmp_path) as site:
        (holder,) = await site.wait(lambda h: len(h) == 1, 90, "one holder")

        # A foreign writer puts garbage where a lease of another workload lives.
        other = next(n for n in NAMES if n != holder)
        intruder = await nats.connect(site.servers[other].client_url_with_token)
        try:
            kv = await intruder.jetstream().key_value(bucket_name("s1"))
            # The stream may be between leaders: the new holder hands its leadership over.
            for attempt in range(20):
                try:
                    await kv.put("radio.0", b"\xff not a lease")
                    break
                except (nats.errors.Error, nats.js.errors.Error):
                    if attempt == 19:
                        raise
                    await asyncio.sleep(0.5)
        finally:
            await intruder.close()
        for m in site.managers.values():
            m.update({**WANT, "radio": PlacementWant(replicas=1)}, frozenset(), True)
        await site.wait(
            lambda _: any(
                r.key == "radio.0" and r.problem == "not JSON"
                for m in site.managers.values()
                for r in m.lease_table()
            ),
            30,
            "the corrupt entry reported",
        )

        # Every manager hears of a stream election at once (JetStream's advisory), which is
        # how a holder that an election made the stream's leader hands it on within a tick.
        before = {n: m.elections for n, m in site.managers.items()}
        await site.stores[holder].keys()  # a fresh look at who leads the stream
        rep = site.stores[holder].replication()
        assert rep is not None and rep.leader is not None
        to = next(n for n in NAMES if n not in (rep.leader, holder))
        await site.stores[rep.leader].hand_leadership(to)
        await site.wait(
            lambda _: all(m.elections > before[n] for n, m in site.managers.items()),
            30,
            "the election announced to every manager",
        )

        # Power loss of the holder: its manager and its nats-server vanish together.
        manager = site.managers.pop(holder)
        await manager.__aexit__(None, None, None)
        pid = site.servers[holder].pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        (new,) = await site.wait(lambda h: len(h) == 1 and holder not in h, 60, "a new holder")
        assert new != holder
        assert site.overlaps == []


@pytest.mark.slow
async def test_a_full_jetstream_store_fences_the_holder_says_so_and_recovers(
    tmp_path: Path,
) -> None:
    import nats.errors
    import nats.js.errors
    from nats.js.api import StorageType

    async with running_site(tmp_path, max_file_bytes=4 * 1024 * 1024) as site:
        (holder,) = await site.wait(lambda h: len(h) == 1, 90, "one holder")
        # Something else on the site's JetStream (a misbehaving client) fills the store.
        nc = await nats.connect(site.servers[holder].client_url_with_token)
        try:
            js = nc.jetstream(timeout=5)
            await js.add_stream(
                name="FILLER", subjects=["filler.>"], num_replicas=3, storage=StorageType.FILE
            )
            refused = None
            for _ in range(200):  # 200 x 64 KiB: well past the 4 MiB store
                try:
                    await js.publish("filler.x", b"x" * 65536)
                except (nats.errors.Error, nats.js.errors.Error) as exc:
                    refused = exc
                    break
            assert refused is not None, "the store never filled"
            # No renewal can be written: the holder fences itself (no one takes over either),
            # and every manager reports its store problem instead of dying. (`site status`
            # names the full store from /jsz: tests/unit/test_site_status.py.)
            await site.wait(lambda h: len(h) == 0, 60, "the holder fenced")
            await site.wait(
                lambda _: all(m.problem is not None for m in site.managers.values()),
                30,
                "every manager reporting a store problem",
            )
            await js.delete_stream("FILLER")
        finally:
            await nc.close()
        await site.wait(lambda h: len(h) == 1, 90, "one holder once the store has room")
        assert site.overlaps == []
