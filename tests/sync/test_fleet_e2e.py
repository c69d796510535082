"""A fleet of real `noderuntime run` processes: a hub and three nodes at a site, end to end.

Topology (leaf links must form a tree: nats-server breaks cycles, see docs/sync.md)::

    hub (site hq, leaf listener) <- n1 (leaf listener) <- n2
                                 <- n3
                                 <- n4 (joins late)

Killing the hub splits the fleet into {n1, n2} and {n3}: a change at n2 still reaches n1, and
n2 and n3 make conflicting edits of the same workload that must merge once the hub is back.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pycrdt import Doc, Map

from noderuntime.crdt.envelope import signing_input
from noderuntime.crdt.records import exported_record
from noderuntime.identity import keys as identity
from noderuntime.sync import protocol
from tests.integration.node_harness import podman, wait_for, workload_yaml
from tests.sync.fleet_harness import FleetNode, fleet_cli

pytestmark = [pytest.mark.slow, pytest.mark.podman, pytest.mark.usefixtures("busybox_image")]

SITE = "s1"
OPERATOR = "ann"
CONVERGE_S = 45.0


def env_yaml(name: str, mode: str) -> str:
    return workload_yaml(name, extra=f"  env: {{MODE: {mode}}}\n")


@contextlib.contextmanager
def fleet_dir() -> Iterator[Path]:
    base = Path(tempfile.mkdtemp(prefix="nrf-", dir="/tmp"))
    try:
        fleet_cli("fleet", "init", "--dir", str(base / "fleet"), "--operator", OPERATOR)
        yield base / "fleet"
    finally:
        shutil.rmtree(base, ignore_errors=True)


def running(node: FleetNode, workload: str) -> list[dict[str, Any]]:
    """Running containers of ``workload`` on ``node``, from `podman ps` and their labels."""
    r = podman(
        "ps",
        "--format",
        "json",
        "--filter",
        f"label=io.noderuntime.node={node.node_id}",
        "--filter",
        f"label=io.noderuntime.workload={workload}",
    )
    return [c for c in json.loads(r.stdout or "[]") if c.get("State") == "running"]


def wait_running(node: FleetNode, workload: str, spec_hash: str | None = None) -> dict[str, Any]:
    """Wait until ``workload`` runs on ``node`` (with ``spec_hash``, if given); its view."""

    def probe() -> dict[str, Any] | None:
        w = node.workloads().get(workload)
        if not w or w["phase"] != "Running" or w["observed_spec_hash"] != w["spec_hash"]:
            return None
        if spec_hash is not None and w["spec_hash"] != spec_hash:
            return None
        containers = running(node, workload)
        hashes = {c["Labels"].get("io.noderuntime.spec-hash") for c in containers}
        return w if hashes == {w["spec_hash"]} else None

    try:
        return wait_for(probe, timeout=CONVERGE_S, what=f"{workload} running on {node.node_id}")
    except AssertionError as exc:
        raise AssertionError(
            f"{exc}\n--- log of {node.node_id} ---\n{node.log()[-4000:]}"
        ) from None


def shared_docs(nodes: list[FleetNode]) -> list[dict[str, Any]]:
    """The fleet and site docs of each node (a hub holds an empty site doc only once it
    changes: nothing writes site docs yet, so an absent one counts as empty)."""
    out = []
    for n in nodes:
        e = n.export("fleet", f"site/{SITE}")
        out.append({"fleet": e.get("fleet", {}), "site": e.get(f"site/{SITE}", {})})
    return out


def converged(nodes: list[FleetNode], hub: FleetNode) -> bool:
    """Identical fleet and site docs everywhere; each node's own doc identical at the hub."""
    exports = shared_docs(nodes)
    if not exports[0].get("fleet") or any(e != exports[0] for e in exports[1:]):
        return False
    hub_docs = hub.export()
    return all(
        hub_docs.get(f"node/{n.node_id}") == n.export(f"node/{n.node_id}")[f"node/{n.node_id}"]
        for n in nodes
        if n is not hub
    )


