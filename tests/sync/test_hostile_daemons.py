"""Findings of the attack trial (issue 10), each over real `noderuntime run` processes.

Every node here runs its own nats-server and Podman service, enrolled from a fleet directory the
way an operator does it; the attacks use only what an attacker would have: a token, a node's
key, the bus.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
from pycrdt import Doc, Map

from noderuntime.crdt.envelope import signing_input
from noderuntime.identity import keys as identity
from noderuntime.sync import protocol
from noderuntime.sync.instances import START_TIE_S
from tests.integration.node_harness import podman, wait_for, workload_yaml
from tests.sync.fleet_harness import FleetNode, fleet_cli

pytestmark = [pytest.mark.slow, pytest.mark.podman]


@contextlib.contextmanager
def fleet() -> Iterator[tuple[Path, str]]:
    base = Path(tempfile.mkdtemp(prefix="nrh-", dir="/tmp"))
    try:
        fleet_cli("fleet", "init", "--dir", str(base / "fleet"), "--operator", "ops")
        yield base / "fleet", uuid.uuid4().hex[:6]
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_a_token_used_twice_makes_a_clone_that_is_noticed_and_silenced() -> None:
    with fleet() as (fdir, run), contextlib.ExitStack() as stack:
        hub = FleetNode(fdir, f"hub-{run}", "hq", role="hub", leaf=True)
        node = FleetNode(fdir, f"n-{run}", "s1", peers=[hub])
        clone = FleetNode(fdir, node.node_id, "s1", peers=[hub])
        for n in (clone, node, hub):
            stack.callback(n.cleanup)
        hub.enroll()
        node.enroll()
        shutil.copy(node.token, clone.token)  # a copy of the token goes to a second machine
        for n in (hub, node):
            n.init()
            n.start()
        started = time.monotonic()
        wait_for(lambda: hub.status()["sync"]["peers_up"] == 1, timeout=60, what="node up")
        clone.init()
        # Two instances started within START_TIE_S are told apart by id, not by age: the
        # clone must start clearly later to be the newcomer (a faster harness started it
        # 1.6 s after the original, and the original was suspended, as the rule says).
        time.sleep(max(0.0, started + START_TIE_S + 1.0 - time.monotonic()))
        clone.start()
        newcomer = clone.status()["sync"]["instance"]

        def noticed() -> bool:
            hub_clones = hub.status()["sync"]["clones"]
            own = node.status()["sync"]
            return (
                [c["newcomer"] for c in hub_clones] == [newcomer]
                and [c["newcomer"] for c in own["clones"]] == [newcomer]
                and own["suspended"] is None
                and clone.status()["sync"]["suspended"] is not None
            )

        wait_for(noticed, timeout=60, what="the clone noticed at the hub and at both")
        assert "two live instances of node" in hub.log()
        assert "CLONED NODE" in hub.cli("status", check=True).stdout
        doctor = hub.cli("doctor")
        assert doctor.returncode == 1 and "an enrolment used twice" in doctor.stdout
        assert "SYNC SUSPENDED" in clone.cli("status", check=True).stdout
        # The operator keeps the original: the clone is stopped; the hub hears the original.
        clone.stop()
        original = node.status()["sync"]["instance"]
        wait_for(
            lambda: (
                hub.call("sync.peers")["peers"][0]["up"]
                and not hub.status()["sync"]["clones"][0]["live"]
            ),
            timeout=30,
            what="one instance left",
        )
        assert original != newcomer


def stored_doc(node: FleetNode, doc: str) -> Doc[Any]:
    """``doc`` as ``node`` stores it (its update log is never truncated), read beside it."""
    d: Doc[Any] = Doc()
    db = sqlite3.connect(f"file:{node.data_dir / 'state.db'}?mode=ro", uri=True)
    try:
        for (data,) in db.execute("SELECT data FROM updates WHERE doc = ? ORDER BY seq", (doc,)):
            d.apply_update(data)
    finally:
        db.close()
    return d


def sign_as(node: FleetNode, doc: str, mutate: Callable[[Doc[Any]], None]) -> bytes:
    """An UPDATES message for ``doc`` made on top of what ``node`` stores and validly signed
    with its own key: what a stolen appliance can send (it wins every key it sets)."""
    d = stored_doc(node, doc)
    before = d.get_state()
    with d.transaction():
        mutate(d)
    data = d.get_update(before)
    meta = '{"summary":"poison"}'
    key = identity.load_key(node.data_dir / "identity.key", f"node:{node.node_id}")
    sig = key.sign(signing_input(doc, data, meta))
    update = protocol.WireUpdate(key.name, sig, time.time(), meta, data)
    return protocol.encode_updates("mallory", doc, [update])


async def publish_at(node: FleetNode, subject: str, *messages: bytes) -> None:
    nc = await nats.connect(f"nats://127.0.0.1:{node.nats_port}", token=node.client_token)
    try:
        for m in messages:
            await nc.publish(subject, m)
        await nc.flush()
    finally:
        await nc.close()


def quarantined(node: FleetNode) -> list[dict[str, str]]:
    return list(node.call("node.status")["store"].get("quarantined", []))


def answers(node: FleetNode) -> bool:
    """The views a technician uses all answer."""
    return all(
        node.cli(*cmd, "-o", "json").returncode == 0
        for cmd in (("status",), ("get", "workloads"), ("get", "nodes"))
    )


POISON = "[" * 3000


def test_a_poison_value_signed_by_a_site_node_stops_nothing_and_an_operator_removes_it(
    busybox_image: str,
) -> None:
    with fleet() as (fdir, run), contextlib.ExitStack() as stack:
        hub = FleetNode(fdir, f"hub-{run}", "hq", role="hub", leaf=True)
        n1 = FleetNode(fdir, f"n1-{run}", "s1", peers=[hub])
        n2 = FleetNode(fdir, f"n2-{run}", "s1", peers=[hub])
        nodes = [hub, n1, n2]
        for n in nodes:
            stack.callback(n.cleanup)
            n.enroll()
            n.init()
            n.start()
        specs = "---\n".join(workload_yaml(w) for w in ("w1", "w2"))
        hub.as_operator("apply", "-f", "-", input=specs)
        for n in (n1, n2):
            for w in ("w1", "w2"):
                n.wait_phase(w, "Running", timeout=120)
        fleet_id = hub.status()["sync"]["fleet"]

        # n1's key signs a site override whose value no reader can decode, and the same in
        # its own node document (status and node facts), which the hub holds.
        def poison_site(d: Doc[Any]) -> None:
            d.get("overrides", type=Map)["w1/image"] = POISON

        def poison_node(d: Doc[Any]) -> None:
            d.get("status", type=Map)["w1"] = POISON
            d.get("info", type=Map)["node"] = POISON

        asyncio.run(
            publish_at(
                n1,
                protocol.update_subject(fleet_id, "site.s1"),
                sign_as(n1, "site/s1", poison_site),
            )
        )
        node_doc = f"node/{n1.node_id}"
        asyncio.run(
            publish_at(
                n1,
                protocol.update_subject(fleet_id, f"node.s1.{n1.node_id}"),
                sign_as(n1, node_doc, poison_node),
            )
        )
        bad = {"doc": "site/s1", "map": "overrides", "key": "w1/image"}

        def reported(n: FleetNode) -> bool:
            return any({k: q[k] for k in bad} == bad for q in quarantined(n))

        for n in nodes:
            wait_for(
                lambda n=n: reported(n), timeout=30, what=f"the record set aside at {n.node_id}"
            )
            assert answers(n), n.node_id
        assert "QUARANTINED" in n2.cli("status", check=True).stdout
        # n1's status record heals itself (the node writes it again); its node facts stay
        # set aside until it restarts, at n1 and at the hub, which holds n1's document.
        facts = {"doc": node_doc, "map": "info", "key": "node"}
        for n in (hub, n1):
            wait_for(
                lambda n=n: any({k: q[k] for k in facts} == facts for q in quarantined(n)),
                timeout=30,
                what=f"n1's facts set aside at {n.node_id}",
            )
        doctor = hub.cli("doctor")
        assert doctor.returncode == 1 and "record rm site/s1 overrides" in doctor.stdout
        # Every other record goes on: a stopped container of another workload is restarted.
        (w2,) = [c for c in n2.containers() if c["Labels"]["io.noderuntime.workload"] == "w2"]
        podman("stop", "-t", "0", w2["Id"])
        n2.wait_phase("w2", "Running", timeout=60, restarts=1)
        assert n2.workloads()["w1"]["phase"] == "Running"
        # The hub reads n1's document after a restart too.
        hub.stop()
        hub.start()
        assert answers(hub) and reported(hub)
        nodes_view = {v["node"]: v for v in hub.json_cli("get", "nodes")}
        assert n1.node_id in nodes_view and n2.node_id in nodes_view

        # An operator removes the bad records: the site's from the CLI at any node, signed as
        # the operator; n1's own document is written by n1 (or an operator).
        start = time.monotonic()
        n2.as_operator("record", "rm", "site/s1", "overrides", "w1/image")
        removed = time.monotonic()
        wait_for(
            lambda: not any(q["doc"] == "site/s1" for n in nodes for q in quarantined(n)),
            timeout=60,
            interval=0.02,
            what="the site record gone everywhere",
        )
        recovered = time.monotonic()
        # A record the node may not write is refused with a clear message: the hub holds n1's
        # document but only n1 (or an operator) writes it.
        r = hub.cli("record", "rm", node_doc, "info", "node")
        assert r.returncode != 0 and "--as FLEETDIR" in r.stderr, r.stderr
        n1.cli("record", "rm", node_doc, "info", "node", check=True)
        wait_for(lambda: not quarantined(hub) and not quarantined(n1), timeout=60, what="all gone")
        print(
            f"site recovered {recovered - start:.2f} s after the operator's `record rm` began, "
            f"{recovered - removed:.2f} s after it returned"
        )
