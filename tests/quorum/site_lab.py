"""A real site of N nodes for fault tests and benchmarks: each daemon in its own network
namespace (a host), their nats-servers clustered over veths on a bridge (routes, mutual TLS,
JetStream), and one shared Podman service in the root namespace running every node's
containers (``ip netns exec`` remounts /sys, so Podman cannot run inside a namespace).

Faults, as the field has them:

- :meth:`SiteLab.cut` takes a host's veth down at the bridge: a pulled cable (no FIN, no RST);
  the daemon keeps running, its site links are gone.
- :meth:`SiteLab.power_off` kills every process in the host's namespace at once (daemon and
  its nats-server: SIGKILL) and removes the node's containers: a power loss.
- :meth:`SiteLab.step_clock` steps one daemon's wall clock (libfaketime, re-read every second;
  its monotonic clock and its Go nats-server are left alone): NTP or a technician's ``date -s``
  on one node. Only with ``SiteLab(clocks=True)`` where libfaketime is installed.

:class:`InstanceMonitor` samples, every 100 ms from outside every node, which nodes run an
instance of a workload (Podman's own view, by the node label) and records overlaps.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from noderuntime.runtime.base import LABEL_NODE, LABEL_WORKLOAD
from tests.integration.podman_helpers import podman_service, remove_node_containers
from tests.sync.fleet_harness import enroll_and_init, fleet_cli
from tests.sync.netns_harness import NetnsLab, NetnsNode, netns_unavailable

CLUSTER_PORT = 6222
MONITOR_INTERVAL_S = 0.1
FAKETIME_LIB = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")

__all__ = ["CLUSTER_PORT", "InstanceMonitor", "SiteLab", "SiteNode", "netns_unavailable"]


def singleton_yaml(name: str, replicas: int = 1, site: str = "s1") -> str:
    return (
        f"apiVersion: noderuntime/v1\nkind: Workload\nmetadata: {{name: {name}}}\n"
        "spec:\n  image: localhost/busybox:1\n  command: [sleep, '3600']\n"
        "  stopTimeoutSeconds: 1\n"
        f"  nodeSelector: {{noderuntime.io/site: {site}}}\n"
        f"  placement: {{scope: site, replicas: {replicas}}}\n"
    )


class SiteNode(NetnsNode):
    """A node of the site: clustered with the others, containers on the shared Podman."""

    def __init__(
        self,
        fleet_dir: Path,
        node_id: str,
        site: str,
        lab: NetnsLab,
        name: str,
        podman: Path,
        role: str = "node",
    ) -> None:
        super().__init__(fleet_dir, node_id, site, lab.add_host(name), role=role)
        self.name = name
        self.extra_config["podmanSocket"] = str(podman)
        self.cluster_peers: list[str] = []

    def enroll(self) -> None:
        # A witness is enrolled as a node and says what it is at `init --role witness`.
        role, self.role = self.role, "node"
        try:
            super().enroll()
        finally:
            self.role = role

    @property
    def route_url(self) -> str:
        return f"nats-route://{self.host.address}:{CLUSTER_PORT}"

    def init(self) -> None:
        super().init()
        import yaml

        path = self.data_dir / "node.yaml"
        cfg = yaml.safe_load(path.read_text())
        cfg |= {
            "clusterPort": CLUSTER_PORT,
            "clusterHost": self.host.address,
            "clusterPeers": self.cluster_peers,
        }
        path.write_text(yaml.safe_dump(cfg))

    def monitor_port(self) -> int | None:
        for ports in (self.data_dir / "nats").glob("*.ports"):
            with contextlib.suppress(OSError, ValueError, KeyError, IndexError):
                return int(json.loads(ports.read_text())["monitoring"][0].rsplit(":", 1)[1])
        return None

    def nats_monitor(self, path: str) -> dict[str, object] | None:
        """GET a monitoring endpoint of this node's nats-server (loopback in its namespace)."""
        port = self.monitor_port()
        if port is None:
            return None
        r = subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                self.host.netns,
                "curl",
                "-s",
                "-m",
                "2",
                f"http://127.0.0.1:{port}{path}",
            ],
            capture_output=True,
            text=True,
            timeout=10,
        )
        with contextlib.suppress(ValueError):
            out = json.loads(r.stdout)
            return out if isinstance(out, dict) else None
        return None


