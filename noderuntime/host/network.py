"""The node's own network: read it anywhere, set it only through the manager that owns it.

Reading uses ``ip -j addr``, ``ip -j route`` and ``/etc/resolv.conf``: it works on every host.
Setting goes through whoever manages the link, never around it:

* **NetworkManager** (it reports the device as managed): ``nmcli connection modify`` of the
  device's active connection, then ``nmcli connection up``.
* **systemd-networkd** (its state file for the link says ``ADMIN_STATE=configured`` and names
  the ``.network`` file): a drop-in ``<file>.network.d/50-noderuntime.conf`` next to that file,
  which networkd reads and we own, then ``networkctl reload`` and ``networkctl reconfigure``.
* **Neither**: refused, saying so. We do not edit files no manager of ours reads (e.g.
  ``/etc/network/interfaces``): a hand-edited file and our edits would fight.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from noderuntime.errors import InvalidInputError, NetworkConfigError

MANAGER_NM = "NetworkManager"
MANAGER_NETWORKD = "systemd-networkd"
NETWORKD_LINKS_DIR = Path("/run/systemd/netif/links")
NM_RUN_DIR = Path("/run/NetworkManager")
RESOLV_CONF = Path("/etc/resolv.conf")
# Drop-ins here apply to a .network file of that name wherever it lives (/usr/lib, /run, /etc).
NETWORKD_ETC = Path("/etc/systemd/network")
DROPIN_NAME = "50-noderuntime.conf"
COMMAND_TIMEOUT_S = 30.0
# Links the container engine makes for its own use: not the node's network, never set here.
PLUMBING_PREFIXES = ("veth", "cni-", "cni0", "podman", "docker", "br-", "virbr", "ifb")
NOT_MANAGED = (
    "this node's network is not managed by systemd-networkd or NetworkManager, so noderuntime "
    "does not change it (it edits no file that no manager reads); set it with this host's own "
    "tools, or ask whoever built the appliance image"
)

# argv -> (exit status, stdout, stderr)
Runner = Callable[[Sequence[str]], Awaitable[tuple[int, str, str]]]


async def run_command(argv: Sequence[str]) -> tuple[int, str, str]:
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            stdin=asyncio.subprocess.DEVNULL,
        )
    except OSError as exc:
        return 127, "", f"{argv[0]}: {exc.strerror}"
    try:
        async with asyncio.timeout(COMMAND_TIMEOUT_S):
            out, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return 124, "", f"{argv[0]} did not finish within {COMMAND_TIMEOUT_S:g}s"
    return proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace")


# --- reading (pure parsers, then one function that runs the commands) -----------------------


def parse_links(addr_json: str) -> list[dict[str, Any]]:
    """``ip -j addr`` as links with state, MAC and CIDR addresses (loopback and container
    plumbing left out)."""
    out = []
    for link in json.loads(addr_json or "[]"):
        name = str(link.get("ifname", "?"))
        if link.get("link_type") == "loopback" or name.startswith(PLUMBING_PREFIXES):
            continue
        addrs = [
            f"{a['local']}/{a['prefixlen']}"
            for a in link.get("addr_info") or ()
            if a.get("local") and a.get("scope") != "link"
        ]
        out.append(
            {
                "name": name,
                "index": int(link.get("ifindex") or 0),
                "state": str(link.get("operstate", "UNKNOWN")).lower(),
                "mac": str(link.get("address") or ""),
                "addresses": addrs,
            }
        )
    return out


def parse_gateway(route_json: str) -> tuple[str | None, str | None]:
    """The default route's gateway and device from ``ip -j route show default``."""
    for r in json.loads(route_json or "[]"):
        if r.get("dst") == "default" and r.get("gateway"):
            return str(r["gateway"]), str(r.get("dev") or "") or None
    return None, None


def parse_resolv(text: str) -> list[str]:
    return [
        parts[1]
        for line in text.splitlines()
        if (parts := line.split()) and parts[0] == "nameserver" and len(parts) > 1
    ]