def rejections(node: FleetNode) -> dict[str, int]:
    return dict(node.status()["sync"]["rejections"])


def forged_updates(fleet_id: str) -> list[bytes]:
    """UPDATES messages for the fleet doc: an unknown author, and the operator's name with
    the wrong key. Both would add a workload if a node believed them."""
    doc = Doc()
    doc.get("workloads", type=Map)["evil"] = json.dumps({"metadata": {"name": "evil"}})
    data = doc.get_update()
    meta = '{"summary":"forged"}'
    mallory = identity.generate("operator:mallory")
    sig = mallory.sign(signing_input("fleet", data, meta))
    return [
        protocol.encode_updates(
            "n9", "fleet", [protocol.WireUpdate(author, sig, time.time(), meta, data)]
        )
        for author in ("operator:mallory", f"operator:{OPERATOR}")
    ]


async def publish_locally(node: FleetNode, subject: str, messages: list[bytes]) -> None:
    import nats

    nc = await nats.connect(f"nats://127.0.0.1:{node.nats_port}", token=node.client_token)
    try:
        for m in messages:
            await nc.publish(subject, m)
        await nc.flush()
    finally:
        await nc.close()


def test_fleet_of_real_nodes_converges_through_a_hub_outage() -> None:
    with fleet_dir() as fdir:
        run = uuid.uuid4().hex[:6]  # node ids label containers: unique per run
        hub = FleetNode(fdir, f"hub-{run}", "hq", role="hub", leaf=True)
        n1 = FleetNode(fdir, f"n1-{run}", SITE, leaf=True, peers=[hub])
        n2 = FleetNode(fdir, f"n2-{run}", SITE, peers=[n1])
        n3 = FleetNode(fdir, f"n3-{run}", SITE, peers=[hub])
        nodes = [hub, n1, n2, n3]
        members = [n1, n2, n3]
        late: FleetNode | None = None
        try:
            for n in nodes:
                n.enroll()
                n.init()
            for n in nodes:
                n.start(wait=False)
            for n in nodes:
                n.wait_ready()

            # Everyone hears everyone (heartbeats cross the tree).
            def hub_sees_all() -> bool:
                seen = {n["node"]: n for n in hub.json_cli("get", "nodes")}
                return all(seen.get(m.node_id, {}).get("up") for m in members)

            wait_for(hub_sees_all, timeout=CONVERGE_S, what="hub hears n1..n3")

            # a. A workload applied at the hub runs on every node.
            hub.as_operator("apply", "-f", "-", input=env_yaml("w", "one"))
            first = {m.node_id: wait_running(m, "w") for m in members}
            assert len({w["spec_hash"] for w in first.values()}) == 1
            assert {w["spec"]["spec"]["env"]["MODE"] for w in first.values()} == {"one"}

            # b. The hub dies. {n1, n2} still talk; n3 is alone.
            hub.kill9()
            n1.cli("stop", "w", check=True)  # node-local override (node/n1)
            n2.as_operator("apply", "-f", "-", input=env_yaml("w", "two"))
            n3.as_operator("apply", "-f", "-", input=env_yaml("w", "three"))

            def mode(node: FleetNode) -> str:
                """MODE in the node's desired state (what its reconciler works from)."""
                return str(node.workloads()["w"]["spec"]["spec"]["env"]["MODE"])

            def stored_mode(node: FleetNode) -> str:
                """MODE in the node's fleet doc."""
                stored = exported_record(node.export("fleet")["fleet"], "workloads", "w")
                return str(stored["spec"]["env"]["MODE"])

            wait_for(lambda: mode(n1) == "two", timeout=CONVERGE_S, what="n2's change at n1")
            assert stored_mode(n3) == "three"  # partitioned: nothing reached it
            wait_for(lambda: not running(n1, "w"), timeout=CONVERGE_S, what="w stops on n1")

            # The hub comes back (same ports) and an operator applies another workload there.
            hub.start()
            hub.as_operator("apply", "-f", "-", input=workload_yaml("w2"))

            try:
                wait_for(lambda: converged(nodes, hub), timeout=CONVERGE_S, what="convergence")
            except AssertionError:
                raise AssertionError(
                    "not converged:\n"
                    + "\n".join(json.dumps(e, sort_keys=True) for e in shared_docs(nodes))
                ) from None
            winner = stored_mode(hub)
            assert winner in ("two", "three")  # one of the concurrent edits, the same everywhere
            # Each reconciler picks the merged spec up on its next pass.
            wait_for(
                lambda: all(mode(n) == winner for n in nodes),
                timeout=CONVERGE_S,
                what=f"MODE={winner} in every node's desired state",
            )
            final = {m.node_id: wait_running(m, "w") for m in (n2, n3)}
            assert len({w["spec_hash"] for w in final.values()}) == 1
            for m in members:
                wait_running(m, "w2")
            # n1's override survived the merge and reached the hub; n1 keeps w stopped.
            n1_doc = f"node/{n1.node_id}"
            assert exported_record(hub.export(n1_doc)[n1_doc], "overrides", "w/enabled") is False
            assert n1.workloads()["w"]["enabled"] is False and not running(n1, "w")

            # c. Links, nodes with last-seen, and the sync section of status.
            peers = hub.json_cli("peers")
            inbound = {link["remote_name"] for link in peers["links"] if link["up"]}
            assert {n1.node_id, n3.node_id} <= inbound
            (out,) = [link for link in n2.json_cli("peers")["links"]]
            assert out["direction"] == "outbound" and out["up"] and out["remote_name"] == n1.node_id
            assert out["since"] and out["peer"] == n1.leaf_url

            def n2_knows_all() -> list[dict[str, Any]] | None:
                listed = {n["node"]: n for n in n2.json_cli("get", "nodes")}
                others = [listed.get(x.node_id) for x in (hub, n1, n3)]
                ok = all(o and o["up"] and o["last_seen"] for o in others)
                return [o for o in others if o] if ok else None

            listed = wait_for(n2_knows_all, timeout=CONVERGE_S, what="n2 lists hub, n1, n3 up")
            assert {o["site"] for o in listed} == {"hq", SITE}
            sync = n3.status()["sync"]
            assert sync["enabled"] and sync["connected"] and sync["peers_up"] >= 3
            assert isinstance(sync["rejections"], dict)
            fleet_id = sync["fleet"]

            # d. Forged updates published on n3's own nats-server: refused everywhere.
            import asyncio

            before = {n.node_id: rejections(n) for n in nodes}
            asyncio.run(
                publish_locally(
                    n3, protocol.update_subject(fleet_id, "fleet"), forged_updates(fleet_id)
                )
            )

            def refused(node: FleetNode) -> bool:
                now, was = rejections(node), before[node.node_id]
                return all(
                    now.get(c, 0) > was.get(c, 0) for c in ("unknown_author", "bad_signature")
                )

            for n in nodes:
                wait_for(
                    lambda n=n: refused(n), timeout=CONVERGE_S, what=f"rejection at {n.node_id}"
                )
                assert "evil" not in n.workloads()
            status = n3.status()
            assert status["sync"]["connected"] and status["podman"]["connected"]
            assert n3.client_token not in json.dumps(status)  # the local token stays secret
            wait_running(n3, "w")

            # e. A node enrolled after all this catches up and runs the workloads.
            late = FleetNode(fdir, f"n4-{run}", SITE, peers=[hub])
            late.enroll()
            late.init()
            late.start()
            wait_running(late, "w", spec_hash=final[n2.node_id]["spec_hash"])
            wait_running(late, "w2")
            wait_for(
                lambda: converged([*nodes, late], hub), timeout=CONVERGE_S, what="n4 caught up"
            )
        except BaseException:
            for n in [*nodes, *([late] if late else [])]:
                sys.stderr.write(f"--- log of {n.node_id} ---\n{n.log()[-3000:]}\n")
            raise
        finally:
            for n in [*nodes, *([late] if late else [])]:
                n.cleanup()
