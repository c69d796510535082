"""The node's network: parsing what the host says, checking a change, and setting it only
through the manager that owns the link (commands recorded by a fake runner, files in tmp)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from noderuntime.errors import InvalidInputError, NetworkConfigError
from noderuntime.host.network import (
    MANAGER_NETWORKD,
    MANAGER_NM,
    NetworkHost,
    parse_change,
    parse_gateway,
    parse_links,
    parse_resolv,
    read_network,
    set_network,
)

ADDR = json.dumps(
    [
        {"ifindex": 1, "ifname": "lo", "link_type": "loopback", "operstate": "UNKNOWN"},
        {"ifindex": 7, "ifname": "veth1a2b", "link_type": "ether", "operstate": "UP"},
        {"ifindex": 8, "ifname": "cni-podman0", "link_type": "ether", "operstate": "UP"},
        {
            "ifindex": 2,
            "ifname": "eth0",
            "link_type": "ether",
            "operstate": "UP",
            "address": "52:54:00:12:34:56",
            "addr_info": [
                {"family": "inet", "local": "192.168.7.20", "prefixlen": 24, "scope": "global"},
                {"family": "inet6", "local": "fe80::1", "prefixlen": 64, "scope": "link"},
            ],
        },
    ]
)
ROUTE = json.dumps([{"dst": "default", "gateway": "192.168.7.1", "dev": "eth0"}])


class FakeHost:
    """Answers ``ip`` like a host with eth0, ``nmcli`` if told to; records every command."""

    def __init__(self, nm_devices: str | None = None) -> None:
        self.nm_devices = nm_devices
        self.commands: list[list[str]] = []

    async def run(self, argv: Sequence[str]) -> tuple[int, str, str]:
        self.commands.append(list(argv))
        if argv[:3] == ["ip", "-j", "addr"]:
            return 0, ADDR, ""
        if argv[:3] == ["ip", "-j", "route"]:
            return 0, ROUTE, ""
        if argv[0] == "nmcli" and argv[-1] == "device":
            return (0, self.nm_devices, "") if self.nm_devices is not None else (127, "", "")
        return 0, "", ""


def host(tmp_path: Path, fake: FakeHost) -> NetworkHost:
    (tmp_path / "resolv.conf").write_text("# hi\nnameserver 192.168.7.1\nnameserver 9.9.9.9\n")
    return NetworkHost(
        run=fake.run,
        networkd_links=tmp_path / "links",
        nm_run_dir=tmp_path / "nm",
        resolv_conf=tmp_path / "resolv.conf",
        networkd_etc=tmp_path / "etc-network",
    )


def test_what_the_host_says_is_parsed_for_people() -> None:
    (link,) = parse_links(ADDR)
    assert (link["name"], link["state"], link["addresses"]) == ("eth0", "up", ["192.168.7.20/24"])
    assert parse_gateway(ROUTE) == ("192.168.7.1", "eth0")
    assert parse_resolv("nameserver 1.1.1.1\nsearch lan\n") == ["1.1.1.1"]


def test_a_change_is_checked_field_by_field() -> None:
    ok = parse_change(
        {
            "name": "eth0",
            "mode": "static",
            "address": "10.0.0.5/24",
            "gateway": "10.0.0.1",
            "dns": "10.0.0.1, 9.9.9.9",
        }
    )
    assert (ok.address, ok.gateway, ok.dns) == ("10.0.0.5/24", "10.0.0.1", ("10.0.0.1", "9.9.9.9"))
    assert parse_change({"name": "eth0", "mode": "dhcp"}).dhcp
    for bad, why in (
        ({"name": "eth0", "mode": "static", "address": "10.0.0.5"}, "prefix"),
        (
            {"name": "eth0", "mode": "static", "address": "10.0.0.5/24", "gateway": "10.1.0.1"},
            "same subnet",
        ),
        ({"name": "eth0", "mode": "static", "address": "10.0.0.5/24", "dns": ["x"]}, "DNS"),
        ({"name": "eth0", "mode": "bridge"}, "dhcp"),
        ({"name": "../x", "mode": "dhcp"}, "interface"),
    ):
        with pytest.raises(InvalidInputError, match=why):
            parse_change(bad)


async def test_without_a_manager_reading_works_and_setting_is_refused(tmp_path: Path) -> None:
    fake = FakeHost()
    h = host(tmp_path, fake)
    net = await read_network(h)
    assert net["gateway"] == "192.168.7.1" and net["dns"] == ["192.168.7.1", "9.9.9.9"]
    assert net["can_set"] is False and "not managed" in net["why_not"]
    with pytest.raises(NetworkConfigError, match="not managed by systemd-networkd or Network"):
        await set_network(parse_change({"name": "eth0", "mode": "dhcp"}), h)
    assert not any(c[0] in ("nmcli", "networkctl") and "modify" in c for c in fake.commands)
    assert not (tmp_path / "etc-network").exists()


async def test_networkd_gets_a_dropin_it_reads_and_is_told_to_reload(tmp_path: Path) -> None:
    fake = FakeHost()
    h = host(tmp_path, fake)
    (tmp_path / "links").mkdir()
    (tmp_path / "links" / "2").write_text(
        "ADMIN_STATE=configured\nNETWORK_FILE=/usr/lib/systemd/network/80-eth.network\n"
    )
    assert (await read_network(h))["links"][0]["manager"] == MANAGER_NETWORKD
    change = parse_change(
        {
            "name": "eth0",
            "mode": "static",
            "address": "10.0.0.5/24",
            "gateway": "10.0.0.1",
            "dns": ["10.0.0.1"],
        }
    )
    done = await set_network(change, h)
    dropin = tmp_path / "etc-network" / "80-eth.network.d" / "50-noderuntime.conf"
    assert done == {"manager": MANAGER_NETWORKD, "file": str(dropin)}
    assert "DHCP=no\nAddress=10.0.0.5/24\nGateway=10.0.0.1\nDNS=10.0.0.1\n" in dropin.read_text()
    assert fake.commands[-2:] == [["networkctl", "reload"], ["networkctl", "reconfigure", "eth0"]]


async def test_networkmanager_changes_the_devices_own_connection(tmp_path: Path) -> None:
    fake = FakeHost(nm_devices="eth0:connected:Wired connection 1\nlo:unmanaged:\n")
    h = host(tmp_path, fake)
    (tmp_path / "nm").mkdir()
    assert (await read_network(h))["links"][0]["manager"] == MANAGER_NM
    done = await set_network(parse_change({"name": "eth0", "mode": "dhcp"}), h)
    assert done == {"manager": MANAGER_NM, "connection": "Wired connection 1"}
    assert fake.commands[-2][:6] == [
        "nmcli",
        "connection",
        "modify",
        "Wired connection 1",
        "ipv4.method",
        "auto",
    ]
    assert fake.commands[-1] == ["nmcli", "connection", "up", "Wired connection 1"]


async def test_an_unknown_interface_is_named_with_the_ones_there_are(tmp_path: Path) -> None:
    with pytest.raises(
        InvalidInputError, match=r"no network interface 'wlan0' \(this node has: eth0\)"
    ):
        await set_network(
            parse_change({"name": "wlan0", "mode": "dhcp"}), host(tmp_path, FakeHost())
        )
