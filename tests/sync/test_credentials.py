"""Credentials with the real fleet trust (not the all-knowing FakeTrust): relaying, expiry."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from noderuntime.cli.main import main
from noderuntime.crdt import schema
from noderuntime.crdt.state import StateStore
from noderuntime.crdt.store import SQLiteStore
from noderuntime.fleet import FleetAuthority, FleetTrust
from noderuntime.fleet.authority import write_bundle
from noderuntime.fleet.credential import MemberRole
from noderuntime.identity.keys import load_key
from noderuntime.sync.engine import SyncEngine, SyncSettings
from tests.sync.conftest import until
from tests.sync.natsfixtures import NatsServer


@pytest.fixture
def fleet(tmp_path: Path) -> FleetAuthority:
    return FleetAuthority.init(tmp_path / "fleet", "alice")


def enrol(fleet: FleetAuthority, tmp: Path, node_id: str, site: str, role: str = "node") -> Path:
    token = tmp / f"{node_id}.token"
    write_bundle(token, fleet.enroll_node(node_id, site, role=MemberRole(role)))
    data_dir = tmp / node_id
    argv = ["init", "--node-id", node_id, "--site", site, "--role", role, "--enroll", str(token)]
    assert main(["--data-dir", str(data_dir), *argv]) == 0
    return data_dir


async def start(
    stack: contextlib.AsyncExitStack, data_dir: Path, node_id: str, site: str, url: str, role: str
) -> tuple[FleetTrust, StateStore, SyncEngine]:
    trust = FleetTrust.load(data_dir)
    ident = load_key(data_dir / "identity.key", f"node:{node_id}")
    state = await stack.enter_async_context(
        StateStore(SQLiteStore(data_dir / "state.db"), ident, node_id=node_id, site=site)
    )
    settings = SyncSettings(
        fleet=trust.fleet_id,
        node_id=node_id,
        site=site,
        role=role,
        heartbeat_interval_s=0.3,
        anti_entropy_interval_s=2.0,
    )
    engine = await stack.enter_async_context(
        SyncEngine(state, trust, ident, settings, nats_url=url)
    )
    await engine.wait_connected()
    return trust, state, engine


async def test_history_of_a_departed_node_reaches_a_late_joiner(
    fleet: FleetAuthority, tmp_path: Path
) -> None:
    hub_dir = enrol(fleet, tmp_path, "hub", "hq", "hub")
    a_dir = enrol(fleet, tmp_path, "a", "s1")
    h = NatsServer("hub", accept_leafs=True).start()
    assert h.leaf_port
    sa = NatsServer("a", remotes=[h.leaf_port]).start()
    sc = NatsServer("c", remotes=[h.leaf_port]).start()
    try:
        async with contextlib.AsyncExitStack() as hub_stack:
            hub_trust, hub_state, _ = await start(hub_stack, hub_dir, "hub", "hq", h.url, "hub")
            async with contextlib.AsyncExitStack() as a_stack:
                _, a_state, _ = await start(a_stack, a_dir, "a", "s1", sa.url, "node")
                await a_state.write("site/s1", lambda d: schema.set_override(d, "w", "image", "a"))
                await a_state.write("node/a", lambda d: schema.set_override(d, "w", "env.X", "1"))
                await until(
                    lambda: (
                        hub_state.holds("site/s1")
                        and hub_state.holds("node/a")
                        and hub_state.read("site/s1", schema.read_site) == {"w": {"image": "a"}}
                        and bool(hub_state.read("node/a", schema.read_site))
                    ),
                    what="hub holds a's documents",
                )
            assert hub_trust.member("node:a") is not None
            sa.stop()  # a is gone for good
            c_dir = enrol(fleet, tmp_path, "c", "s1")
            assert FleetTrust.load(c_dir).member("node:a") is None  # tokens carry no nodes
            async with contextlib.AsyncExitStack() as c_stack:
                c_trust, c_state, c_engine = await start(c_stack, c_dir, "c", "s1", sc.url, "node")
                await until(
                    lambda: c_state.read("site/s1", schema.read_site) == {"w": {"image": "a"}},
                    what="c applies a's site change",
                )
                assert c_trust.member("node:a") is not None
                assert c_engine.counters.credentials_requested >= 1
    finally:
        for s in (sc, sa, h):
            s.stop()
