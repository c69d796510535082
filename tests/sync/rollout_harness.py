"""A fleet of real daemons for rollout tests and bench/rollout.py: hubs and nodes at sites.

Leaf links form a tree (docs/sync.md): the first hub listens; every other member dials it,
unless ``center`` names a plain node that listens instead (so a hub can be killed while the
others stay linked through that node).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.integration.node_harness import podman, wait_for, workload_yaml
from tests.sync.fleet_harness import FleetNode, enroll_and_init, fleet_cli

OPERATOR = "ann"


def version_yaml(name: str, version: str, *, failing: bool = False) -> str:
    """A workload whose env names its version; ``failing``: it exits 3 at once, every time."""
    command = ["sh", "-c", "exit 3"] if failing else ["sleep", "3600"]
    return workload_yaml(name, command=command, extra=f"  env: {{VERSION: {version}}}\n")


@dataclass
class Fleet:
    dir: Path
    hubs: list[FleetNode]
    nodes: list[FleetNode]
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def hub(self) -> FleetNode:
        return self.hubs[0]

    @property
    def members(self) -> list[FleetNode]:
        return [*self.hubs, *self.nodes]

    def by_site(self, site: str) -> list[FleetNode]:
        return [n for n in self.nodes if n.site == site]

    def operator(self, at: FleetNode, *args: str, input: str | None = None) -> Any:
        return at.cli("--as", str(self.dir), *args, check=True, input=input)


def status(at: FleetNode, name: str) -> dict[str, Any]:
    """``rollout status -o json`` (through the API: polling the CLI costs a process each)."""
    return dict(at.call("rollout.status", {"name": name}))


ENDED_STATES = ("RolledBack", "Aborted", "Complete")


class EndedElsewhere(Exception):
    """The rollout ended in another state than the one waited for."""


def wait_state(
    at: FleetNode, name: str, state: str, timeout: float = 120, also: tuple[FleetNode, ...] = ()
) -> dict[str, Any]:
    """Until the rollout is in ``state`` at ``at``; on failure the logs of ``at`` and ``also``."""
    seen: list[dict[str, Any]] = []

    def probe() -> dict[str, Any] | None:
        s = status(at, name)
        seen[:] = [s]
        if s["state"] in ENDED_STATES and s["state"] != state:  # it will not change again
            raise EndedElsewhere(s["state"])
        return s if s["state"] == state else None

    try:
        return wait_for(
            probe,
            timeout=timeout,
            what=f"rollout of {name} {state} at {at.node_id}",
            raises=EndedElsewhere,
        )
    except (
        AssertionError,
        EndedElsewhere,
    ) as exc:  # say where it stood, and what the driver logged
        last = json.dumps(seen[0], indent=1, default=str)[-4000:] if seen else "no status read"
        logs = "".join(f"\n--- {n.node_id} ---\n{n.log()[-4000:]}" for n in (at, *also))
        raise AssertionError(f"{exc}\n--- last status ---\n{last}{logs}") from None


def runs(node: FleetNode, name: str) -> str | None:
    """The spec hash ``node`` runs ``name`` with (Running and converged), else None."""
    w = next((w for w in node.call("workloads.list") if w["name"] == name), None)
    if not w or w["phase"] != "Running" or w.get("observed_spec_hash") != w["spec_hash"]:
        return None
    return str(w["spec_hash"])


def wait_runs(node: FleetNode, name: str, spec_hash: str, timeout: float = 90) -> None:
    try:
        wait_for(
            lambda: runs(node, name) == spec_hash,
            timeout=timeout,
            what=f"{name} running {spec_hash} on {node.node_id}",
        )
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- {node.node_id} ---\n{node.log()[-3000:]}") from None


def hashes_created(node: FleetNode, name: str, since: float) -> set[str]:
    """Spec hashes of every container Podman created for ``name`` on ``node`` since then."""
    r = podman(
        "events",
        "--stream=false",
        "--since",
        str(int(since) - 1),
        "--filter",
        "event=create",
        "--filter",
        f"label=io.noderuntime.node={node.node_id}",
        "--format",
        "{{json .}}",
    )
    out = set()
    for line in r.stdout.splitlines():
        attrs = json.loads(line).get("Attributes", {})
        if attrs.get("io.noderuntime.workload") == name:
            out.add(attrs.get("io.noderuntime.spec-hash"))
    return out


def remove_containers(nodes: list[FleetNode]) -> None:
    for n in nodes:
        ids = podman(
            "ps", "-aq", "--filter", f"label=io.noderuntime.node={n.node_id}", check=False
        ).stdout.split()
        if ids:
            podman("rm", "-f", *ids, check=False)


@contextlib.contextmanager
def fleet(
    sites: dict[str, int],
    *,
    hubs: int = 1,
    center: str | None = None,
    extra_config: dict[str, Any] | None = None,
    ready_timeout: float = 60,
) -> Iterator[Fleet]:
    """``sites``: site -> number of plain nodes. ``center``: a site whose first node listens
    and every other member dials (else the first hub listens)."""
    base = Path(tempfile.mkdtemp(prefix="nrr-", dir="/tmp"))
    run = uuid.uuid4().hex[:5]
    fdir = base / "fleet"
    fleet_cli("fleet", "init", "--dir", str(fdir), "--operator", OPERATOR)
    plain: list[FleetNode] = []
    hub_nodes: list[FleetNode] = []
    hub_nodes.append(FleetNode(fdir, f"hub{run}a", "hq", role="hub", leaf=center is None))
    root = hub_nodes[0]
    if center is not None:
        root = FleetNode(fdir, f"{center}{run}0", center, leaf=True)
        plain.append(root)
    for i in range(1, hubs):
        hub_nodes.append(FleetNode(fdir, f"hub{run}{chr(97 + i)}", "hq", role="hub"))
    for site, count in sites.items():
        for i in range(count):
            if site == center and i == 0:
                continue
            plain.append(FleetNode(fdir, f"{site}{run}{i}", site))
    members = [*hub_nodes, *plain]
    for m in members:
        if m is not root:
            m.peers = [root]
        if extra_config:
            m.extra_config.update(extra_config)
    ordered = [root, *[m for m in members if m is not root]]
    try:
        enroll_and_init(ordered)
        for m in ordered:
            m.start(wait=False)
        for m in ordered:
            m.wait_ready(timeout=ready_timeout)
        yield Fleet(fdir, hub_nodes, plain)
    finally:
        for m in reversed(ordered):
            m.cleanup()
        remove_containers(ordered)
        shutil.rmtree(base, ignore_errors=True)


def wait_known(f: Fleet, at: FleetNode, timeout: float = 90) -> None:
    """Until ``at`` holds every member's node document (with its site)."""
    want = {m.node_id for m in f.members}

    def probe() -> bool:
        docs = at.export()
        have = {n.partition("/")[2] for n, d in docs.items() if n.startswith("node/") and d}
        return want <= have

    wait_for(probe, timeout=timeout, what=f"{at.node_id} holding every node's document")


def now() -> float:
    return time.time()
