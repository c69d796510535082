"""Revocation over real daemons (issue 13 §2): `noderuntime revoke` at one node takes effect at
every node, the revoked node's leaf link is refused at TLS, and the revoked node says so.

One test, three daemons without workloads (~25-45 s on a loaded 2-core machine, most of it
starting processes)."""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from noderuntime.crdt.envelope import signing_input
from noderuntime.identity import keys as identity
from noderuntime.sync import protocol
from tests.integration.node_harness import wait_for
from tests.sync.fleet_harness import FleetNode, fleet_cli
from tests.sync.test_fleet_e2e import publish_locally, rejections


def signed_by(node: FleetNode, fleet_id: str) -> bytes:
    """An UPDATES message of the fleet document signed with ``node``'s own key."""
    key = identity.load_key(node.data_dir / "identity.key", f"node:{node.node_id}")
    data, meta = b"\x00\x00", "{}"
    sig = key.sign(signing_input("fleet", data, meta))
    wire = protocol.WireUpdate(f"node:{node.node_id}", sig, time.time(), meta, data)
    return protocol.encode_updates(node.node_id, "fleet", [wire])


def inbound_up(hub: FleetNode, node: FleetNode) -> bool:
    links = hub.call("sync.peers")["links"]
    return any(
        link.get("direction") == "inbound" and link.get("remote_name") == node.node_id
        for link in links
        if link.get("up")
    )


def answers(node: FleetNode) -> bool:
    """The node's control API answers (its Podman need not be up: no workloads here)."""
    return node.cli("status", "-o", "json").returncode == 0


def test_a_revoked_node_is_refused_everywhere_and_knows_it() -> None:
    base = Path(tempfile.mkdtemp(prefix="nrt-", dir="/tmp"))
    run = uuid.uuid4().hex[:6]
    fdir = base / "fleet"
    fleet_cli("fleet", "init", "--dir", str(fdir), "--operator", "ops")
    fleet_id = json.loads((fdir / "fleet.json").read_text())["fleetId"]
    hub = FleetNode(fdir, f"hub-{run}", "hq", role="hub", leaf=True)
    a = FleetNode(fdir, f"a-{run}", "s1", peers=[hub])
    b = FleetNode(fdir, f"b-{run}", "s1", peers=[hub])
    nodes = [hub, a, b]
    try:
        for n in nodes:
            n.enroll()  # one at a time: the fleet directory counts serials
        with ThreadPoolExecutor(len(nodes)) as pool:
            list(pool.map(lambda n: (n.init(), n.start(wait=False)), nodes))
        for n in nodes:
            wait_for(lambda n=n: answers(n), timeout=60, what=f"{n.node_id} answering")
        wait_for(lambda: inbound_up(hub, a) and inbound_up(hub, b), what="both links up")
        a.as_operator("revoke", f"node:{b.node_id}", "--reason", "stolen")

        # Every node refuses what b's key signs now, counted as `revoked`.
        for n in (hub, a):

            def refused(n: FleetNode = n) -> bool:
                asyncio.run(publish_locally(n, f"nr.{fleet_id}.u.fleet", [signed_by(b, fleet_id)]))
                return rejections(n).get("revoked", 0) > 0

            wait_for(refused, timeout=30, what=f"{n.node_id} refusing b's key as revoked")
        # b's leaf link is closed and its certificate refused at TLS.
        wait_for(lambda: not inbound_up(hub, b), timeout=30, what="b's link closed")
        wait_for(lambda: "certificate not pinned" in hub.log(), timeout=30, what="TLS refusal")
        wait_for(lambda: inbound_up(hub, a), what="a linked again after the hub's restart")

        # b learnt it before its link closed (the hub forwarded the update as it relayed it):
        # it says so; the file it keeps says so after a restart too (tests/unit/test_revocation).
        revoked = wait_for(lambda: b.status()["sync"].get("revoked"), what="b says revoked")
        assert revoked["principal"] == f"node:{b.node_id}" and revoked["reason"] == "stolen"
    finally:
        for n in reversed(nodes):
            n.cleanup()
        shutil.rmtree(base, ignore_errors=True)
