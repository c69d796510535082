"""Real hosts on one machine: network namespaces on a bridge, and daemons running inside them.

A cut takes a host's veth down at the bridge: the host's interface loses its carrier, packets
are dropped both ways and nobody sends a FIN or RST, exactly like a pulled cable between two
switches. A heal brings it back up. Only these namespaces are ever targets of the traffic.

Every name carries a per-run id, so runs never collide, and :meth:`NetnsLab.close` removes
whatever was created even when setup failed half-way (each step is recorded before it runs).
Each daemon runs inside its namespace under ``ip netns exec``; its control socket lives in its
data dir, so the CLI and the API client work from the root namespace. The daemons are
state-only: ``podmanSocket`` points at a socket that does not exist (``ip netns exec`` remounts
/sys, so a Podman started in the namespace could not run containers anyway).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from noderuntime.crdt.records import exported_record
from tests.integration.node_harness import CLI, wait_for
from tests.sync.fleet_harness import FAST_CONFIG, FleetNode, fleet_cli

SUBNET = "10.77.0"
LEAF_PORT = 7422


def netns_unavailable() -> str | None:
    """Why network-namespace tests cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root to create network namespaces (CI runs as root)"
    if shutil.which("ip") is None:
        return "needs iproute2's `ip` to create network namespaces"
    return None


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and r.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {r.stderr.strip()}")
    return r


@dataclass
class Host:
    name: str
    netns: str
    address: str
    #: The veth end on the bridge (root namespace): down = this host is cut off.
    link: str


@dataclass
class NetnsLab:
    """Namespaces on one private bridge. Use as a context manager (cleans up on any exit)."""

    run: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    hosts: dict[str, Host] = field(default_factory=dict)
    _undo: list[list[str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.bridge = f"nrb{self.run}"  # interface names: at most 15 characters

    def __enter__(self) -> NetnsLab:
        self._undo.append(["link", "del", self.bridge])
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("link", "set", self.bridge, "up")
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add_host(self, name: str) -> Host:
        i = len(self.hosts) + 1
        netns, outer, inner = f"nr{self.run}-{name}", f"nrv{self.run}{i}", f"nrp{self.run}{i}"
        address = f"{SUBNET}.{i}"
        self._undo.append(["netns", "del", netns])
        _ip("netns", "add", netns)
        self._undo.append(["link", "del", outer])  # gone with the namespace, normally
        _ip("link", "add", outer, "type", "veth", "peer", "name", inner)
        _ip("link", "set", inner, "netns", netns)
        _ip("-n", netns, "link", "set", inner, "name", "eth0")
        _ip("-n", netns, "addr", "add", f"{address}/24", "dev", "eth0")
        _ip("-n", netns, "link", "set", "eth0", "up")
        _ip("-n", netns, "link", "set", "lo", "up")
        _ip("link", "set", outer, "master", self.bridge, "up")
        host = self.hosts[name] = Host(name, netns, address, outer)
        return host

    def cut(self, name: str) -> None:
        _ip("link", "set", self.hosts[name].link, "down")

    def heal(self, name: str) -> None:
        _ip("link", "set", self.hosts[name].link, "up")

    def close(self) -> None:
        for host in self.hosts.values():
            # Anything still running in the namespace was started by this lab.
            pids = _ip("netns", "pids", host.netns, check=False).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
        for args in reversed(self._undo):
            _ip(*args, check=False)
        self._undo.clear()


class NetnsNode(FleetNode):
    """A :class:`FleetNode` whose daemon runs inside ``host``'s namespace, state-only."""

    def __init__(
        self,
        fleet_dir: Path,
        node_id: str,
        site: str,
        host: Host,
        *,
        role: str = "node",
        leaf: bool = False,
        peers: list[NetnsNode] | None = None,
    ) -> None:
        super().__init__(fleet_dir, node_id, site, role=role, leaf=leaf)
        self.host = host
        self.peers = list(peers or [])
        # Ports inside the namespace: nothing else listens there.
        self.nats_port = 4222
        self.leaf_port = LEAF_PORT if leaf else None
        self.extra_config = dict(FAST_CONFIG) | {
            "podmanSocket": str(self.data_dir / "no-podman.sock"),
        }

    @property
    def leaf_url(self) -> str:
        return f"nats-leaf://{self.host.address}:{self.leaf_port}"

    def enroll(self) -> None:
        args = ["fleet", "enroll", self.node_id, "--site", self.site, "--role", self.role]
        args += ["--dir", str(self.fleet_dir), "-o", str(self.token)]
        fleet_cli(*args, "--address", self.host.address)

    def init(self) -> None:
        super().init()
        if self.leaf_port is not None:  # listen on the namespace's interface, not loopback
            import yaml

            path = self.data_dir / "node.yaml"
            cfg = yaml.safe_load(path.read_text())
            cfg["leafHost"] = self.host.address
            path.write_text(yaml.safe_dump(cfg))

    def start(self, *, wait: bool = True) -> None:
        assert self.proc is None or self.proc.poll() is not None
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        args = [*CLI, "--data-dir", str(self.data_dir), "run", "--log-level", "debug"]
        env = [f"{k}={v}" for k, v in self.env.items()]  # `ip netns exec` keeps our environ
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.host.netns, "env", *env, *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout: float = 60) -> None:
        def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"node exited with {self.proc.returncode}:\n{self.log()}")
            return bool(self.status()["sync"].get("connected"))

        try:
            wait_for(ready, timeout=timeout, what="node ready with sync connected")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- node log ---\n{self.log()[-5000:]}") from None

    def cleanup(self) -> None:  # no containers: never ask Podman
        with contextlib.suppress(Exception):
            self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)
        self.token.unlink(missing_ok=True)
        self.log_path.unlink(missing_ok=True)


