"""Issue 11 §4: a site of one node places its singletons locally, with no cluster or JetStream."""

from __future__ import annotations

import json

import pytest
from node_harness import podman, running_node, workload_yaml

pytestmark = [pytest.mark.podman, pytest.mark.usefixtures("busybox_image")]


def test_a_node_alone_in_its_site_runs_its_singleton_and_keeps_it_across_a_restart() -> None:
    with running_node() as node:
        node.apply(workload_yaml("ctl", extra="  placement: {scope: site, replicas: 1}\n"))
        first = node.wait_phase("ctl", "Running", timeout=30)
        node.stop()
        node.start()
        again = node.wait_phase("ctl", "Running", timeout=30)
        assert again["container_id"] == first["container_id"]


def test_the_singleton_is_never_stopped_by_a_daemon_restart() -> None:
    with running_node() as node:
        node.apply(workload_yaml("ctl", extra="  placement: {scope: site, replicas: 1}\n"))
        cid = node.wait_phase("ctl", "Running", timeout=30)["container_id"]
        started = podman("inspect", "-f", "{{.State.StartedAt}}", cid).stdout
        node.stop()
        node.start()
        node.wait_phase("ctl", "Running", timeout=30, container_id=cid)
        assert podman("inspect", "-f", "{{.State.StartedAt}}", cid).stdout == started


def test_status_placement_and_drain_of_a_node_alone() -> None:
    with running_node() as node:
        node.apply(workload_yaml("ctl", extra="  placement: {scope: site, replicas: 1}\n"))
        view = node.wait_phase("ctl", "Running", timeout=30)
        assert view["placement"]["replicas"] == 1
        (slot,) = view["placement"]["slots"]
        assert slot["slot"] == 0 and slot["node"] == node.node_id
        status = json.loads(node.cli("site", "status", "-o", "json", check=True).stdout)
        assert status["mode"] == "alone" and status["quorum"] is True
        assert status["kv"]["healthy"] is True
        node.cli("site", "drain", node.node_id, check=True)
        node.wait_phase("ctl", "Standby", timeout=30)
        node.cli("site", "uncordon", node.node_id, check=True)
        node.wait_phase("ctl", "Running", timeout=30)
