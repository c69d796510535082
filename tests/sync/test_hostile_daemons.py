"""Findings of the attack trial (issue 10), each over real `noderuntime run` processes.

Every node here runs its own nats-server and Podman service, enrolled from a fleet directory the
way an operator does it; the attacks use only what an attacker would have: a token, a node's
key, the bus.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.node_harness import wait_for
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
        wait_for(lambda: hub.status()["sync"]["peers_up"] == 1, timeout=60, what="node up")
        clone.init()
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