FLOW_WORKLOAD = "flow"
# Runs nowhere: the nodes are state-only, the workload only carries the hub's counter.
FLOW_YAML = (
    "apiVersion: noderuntime/v1\nkind: Workload\nmetadata: {name: flow}\n"
    "spec:\n  image: localhost/busybox:1\n  command: [sleep, '3600']\n"
    "  nodeSelector: {noderuntime.io/site: nowhere}\n  env: {N: '%d'}\n"
)


@contextlib.contextmanager
def hub_and_site(lab: NetnsLab) -> Iterator[tuple[NetnsNode, NetnsNode]]:
    """A fresh fleet; a hub and a site node in their own namespaces, the node dialling the hub."""
    base = Path(tempfile.mkdtemp(prefix="nrn-", dir="/tmp"))
    fdir = base / "fleet"
    fleet_cli("fleet", "init", "--dir", str(fdir), "--operator", "ops")
    hub = NetnsNode(fdir, f"hub-{lab.run}", "hq", lab.add_host("hub"), role="hub", leaf=True)
    node = NetnsNode(fdir, f"n-{lab.run}", "s1", lab.add_host("site"), peers=[hub])
    try:
        for n in (hub, node):
            n.enroll()
            n.init()
            n.start()
        yield hub, node
    except BaseException:
        for n in (hub, node):
            sys.stderr.write(f"--- log of {n.node_id} ---\n{n.log()[-6000:]}\n")
        raise
    finally:
        for n in (node, hub):
            n.cleanup()
        shutil.rmtree(base, ignore_errors=True)


class Flow:
    """Changes written on both sides all the time, and when each side last saw the other's.

    The hub writes a counter into the fleet document (workload ``flow``, env ``N``), the node
    into its own document (a node override of ``env.S``); each change is written every
    ``interval_s``. :meth:`flowing_since` says when a change written after a moment reached
    the other side, in each direction.
    """

    def __init__(self, hub: NetnsNode, node: NetnsNode, interval_s: float = 0.2) -> None:
        self.hub, self.node = hub, node
        self.interval_s = interval_s
        self.written: dict[str, list[tuple[int, float]]] = {"hub": [], "node": []}
        self.seen: dict[str, list[tuple[int, float]]] = {"hub": [], "node": []}
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._counters = {"hub": itertools.count(1), "node": itertools.count(1)}

    def setup(self, within_s: float = 60) -> None:
        # Fleet content is signed by an operator, at a hub too (issue 13 §6).
        self.hub.as_operator("apply", "-f", "-", input=FLOW_YAML % 0)
        wait_for(
            lambda: self.node_sees_hub() is not None, timeout=within_s, what="flow at the node"
        )

    def node_sees_hub(self) -> int | None:
        fleet = self.node.export("fleet").get("fleet", {})
        spec = exported_record(fleet, "workloads", FLOW_WORKLOAD)
        return None if spec is None else int(spec["spec"]["env"]["N"])

    def hub_sees_node(self) -> int | None:
        doc = f"node/{self.node.node_id}"
        value = exported_record(
            self.hub.export(doc).get(doc, {}), "overrides", f"{FLOW_WORKLOAD}/env.S"
        )
        return int(value) if value is not None else None

    def __enter__(self) -> Flow:
        for fn in (self._write_hub, self._write_node, self._read):
            t = threading.Thread(target=self._guard, args=(fn,), daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)

    def _guard(self, fn: Callable[[], None]) -> None:
        while not self._stop.is_set():
            try:
                fn()
            except Exception as exc:  # a call during a restart, say: note it, go on
                self.errors.append(f"{time.monotonic():.1f} {fn.__name__}: {exc!r}")
                time.sleep(self.interval_s)

    def _write_hub(self) -> None:
        n = next(self._counters["hub"])
        self.hub.as_operator("apply", "-f", "-", input=FLOW_YAML % n)
        self.written["hub"].append((n, time.monotonic()))
        self._stop.wait(self.interval_s)

    def _write_node(self) -> None:
        n = next(self._counters["node"])
        params = {"workload": FLOW_WORKLOAD, "field": "env.S", "value": str(n)}
        self.node.call("overrides.set", params)
        self.written["node"].append((n, time.monotonic()))
        self._stop.wait(self.interval_s)

    def _read(self) -> None:
        for side, probe in (("hub", self.node_sees_hub), ("node", self.hub_sees_node)):
            value = probe()
            if value is not None and (not self.seen[side] or self.seen[side][-1][0] != value):
                self.seen[side].append((value, time.monotonic()))
        self._stop.wait(0.05)

    def first_seen_after(self, side: str, t: float) -> float | None:
        """When a change ``side`` wrote after ``t`` was first seen at the other side."""
        after = [n for n, at in self.written[side] if at > t]
        if not after:
            return None
        return next((at for n, at in self.seen[side] if n >= after[0]), None)

    def flowing_since(self, t: float) -> float | None:
        """Seconds from ``t`` until changes written after it reached the other side both ways."""
        times = [self.first_seen_after(side, t) for side in ("hub", "node")]
        if any(x is None for x in times):
            return None
        return max(x for x in times if x is not None) - t

    def wait_flowing(self, t: float, within_s: float) -> float:
        return wait_for(
            lambda: self.flowing_since(t), timeout=within_s, what="changes flowing both ways"
        )