@dataclass
class SiteLab:
    """N nodes of site s1 in namespaces, every pair routed. Use as a context manager. The last
    ``witnesses`` of them are witnesses: cluster voters that hold no slot."""

    size: int = 3
    witnesses: int = 0
    lab: NetnsLab = field(default_factory=NetnsLab)
    nodes: list[SiteNode] = field(default_factory=list)
    _stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    podman: Path = Path("/nonexistent")  # the shared Podman service's socket, once started
    clocks: bool = False  # every daemon on a wall clock :meth:`step_clock` can step

    def __enter__(self) -> SiteLab:
        try:
            self._start()
        except BaseException:
            self._dump_logs()
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is not None:
            self._dump_logs()
        self.close()

    def _start(self) -> None:
        self._stack.enter_context(self.lab)
        podman = self.podman = self._stack.enter_context(podman_service())
        self.base = Path(tempfile.mkdtemp(prefix="nrq-", dir="/tmp"))
        self._stack.callback(shutil.rmtree, self.base, True)
        fdir = self.base / "fleet"
        fleet_cli("fleet", "init", "--dir", str(fdir), "--operator", "ops")
        run = self.lab.run
        for i in range(self.size):
            role = "witness" if i >= self.size - self.witnesses else "node"
            node = SiteNode(fdir, f"q{i + 1}-{run}", "s1", self.lab, f"q{i + 1}", podman, role)
            self.nodes.append(node)
            self._stack.callback(node.cleanup)
            self._stack.callback(remove_node_containers, node.node_id)
        for node in self.nodes:
            node.cluster_peers = [n.route_url for n in self.nodes if n is not node]
        enroll_and_init(list(self.nodes))
        for node in self.nodes:
            if self.clocks and FAKETIME_LIB.exists():
                self.clock_file(node).write_text("+0\n")
                node.env |= {
                    "LD_PRELOAD": str(FAKETIME_LIB),
                    "FAKETIME_TIMESTAMP_FILE": str(self.clock_file(node)),
                    "FAKETIME_DONT_FAKE_MONOTONIC": "1",
                    "FAKETIME_CACHE_DURATION": "1",
                }
        for node in self.nodes:
            node.start(wait=False)
        for node in self.nodes:
            node.wait_ready()

    def _dump_logs(self) -> None:
        for n in self.nodes:
            sys.stderr.write(f"--- log of {n.node_id} ---\n{n.log()[-6000:]}\n")

    def close(self) -> None:
        self._stack.close()

    def node(self, name: str) -> SiteNode:
        return next(n for n in self.nodes if n.name == name)

    def cut(self, node: SiteNode) -> None:
        self.lab.cut(node.name)

    def heal(self, node: SiteNode) -> None:
        self.lab.heal(node.name)

    def power_off(self, node: SiteNode) -> None:
        """Daemon, nats-server and containers gone together."""
        pids = subprocess.run(
            ["ip", "netns", "pids", node.host.netns], capture_output=True, text=True, timeout=10
        ).stdout.split()
        subprocess.run(["kill", "-9", *pids], capture_output=True, check=False, timeout=10)
        if node.proc is not None:
            node.proc.wait(10)
        subprocess.run(
            ["podman", "rm", "-f", "-t", "0", "--filter", f"label={LABEL_NODE}={node.node_id}"],
            capture_output=True,
            check=False,
            timeout=60,
        )

    def clock_file(self, node: SiteNode) -> Path:
        return self.base / f"clock-{node.name}"

    def step_clock(self, node: SiteNode, seconds: int) -> None:
        """From the next second on, ``node``'s daemon reads wall time ``seconds`` off the
        true time (0: back to true time). Needs ``SiteLab(clocks=True)``."""
        assert "LD_PRELOAD" in node.env, "SiteLab(clocks=True) on a host with libfaketime"
        self.clock_file(node).write_text(f"{seconds:+d}\n")

    def power_on(self, node: SiteNode) -> None:
        node.start(wait=False)

    def kill_nats_server(self, node: SiteNode) -> None:
        """SIGKILL only the node's nats-server (its daemon restarts it)."""
        for pid in subprocess.run(
            ["ip", "netns", "pids", node.host.netns], capture_output=True, text=True, timeout=10
        ).stdout.split():
            with contextlib.suppress(OSError):
                if Path(f"/proc/{pid}/comm").read_text().strip() == "nats-server":
                    subprocess.run(["kill", "-9", pid], check=False, timeout=10)

    def meta_leader(self) -> str | None:
        """The JetStream meta leader's server name, as the first node that answers says."""
        for node in self.nodes:
            jsz = node.nats_monitor("/jsz") or {}
            meta = jsz.get("meta_cluster")
            if isinstance(meta, dict) and meta.get("leader"):
                return str(meta["leader"])
        return None

    def lease_stream(self, node: SiteNode) -> dict[str, Any] | None:
        """The lease bucket's stream as ``node``'s nats-server reports it (/jsz), or None."""
        jsz = node.nats_monitor("/jsz?accounts=true&streams=true") or {}
        for account in jsz.get("account_details") or []:  # type: ignore[attr-defined]
            for stream in account.get("stream_detail") or []:
                if str(stream.get("name", "")).startswith("KV_nr_site_"):
                    return dict(stream)
        return None

    def kv_leader(self) -> str | None:
        """The server leading the site's lease bucket (its stream), as the first node that
        answers says."""
        for node in self.nodes:
            leader = ((self.lease_stream(node) or {}).get("cluster") or {}).get("leader")
            if leader:
                return str(leader)
        return None

    def monitor(self, workload: str) -> InstanceMonitor:
        return InstanceMonitor(workload, self.nodes, self.podman)

    def apply(self, yaml_text: str, at: SiteNode | None = None) -> None:
        """Signed by the fleet's operator, as fleet changes at an enrolled node must be."""
        (at or self.nodes[0]).as_operator("apply", "-f", "-", input=yaml_text)