def networkd_link_state(links_dir: Path, index: int) -> dict[str, str]:
    """networkd's state file for a link (``KEY=value`` lines); empty if it has none."""
    try:
        text = (links_dir / str(index)).read_text()
    except OSError:
        return {}
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


@dataclass(frozen=True)
class NetworkHost:
    """Where a host keeps its network facts; tests point it elsewhere."""

    run: Runner = run_command
    networkd_links: Path = NETWORKD_LINKS_DIR
    nm_run_dir: Path = NM_RUN_DIR
    resolv_conf: Path = RESOLV_CONF
    networkd_etc: Path = NETWORKD_ETC


async def _nm_devices(host: NetworkHost) -> dict[str, tuple[str, str]]:
    """device -> (state, connection) as NetworkManager reports them; empty without it."""
    if not host.nm_run_dir.is_dir():
        return {}
    rc, out, _ = await host.run(["nmcli", "-t", "-f", "DEVICE,STATE,CONNECTION", "device"])
    if rc != 0:
        return {}
    devices = {}
    for line in out.splitlines():
        dev, _, rest = line.partition(":")
        state, _, conn = rest.partition(":")
        devices[dev] = (state, conn)
    return devices


def manager_of(
    link: Mapping[str, Any], nm: Mapping[str, tuple[str, str]], networkd: Mapping[str, str]
) -> str | None:
    state = nm.get(str(link["name"]))
    if state is not None and state[0] not in ("unmanaged", "unavailable") and state[1]:
        return MANAGER_NM
    if networkd.get("ADMIN_STATE") in ("configured", "configuring") and networkd.get(
        "NETWORK_FILE"
    ):
        return MANAGER_NETWORKD
    return None


async def read_network(host: NetworkHost | None = None) -> dict[str, Any]:
    """The node's links, gateway, DNS, and who manages each link (and so whether we may set)."""
    host = host or NetworkHost()
    rc, addr_out, err = await host.run(["ip", "-j", "addr"])
    if rc != 0:
        raise NetworkConfigError(f"cannot read the network (ip -j addr): {err.strip()}")
    links = parse_links(addr_out)
    _rc, route_out, _ = await host.run(["ip", "-j", "route", "show", "default"])
    gateway, gateway_dev = parse_gateway(route_out if _rc == 0 else "")
    try:
        dns = parse_resolv(host.resolv_conf.read_text())
    except OSError:
        dns = []
    nm = await _nm_devices(host)
    for link in links:
        link["manager"] = manager_of(
            link, nm, networkd_link_state(host.networkd_links, int(link["index"]))
        )
    managers = sorted({str(m) for m in (link["manager"] for link in links) if m})
    return {
        "links": links,
        "gateway": gateway,
        "gateway_link": gateway_dev,
        "dns": dns,
        "manager": ", ".join(managers) or None,
        "can_set": bool(managers),
        "why_not": None if managers else NOT_MANAGED,
    }


# --- setting ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class NetworkChange:
    """What a technician asked for one link: DHCP, or a static address with gateway and DNS."""

    link: str
    dhcp: bool
    address: str = ""  # CIDR, e.g. 192.168.1.20/24
    gateway: str = ""
    dns: tuple[str, ...] = field(default_factory=tuple)


