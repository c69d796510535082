"""The node's network read in a real network namespace (a veth with an address, a default route
and the namespace's own resolv.conf), and a change refused where no manager owns the link.

The managers' state is pointed at empty folders: a test must never reconfigure the host's
network, whatever manages it on the machine running the tests.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None, reason="needs root and iproute2 (CI has both)"
)

PROBE = """
import asyncio, json, sys
from pathlib import Path
from noderuntime.errors import NetworkConfigError
from noderuntime.host.network import NetworkHost, parse_change, read_network, set_network

empty = Path(sys.argv[1])
host = NetworkHost(networkd_links=empty / "links", nm_run_dir=empty / "nm",
                   networkd_etc=empty / "etc")

async def main():
    net = await read_network(host)
    try:
        await set_network(parse_change({"name": sys.argv[2], "mode": "dhcp"}), host)
        refused = None
    except NetworkConfigError as exc:
        refused = str(exc)
    print(json.dumps({"net": net, "refused": refused}))

asyncio.run(main())
"""


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


@pytest.fixture
def namespace() -> Iterator[tuple[str, str]]:
    tag = uuid.uuid4().hex[:6]
    ns, outer, inner = f"nroff-{tag}", f"nroa{tag}", f"nrob{tag}"
    resolv = Path("/etc/netns") / ns / "resolv.conf"
    try:
        _ip("netns", "add", ns)
        _ip("link", "add", outer, "type", "veth", "peer", "name", inner)
        _ip("link", "set", inner, "netns", ns)
        _ip("-n", ns, "addr", "add", "10.231.7.20/24", "dev", inner)
        _ip("-n", ns, "link", "set", inner, "up")
        _ip("link", "set", outer, "up")
        _ip("-n", ns, "route", "add", "default", "via", "10.231.7.1")
        resolv.parent.mkdir(parents=True, exist_ok=True)
        resolv.write_text("nameserver 10.231.7.1\n")
        yield ns, inner
    finally:
        subprocess.run(["ip", "link", "del", outer], capture_output=True, timeout=30)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
        shutil.rmtree(resolv.parent, ignore_errors=True)


def test_the_network_is_read_in_a_namespace_and_a_change_without_manager_is_refused(
    namespace: tuple[str, str], tmp_path: Path
) -> None:
    ns, link = namespace
    r = subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, "-c", PROBE, str(tmp_path), link],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    net = out["net"]
    (veth,) = net["links"]
    assert (veth["name"], veth["addresses"], veth["manager"]) == (link, ["10.231.7.20/24"], None)
    assert (net["gateway"], net["gateway_link"], net["dns"]) == ("10.231.7.1", link, ["10.231.7.1"])
    assert net["can_set"] is False
    assert "not managed by systemd-networkd or NetworkManager" in out["refused"]
    assert "does not change it" in out["refused"]
    assert not any(tmp_path.iterdir())  # nothing written anywhere