class _UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path: Path) -> None:
        super().__init__("localhost", timeout=20)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(20)
        self.sock.connect(str(self.path))


def running_on(workload: str, nodes: list[SiteNode], podman: Path) -> set[str]:
    """Node ids running an instance of ``workload`` now: Podman's own view (its REST API on
    the shared socket, ~10 ms a call), from outside every node."""
    ids = {n.node_id for n in nodes}
    filters = json.dumps({"label": [f"{LABEL_WORKLOAD}={workload}"], "status": ["running"]})
    conn = _UnixHTTP(podman)
    try:
        conn.request("GET", "/v4.0.0/libpod/containers/json?filters=" + quote(filters))
        body = conn.getresponse().read()
    finally:
        conn.close()
    found = set()
    for c in json.loads(body) or []:
        node = (c.get("Labels") or {}).get(LABEL_NODE)
        if node in ids:
            found.add(node)
    return found


class InstanceMonitor:
    """Samples who runs ``workload`` every ``interval_s``; keeps every sample and overlap."""

    def __init__(
        self,
        workload: str,
        nodes: list[SiteNode],
        podman: Path,
        interval_s: float = MONITOR_INTERVAL_S,
    ) -> None:
        self.workload, self.nodes, self.interval_s = workload, nodes, interval_s
        self.podman = podman
        self.samples: list[tuple[float, frozenset[str]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> InstanceMonitor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            with contextlib.suppress(OSError, ValueError, http.client.HTTPException):
                found = frozenset(running_on(self.workload, self.nodes, self.podman))
                self.samples.append((time.monotonic(), found))
            self._stop.wait(max(0.0, self.interval_s - (time.monotonic() - started)))

    @property
    def overlaps(self) -> list[tuple[float, frozenset[str]]]:
        return [(t, s) for t, s in self.samples if len(s) > 1]

    def last(self) -> frozenset[str]:
        return self.samples[-1][1] if self.samples else frozenset()

    def first_after(self, t: float, pred: object) -> float | None:
        """When, after ``t``, a sample first satisfied ``pred`` (a callable on the node set)."""
        assert callable(pred)
        return next((at for at, s in self.samples if at > t and pred(s)), None)
