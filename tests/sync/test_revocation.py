"""Revocation and rotation over real daemons (issue 13 §2): `noderuntime revoke` at one node
takes effect at every node, the revoked node's leaf link is refused at TLS, and the revoked node
says so; `noderuntime rekey` rotates a node's key online, and its old key is refused after the
grace period.

Two tests, daemons without workloads (~25-45 s each on a loaded 2-core machine, most of it
starting processes)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from noderuntime.crdt.envelope import signing_input
from noderuntime.identity import keys as identity
from noderuntime.sync import protocol
from tests.integration.node_harness import wait_for
from tests.sync.fleet_harness import FleetNode, fleet_cli
from tests.sync.test_fleet_e2e import publish_locally, rejections


def signed_by(node: FleetNode, fleet_id: str, key: identity.Identity | None = None) -> bytes:
    """An UPDATES message of the fleet document signed with ``node``'s own key."""
    key = key or identity.load_key(node.data_dir / "identity.key", f"node:{node.node_id}")
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


@contextlib.contextmanager
def fleet(*names: str) -> Iterator[tuple[str, Path, list[FleetNode]]]:
    """A fresh fleet (id, directory), a hub and nodes at site s1 linked to it, all answering;
    removed after."""
    base = Path(tempfile.mkdtemp(prefix="nrt-", dir="/tmp"))
    run = uuid.uuid4().hex[:6]
    fdir = base / "fleet"
    fleet_cli("fleet", "init", "--dir", str(fdir), "--operator", "ops")
    fleet_id = json.loads((fdir / "fleet.json").read_text())["fleetId"]
    hub = FleetNode(fdir, f"hub-{run}", "hq", role="hub", leaf=True)
    nodes = [hub, *(FleetNode(fdir, f"{name}-{run}", "s1", peers=[hub]) for name in names)]
    try:
        for n in nodes:
            n.enroll()  # one at a time: the fleet directory counts serials
        with ThreadPoolExecutor(len(nodes)) as pool:
            list(pool.map(lambda n: (n.init(), n.start(wait=False)), nodes))
        for n in nodes:
            wait_for(lambda n=n: answers(n), timeout=60, what=f"{n.node_id} answering")
        wait_for(lambda: all(inbound_up(hub, n) for n in nodes[1:]), what="links up")
        yield fleet_id, fdir, nodes
    finally:
        for n in reversed(nodes):
            n.cleanup()
        shutil.rmtree(base, ignore_errors=True)


def test_a_revoked_node_is_refused_everywhere_and_knows_it() -> None:
    with fleet("a", "b") as (fleet_id, _, (hub, a, b)):
        a.as_operator("revoke", f"node:{b.node_id}", "--reason", "stolen")

        # Every node refuses what b's key signs now, counted as `revoked`.
        for n in (hub, a):

            def refused(n: FleetNode = n) -> bool:
                message = signed_by(b, fleet_id)
                asyncio.run(publish_locally(n, f"nr.{fleet_id}.u.fleet", [message]))
                return rejections(n).get("revoked", 0) > 0

            wait_for(refused, timeout=30, what=f"{n.node_id} refusing b's key as revoked")
        # b's leaf link is closed and its certificate refused at TLS.
        wait_for(lambda: not inbound_up(hub, b), timeout=30, what="b's link closed")
        wait_for(lambda: "certificate not pinned" in hub.log(), timeout=30, what="TLS refusal")
        wait_for(lambda: inbound_up(hub, a), what="a linked again after the hub's restart")

        # b learnt it before its link closed (the hub forwarded the update as it relayed
        # it): it says so, after a restart too (the file it keeps: tests/unit/test_revocation).
        revoked = wait_for(lambda: b.status()["sync"].get("revoked"), what="b says revoked")
        assert revoked["principal"] == f"node:{b.node_id}" and revoked["reason"] == "stolen"


def test_rekey_rotates_a_nodes_key_online_and_retires_the_old_one() -> None:
    with fleet("n") as (fleet_id, _, (hub, n)):
        old = identity.load_key(n.data_dir / "identity.key", f"node:{n.node_id}")
        started = n.status()["node"]["started_at"]
        n.cli("rekey", check=True)
        wait_for(lambda: hub.call("rekey.pending", {"node": n.node_id}), what="request at hub")
        hub.as_operator("rekey", "--issue", n.node_id, "--grace", "0s")

        # The node installs its new key and restarts in place (same command, same pid).
        def restarted() -> bool:
            return bool(answers(n) and n.status()["node"]["started_at"] != started)

        wait_for(restarted, timeout=60, what="n restarted with its new key")
        new = identity.load_key(n.data_dir / "identity.key", f"node:{n.node_id}")
        assert new.key_id != old.key_id
        # The hub hears it under the new key, and refuses the old one (grace 0).
        since = time.time() + 2  # the hub applies the retirement as it ingests it

        def heard() -> bool:
            peers = hub.call("sync.peers")["peers"]
            return any(p["node"] == n.node_id and p["last_heard"] > since for p in peers)

        wait_for(heard, timeout=30, what="n heard under its new key")

        def old_refused() -> bool:
            asyncio.run(
                publish_locally(hub, f"nr.{fleet_id}.u.fleet", [signed_by(n, fleet_id, old)])
            )
            return rejections(hub).get("revoked", 0) > 0

        wait_for(old_refused, timeout=30, what="the old key refused")
