"""A node that lost its store gets its documents back from its hub, and only then lets go of
its containers (issue 9, section 9): real `noderuntime run` processes, nats-servers, Podman."""

from __future__ import annotations

import pytest

from tests.integration.node_harness import wait_for, workload_yaml
from tests.sync.fleet_harness import hub_and_node

pytestmark = [pytest.mark.podman, pytest.mark.slow, pytest.mark.usefixtures("busybox_image")]


def test_a_lost_store_comes_back_from_the_hub_and_the_hold_lifts() -> None:
    with hub_and_node() as (hub, node):
        hub.as_operator("apply", "-f", "-", input=workload_yaml("keep"))
        node.wait_phase("keep", "Running", timeout=90)
        # A node override lives in the node's own document: it must come back too, or the
        # container (made with it) would be replaced when the hold lifts.
        node.cli("override", "set", "keep", "env.WHERE", "node", check=True)
        running = wait_for(
            lambda: (
                (w := node.workloads()["keep"])["phase"] == "Running"
                and w["observed_spec_hash"] == w["spec_hash"]
                and w["spec"]["spec"]["env"] == {"WHERE": "node"}
                and w
            ),
            timeout=90,
            what="the container made with the node override",
        )
        wait_for(
            lambda: "WHERE" in str(hub.export(f"node/{node.node_id}")),
            timeout=60,
            what="the override at the hub",
        )
        cid = running["container_id"]

        node.stop()
        for suffix in ("", "-wal", "-shm"):
            (node.data_dir / f"state.db{suffix}").unlink(missing_ok=True)
        node.start()
        # Held from the start (before any peer could answer); the hub gives it all back, and
        # `resync` waits for that (it may have happened already: it needs no one to ask).
        node.cli("resync", "--timeout", "90", check=True)
        log = node.log()
        assert "store lost: state.db is missing or empty" in log
        assert "store hold lifted (resync: " in log and "gave this node's documents back" in log

        status = node.status()
        assert status["store"]["hold"] is None and status["store"]["healthy"]
        w = node.workloads()["keep"]
        assert w["phase"] == "Running" and w["spec"]["spec"]["env"] == {"WHERE": "node"}
        assert w["provenance"] == {"env.WHERE": "node"}
        assert w["container_id"] == cid  # adopted as it ran, never replaced
        assert [c["Id"] for c in node.containers()] == [cid]
