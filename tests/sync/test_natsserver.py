"""The supervised nats-server: mutual TLS leaf links, local token, restarts, parent death."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import nats
import pytest

from noderuntime.errors import NatsServerError
from noderuntime.fleet import FleetAuthority, FleetTrust, install_bundle
from noderuntime.identity import keys as identity
from noderuntime.sync.natsconfig import LeafTLS, NatsServerSettings
from noderuntime.sync.natsserver import NatsServer

REPO = Path(__file__).resolve().parents[2]


async def until(
    cond: Callable[[], Awaitable[bool]], within_s: float = 15.0, what: str = ""
) -> None:
    deadline = time.monotonic() + within_s
    while not await cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def member(fleet: FleetAuthority, node_id: str, base: Path) -> tuple[Path, LeafTLS]:
    bundle = fleet.enroll_node(node_id, "s1")
    data_dir = base / node_id
    data_dir.mkdir(mode=0o700)
    identity.save_key(data_dir / "identity.key", bundle.node_identity())
    trust = install_bundle(
        data_dir,
        bundle,
        node_id=node_id,
        site="s1",
        node_public_key=bundle.credential.public_key,
    )
    assert FleetTrust.load(data_dir).fleet_id == fleet.fleet_id
    return data_dir, LeafTLS(trust.cert_file, trust.key_file, trust.ca_file, trust.member_san)


@pytest.fixture
def fleet(tmp_path: Path) -> FleetAuthority:
    return FleetAuthority.init(tmp_path / "fleet", "alice")


def hub_settings(tls: LeafTLS) -> NatsServerSettings:
    return NatsServerSettings("hub", client_port=0, leaf_port=0, leaf_host="127.0.0.1", tls=tls)


def spoke_settings(name: str, tls: LeafTLS, hub: NatsServer) -> NatsServerSettings:
    url = f"nats-leaf://127.0.0.1:{hub.leaf_port}"
    return NatsServerSettings(name, client_port=0, remotes=(url,), tls=tls, leaf_reconnect_s=1)


async def link_up(ns: NatsServer) -> bool:
    return any(link.up for link in await ns.leaf_links())


async def test_leaf_link_with_mutual_tls_passes_messages(
    fleet: FleetAuthority, tmp_path: Path
) -> None:
    hub_dir, hub_tls = member(fleet, "hub", tmp_path)
    n1_dir, n1_tls = member(fleet, "n1", tmp_path)
    async with NatsServer(hub_settings(hub_tls), hub_dir / "nats") as hub:
        # the config and token are private; clients listen on loopback only
        assert stat.S_IMODE(hub.config_file.stat().st_mode) == 0o600
        assert stat.S_IMODE((hub.workdir / "client.token").stat().st_mode) == 0o600
        varz = await hub.monitor("/varz")
        assert varz["host"] == "127.0.0.1" and varz["http_host"] == "127.0.0.1"
        async with NatsServer(spoke_settings("n1", n1_tls, hub), n1_dir / "nats") as n1:
            await until(lambda: link_up(n1), what="leaf link up")
            (out,) = await n1.leaf_links()
            assert out.direction == "outbound" and out.remote_name == "hub" and out.since
            inbound = await hub.leaf_links()
            assert [(link.direction, link.remote_name) for link in inbound] == [("inbound", "n1")]

            c_hub = await nats.connect(hub.client_url, token=hub.client_token)
            c_n1 = await nats.connect(n1.client_url_with_token)  # token in the URL works too
            try:
                sub_n1 = await c_n1.subscribe("fleet.test")
                sub_hub = await c_hub.subscribe("site.test")
                await c_n1.flush()
                await c_hub.flush()

                async def delivered() -> bool:
                    await c_hub.publish("fleet.test", b"down")
                    await c_n1.publish("site.test", b"up")
                    with contextlib.suppress(nats.errors.TimeoutError):
                        a = await sub_n1.next_msg(timeout=0.2)
                        b = await sub_hub.next_msg(timeout=0.2)
                        return a.data == b"down" and b.data == b"up"
                    return False

                await until(delivered, what="messages across the leaf link")
            finally:
                await c_hub.close()
                await c_n1.close()
        # the spoke is gone: the hub lists no links
        await until(lambda: _no_links(hub), what="inbound link gone")


async def _no_links(ns: NatsServer) -> bool:
    return not await ns.leaf_links()


async def test_configured_peer_that_is_down_is_reported_down(
    fleet: FleetAuthority, tmp_path: Path
) -> None:
    n1_dir, n1_tls = member(fleet, "n1", tmp_path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = NatsServerSettings(
        "n1", client_port=0, remotes=(f"nats-leaf://127.0.0.1:{port}",), tls=n1_tls
    )
    async with NatsServer(settings, n1_dir / "nats") as n1:
        (link,) = await n1.leaf_links()
        assert not link.up and link.peer.endswith(f":{port}") and link.since


async def test_server_of_another_fleet_cannot_link(fleet: FleetAuthority, tmp_path: Path) -> None:
    other = FleetAuthority.init(tmp_path / "other", "mallory")
    hub_dir, hub_tls = member(fleet, "hub", tmp_path)
    (tmp_path / "o").mkdir()
    x_dir, x_tls = member(other, "intruder", tmp_path / "o")
    async with NatsServer(hub_settings(hub_tls), hub_dir / "nats") as hub:
        # an intruder with a certificate from another fleet dials our hub...
        async with NatsServer(spoke_settings("intruder", x_tls, hub), x_dir / "nats") as x:

            async def refused() -> bool:
                return any("certificate" in line or "tls" in line.lower() for line in x.stderr_tail)

            await until(refused, what="TLS refusal in the intruder's log")
            await asyncio.sleep(1.5)  # a couple of reconnect attempts
            assert not await link_up(x)
            assert await hub.leaf_links() == []
        # ...and our node doesn't link to the intruder's server either
        n1_dir, n1_tls = member(fleet, "n1", tmp_path)
        x_hub = NatsServerSettings(
            "intruder", client_port=0, leaf_port=0, leaf_host="127.0.0.1", tls=x_tls
        )
        async with (
            NatsServer(x_hub, x_dir / "nats2") as xh,
            NatsServer(spoke_settings("n1", n1_tls, xh), n1_dir / "nats") as n1,
        ):

            async def refused_n1() -> bool:
                return any("certificate" in line for line in n1.stderr_tail)

            await until(refused_n1, what="n1 refuses the intruder's certificate")
            assert not await link_up(n1)
            assert await xh.leaf_links() == []


async def test_plain_client_without_token_is_refused(fleet: FleetAuthority, tmp_path: Path) -> None:
    d, tls = member(fleet, "n1", tmp_path)
    async with NatsServer(hub_settings(tls), d / "nats") as ns:
        with pytest.raises(Exception) as info:
            await nats.connect(ns.client_url, allow_reconnect=False, connect_timeout=2)
        assert "authorization" in str(info.value).lower() or isinstance(
            info.value, nats.errors.NoServersError
        )
        with pytest.raises(Exception):  # noqa: B017 - any refusal will do
            await nats.connect(ns.client_url, token="wrong", allow_reconnect=False)
        # a plain (non-TLS, no certificate) client on the leaf port gets nowhere either
        reader, writer = await asyncio.open_connection("127.0.0.1", ns.leaf_port)
        writer.write(b"CONNECT {}\r\nPUB x 2\r\nhi\r\n")
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        data = await asyncio.wait_for(reader.read(4096), 10)
        writer.close()
        assert b"+OK" not in data
        nc = await nats.connect(ns.client_url, token=ns.client_token)
        await nc.close()


async def test_supervisor_restarts_a_killed_server(fleet: FleetAuthority, tmp_path: Path) -> None:
    d, tls = member(fleet, "n1", tmp_path)
    ns = NatsServer(hub_settings(tls), d / "nats", backoff_initial_s=0.1)
    async with ns:
        pid, port, leaf = ns.pid, ns.client_port, ns.leaf_port
        assert pid is not None and ns.healthy and ns.restarts == 0
        os.kill(pid, signal.SIGKILL)

        async def back() -> bool:
            return ns.healthy and ns.pid not in (None, pid)

        await until(back, what="restarted nats-server")
        assert ns.restarts == 1
        assert (ns.client_port, ns.leaf_port) == (port, leaf)  # same ports after a restart
        nc = await nats.connect(ns.client_url, token=ns.client_token)
        await nc.close()
        last = ns.pid
    assert ns.pid is None and not ns.healthy
    assert last is not None
    with pytest.raises(ProcessLookupError):
        os.kill(last, 0)


async def test_start_failure_reports_the_servers_own_words(
    fleet: FleetAuthority, tmp_path: Path
) -> None:
    d, tls = member(fleet, "n1", tmp_path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        busy = s.getsockname()[1]
        settings = NatsServerSettings("n1", client_port=busy, tls=tls)
        with pytest.raises(NatsServerError, match="address already in use"):
            async with NatsServer(settings, d / "nats", ready_timeout_s=10):
                pass


CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from noderuntime.sync.natsconfig import NatsServerSettings
    from noderuntime.sync.natsserver import NatsServer

    async def main():
        async with NatsServer(NatsServerSettings("orphan", client_port=0), Path(sys.argv[1])) as ns:
            print(ns.pid, flush=True)
            await asyncio.sleep(3600)

    asyncio.run(main())
    """
)


def test_nats_server_dies_with_its_parent(tmp_path: Path) -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path / "nats")],
        stdout=subprocess.PIPE,
        cwd=REPO,
        text=True,
    )
    try:
        assert parent.stdout is not None
        child_pid = int(parent.stdout.readline())
        os.kill(child_pid, 0)  # running
        parent.kill()  # SIGKILL: no cleanup code runs in the parent
        parent.wait()
        deadline = time.monotonic() + 10
        while _alive(child_pid):
            assert time.monotonic() < deadline, "nats-server outlived its parent"
            time.sleep(0.05)
    finally:
        if parent.poll() is None:
            parent.kill()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except FileNotFoundError:
        return False