def parse_change(params: Mapping[str, Any]) -> NetworkChange:
    """Check a requested change; every problem says which field and what is expected."""
    link = params.get("name")
    if not isinstance(link, str) or not link or "/" in link or len(link) > 15:
        raise InvalidInputError("name must be a network interface, e.g. eth0")
    mode = params.get("mode")
    if mode == "dhcp":
        return NetworkChange(link, dhcp=True)
    if mode != "static":
        raise InvalidInputError("mode must be 'dhcp' or 'static'")
    address = str(params.get("address") or "")
    try:
        iface = ipaddress.ip_interface(address)
    except ValueError:
        raise InvalidInputError(
            f"address {address!r}: give it with its prefix, e.g. 192.168.1.20/24"
        ) from None
    if "/" not in address:
        raise InvalidInputError(f"address {address!r}: add the prefix, e.g. {address}/24")
    gateway = str(params.get("gateway") or "")
    if gateway:
        try:
            gw = ipaddress.ip_address(gateway)
        except ValueError:
            raise InvalidInputError(f"gateway {gateway!r} is not an IP address") from None
        if gw not in iface.network:
            raise InvalidInputError(
                f"gateway {gateway} is not in {iface.network}: it must be on the same subnet"
            )
    raw_dns = params.get("dns") or []
    if isinstance(raw_dns, str):
        raw_dns = raw_dns.replace(",", " ").split()
    if not isinstance(raw_dns, list):
        raise InvalidInputError("dns must be a list of IP addresses")
    for d in raw_dns:
        try:
            ipaddress.ip_address(str(d))
        except ValueError:
            raise InvalidInputError(f"DNS server {d!r} is not an IP address") from None
    return NetworkChange(link, False, address, gateway, tuple(str(d) for d in raw_dns))


def describe(change: NetworkChange) -> str:
    if change.dhcp:
        return f"{change.link}: DHCP"
    parts = [f"{change.link}: {change.address}"]
    if change.gateway:
        parts.append(f"gateway {change.gateway}")
    if change.dns:
        parts.append(f"DNS {' '.join(change.dns)}")
    return ", ".join(parts)


def nmcli_commands(change: NetworkChange, connection: str) -> list[list[str]]:
    base = ["nmcli", "connection", "modify", connection]
    if change.dhcp:
        modify = [*base, "ipv4.method", "auto", "ipv4.addresses", "", "ipv4.gateway", ""]
        modify += ["ipv4.dns", ""]
    else:
        modify = [*base, "ipv4.method", "manual", "ipv4.addresses", change.address]
        modify += ["ipv4.gateway", change.gateway, "ipv4.dns", " ".join(change.dns)]
    return [modify, ["nmcli", "connection", "up", connection]]


def networkd_dropin(change: NetworkChange) -> str:
    """Our drop-in for the link's .network file (settings in it override the file's)."""
    lines = ["# Written by noderuntime (network set); remove it to go back to the file's own.", ""]
    lines.append("[Network]")
    if change.dhcp:
        lines.append("DHCP=yes")
    else:
        lines.append("DHCP=no")
        lines.append(f"Address={change.address}")
        if change.gateway:
            lines.append(f"Gateway={change.gateway}")
        lines.extend(f"DNS={d}" for d in change.dns)
    return "\n".join(lines) + "\n"


async def _check(host: NetworkHost, argv: Sequence[str]) -> None:
    rc, _out, err = await host.run(argv)
    if rc != 0:
        raise NetworkConfigError(f"{' '.join(argv[:3])} failed: {err.strip() or f'exit {rc}'}")


async def set_network(change: NetworkChange, host: NetworkHost | None = None) -> dict[str, Any]:
    """Apply ``change`` through the link's manager; returns how (manager, what was written)."""
    host = host or NetworkHost()
    current = await read_network(host)
    link = next((lk for lk in current["links"] if lk["name"] == change.link), None)
    if link is None:
        names = ", ".join(lk["name"] for lk in current["links"]) or "none"
        raise InvalidInputError(f"no network interface {change.link!r} (this node has: {names})")
    if link["manager"] == MANAGER_NM:
        _state, connection = (await _nm_devices(host))[change.link]
        for argv in nmcli_commands(change, connection):
            await _check(host, argv)
        return {"manager": MANAGER_NM, "connection": connection}
    if link["manager"] == MANAGER_NETWORKD:
        state = networkd_link_state(host.networkd_links, int(link["index"]))
        target = host.networkd_etc / f"{Path(state['NETWORK_FILE']).name}.d" / DROPIN_NAME
        await asyncio.to_thread(_write_file, target, networkd_dropin(change))
        await _check(host, ["networkctl", "reload"])
        await _check(host, ["networkctl", "reconfigure", change.link])
        return {"manager": MANAGER_NETWORKD, "file": str(target)}
    raise NetworkConfigError(f"{change.link}: {NOT_MANAGED}")


def _write_file(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)
