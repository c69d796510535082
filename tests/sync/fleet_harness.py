"""Enrolled `noderuntime run` processes: a fleet directory, tokens, ports, and the debug export."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.integration.node_harness import CLI, NodeProcess
from tests.ports import free_port

FAST_CONFIG = {
    "reconcileIntervalSeconds": 2,
    "crashBackoffInitialSeconds": 0.5,
    "crashBackoffMaxSeconds": 8,
}


def fleet_cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=60)
    if check and r.returncode != 0:
        raise AssertionError(f"noderuntime {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}")
    return r


class FleetNode(NodeProcess):
    """A node enrolled with an offline token, its own nats-server on fixed free ports.

    ``leaf=True`` makes it accept leaf links on ``127.0.0.1:<leaf_port>``; ``peers`` are the
    nodes it dials. Call :meth:`enroll` (at the fleet), then ``init()`` and ``start()``.
    """

    def __init__(
        self,
        fleet_dir: Path,
        node_id: str,
        site: str,
        *,
        role: str = "node",
        leaf: bool = False,
        peers: list[FleetNode] | None = None,
    ) -> None:
        super().__init__(node_id=node_id, site=site, extra_config=dict(FAST_CONFIG))
        self.fleet_dir = fleet_dir
        self.role = role
        self.nats_port = free_port()
        self.leaf_port = free_port() if leaf else None
        self.peers = list(peers or [])
        self.token = self.data_dir.parent / f"{self.data_dir.name}.token"

    @property
    def leaf_url(self) -> str:
        assert self.leaf_port is not None
        return f"nats-leaf://127.0.0.1:{self.leaf_port}"

    def enroll(self) -> None:
        args = ["fleet", "enroll", self.node_id, "--site", self.site, "--role", self.role]
        args += ["--dir", str(self.fleet_dir), "-o", str(self.token), "--address", "127.0.0.1"]
        fleet_cli(*args)

    def init(self) -> None:
        args = ["init", "--node-id", self.node_id, "--site", self.site, "--role", self.role]
        args += ["--enroll", str(self.token), "--nats-port", str(self.nats_port)]
        if self.leaf_port is not None:
            args += ["--leaf-port", str(self.leaf_port), "--leaf-host", "127.0.0.1"]
        for peer in self.peers:
            args += ["--peer", peer.leaf_url]
        self.cli(*args, check=True)
        self.token.unlink(missing_ok=True)  # init deletes it (single use); older ones did not
        import yaml

        cfg_path = self.data_dir / "node.yaml"
        cfg = yaml.safe_load(cfg_path.read_text())
        cfg.update(self.extra_config)
        cfg_path.write_text(yaml.safe_dump(cfg))

    def cleanup(self) -> None:
        super().cleanup()
        self.token.unlink(missing_ok=True)
        self.log_path.unlink(missing_ok=True)

    # --- driving it --------------------------------------------------------------------------

    def as_operator(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        """A command signed by the fleet's operator (``--as FLEETDIR``), at this node."""
        return self.cli("--as", str(self.fleet_dir), *args, input=input, check=True)

    def export(self, *docs: str) -> dict[str, Any]:
        """The debug export of the held documents (all, or the ones named)."""
        return dict(self.call("state.export", {"docs": list(docs)} if docs else None))

    def json_cli(self, *args: str) -> Any:
        return json.loads(self.cli(*args, "-o", "json", check=True).stdout)

    @property
    def client_token(self) -> str:
        return (self.data_dir / "nats" / "client.token").read_text().strip()


def enroll_and_init(nodes: list[FleetNode]) -> None:
    """Enrol every node (one at a time: the fleet directory's serial file has no lock), then
    run every ``init`` at once: each is a Python start-up of its own on its own data dir."""
    from concurrent.futures import ThreadPoolExecutor

    for node in nodes:
        node.enroll()
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda n: n.init(), nodes))


@contextlib.contextmanager
def hub_and_node(operator: str = "ops") -> Iterator[tuple[FleetNode, FleetNode]]:
    """A fresh fleet, a hub, and a node at site s1 linked to it, both running; removed after."""
    base = Path(tempfile.mkdtemp(prefix="nrt-", dir="/tmp"))
    run = uuid.uuid4().hex[:6]  # node ids label containers: unique per run
    fdir = base / "fleet"
    fleet_cli("fleet", "init", "--dir", str(fdir), "--operator", operator)
    hub = FleetNode(fdir, f"hub-{run}", "hq", role="hub", leaf=True)
    node = FleetNode(fdir, f"n-{run}", "s1", peers=[hub])
    try:
        for n in (hub, node):
            n.enroll()
            n.init()
            n.start()
        yield hub, node
    finally:
        for n in (node, hub):
            n.cleanup()
        shutil.rmtree(base, ignore_errors=True)
