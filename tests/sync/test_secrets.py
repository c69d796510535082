"""Fleet secrets over real daemons and Podman: a hub and two nodes (issue 13 §1).

One run covers the three promises: a secret is readable only in its target's container (the
other node shows Pending and holds only a box it cannot open), a second `secret set` rotates
the value and replaces the containers that use it, and the plaintext is nowhere on any node's
disk, logs, history, status, describe, events or backups.
"""

from __future__ import annotations

import gzip
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.integration.node_harness import podman, wait_for, workload_yaml
from tests.sync.fleet_harness import FleetNode, fleet_cli

pytestmark = [pytest.mark.slow, pytest.mark.podman, pytest.mark.usefixtures("busybox_image")]

TIMEOUT_S = 60.0
SECRETS = (
    "  secrets:\n"
    "  - {name: db, path: /run/secrets/db}\n"
    "  - {name: db, env: DB_PASSWORD}\n"
    "  stopTimeoutSeconds: 1\n"  # sleep as PID 1 ignores SIGTERM: rotation need not wait 10 s
)


@pytest.fixture
def fleet() -> Iterator[tuple[FleetNode, FleetNode, FleetNode]]:
    base = Path(tempfile.mkdtemp(prefix="nrs-", dir="/tmp"))
    run = uuid.uuid4().hex[:6]
    fdir = base / "fleet"
    fleet_cli("fleet", "init", "--dir", str(fdir), "--operator", "ops")
    hub = FleetNode(fdir, f"hub-{run}", "hq", role="hub", leaf=True)
    a = FleetNode(fdir, f"a-{run}", "s1", peers=[hub])
    b = FleetNode(fdir, f"b-{run}", "s1", peers=[hub])
    try:
        for n in (hub, a, b):
            n.enroll()
        with ThreadPoolExecutor(3) as pool:
            list(pool.map(FleetNode.init, (hub, a, b)))
        for n in (hub, a, b):
            n.start(wait=False)
        for n in (hub, a, b):
            n.wait_ready()
        yield hub, a, b
    finally:
        for n in (b, a, hub):
            n.cleanup()
        shutil.rmtree(base, ignore_errors=True)


def _container(node: FleetNode, workload: str) -> str:
    running = [
        c
        for c in node.containers()
        if c["Labels"].get("io.noderuntime.workload") == workload and c["State"] == "running"
    ]
    assert len(running) == 1, running
    return str(running[0]["Id"])


def _exec(cid: str, *cmd: str) -> str:
    return podman("exec", cid, *cmd).stdout


def _seen_by(hub: FleetNode, *nodes: FleetNode) -> bool:
    held = hub.call("secret.targets", {"name": "db", "nodes": [n.node_id for n in nodes]})
    return len(held["targets"]) == len(nodes) and all(t["sealKey"] for t in held["targets"])


def _everything_a_node_shows(node: FleetNode, tmp: Path) -> bytes:
    """Its data dir (not the tmpfs), log, and what the API serves the CLI and the TUI:
    history, status, get/describe, events, secret ls, the debug export; and a backup."""
    blobs = [node.log().encode()]
    for path in node.data_dir.rglob("*"):
        rel = path.relative_to(node.data_dir)
        if rel.parts[0] != "secrets.tmpfs" and path.is_file() and not path.is_socket():
            blobs.append(path.read_bytes())
    for method, params in (
        ("history.list", {}),
        ("node.status", {}),
        ("workloads.list", {}),
        ("workloads.get", {"name": "app"}),
        ("events.list", {}),
        ("secret.ls", {}),
    ):
        blobs.append(repr(node.call(method, params)).encode())
    blobs.append(repr(node.call("state.export")).encode())
    archive = tmp / f"{node.node_id}.tar.gz"
    node.cli("backup", "-o", str(archive), check=True)
    blobs.append(gzip.decompress(archive.read_bytes()))
    return b"\n".join(blobs)


def test_a_secret_reaches_only_its_target_rotates_and_never_touches_a_disk(
    fleet: tuple[FleetNode, FleetNode, FleetNode], tmp_path: Path
) -> None:
    hub, a, b = fleet
    first, second = f"first-{uuid.uuid4().hex}", f"second-{uuid.uuid4().hex}"
    wait_for(lambda: _seen_by(hub, a, b), timeout=TIMEOUT_S, what="node sealing keys at hub")

    hub.as_operator("secret", "set", "db", "--from-literal", first, "--node", a.node_id)
    yaml = workload_yaml("app", command=["sleep", "3600"], extra=SECRETS)
    hub.as_operator("apply", "-f", "-", input=yaml)

    a.wait_phase("app", "Running", timeout=TIMEOUT_S)
    cid = _container(a, "app")
    assert _exec(cid, "cat", "/run/secrets/db") == first
    assert _exec(cid, "stat", "-c", "%a", "/run/secrets/db").strip() == "400"
    assert f"DB_PASSWORD={first}" in _exec(cid, "cat", "/proc/1/environ")
    inspect = podman("inspect", cid).stdout
    assert first not in inspect  # not in Podman's container config (which lives on disk)

    # b is no target: it holds the box but cannot open it, and says why.
    pending = b.wait_phase("app", "Pending", timeout=TIMEOUT_S)
    assert f"not sealed for node {b.node_id}" in pending["message"]
    assert not [c for c in b.containers() if c["Labels"].get("io.noderuntime.workload") == "app"]

    # Rotation: a new value for both; a's container is replaced, b starts.
    hub.as_operator(
        "secret", "set", "db", "--from-literal", second, "--node", a.node_id, "--node", b.node_id
    )
    for node in (a, b):
        node.wait_phase("app", "Running", timeout=TIMEOUT_S)

        def rotated(node: FleetNode = node) -> bool:
            try:
                return _exec(_container(node, "app"), "cat", "/run/secrets/db") == second
            except (AssertionError, Exception):
                return False

        wait_for(rotated, timeout=TIMEOUT_S, what=f"rotated value at {node.node_id}")
    assert _container(a, "app") != cid

    rows: list[dict[str, Any]] = hub.json_cli("secret", "ls")
    assert [(r["name"], r["version"], sorted(r["nodes"])) for r in rows] == [
        ("db", 2, sorted([a.node_id, b.node_id]))
    ]
    for node in (hub, a, b):
        seen = _everything_a_node_shows(node, tmp_path)
        for value in (first, second):
            assert value.encode() not in seen, f"{value} found at {node.node_id}"
