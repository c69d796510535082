"""Workload security policy on a real node with real Podman (issue 13 §4): refused by default,
allowed by policy and then really granted; the node's own paths are refused at the node."""

from __future__ import annotations

import pytest
from node_harness import podman, running_node, workload_yaml

pytestmark = [pytest.mark.podman, pytest.mark.usefixtures("busybox_image")]

CAP_NET_ADMIN_BIT = 12

GRANTED = workload_yaml(
    "granted",
    extra=(
        "  devices: ['/dev/null:/dev/nrdev:rw']\n"
        "  securityContext:\n"
        "    capabilities: {add: [NET_ADMIN]}\n"
        "    readOnlyRootFilesystem: true\n"
    ),
)


def test_a_device_and_a_capability_run_only_once_policy_allows_them() -> None:
    with running_node() as node:
        refused = node.cli("apply", "-f", "-", input=GRANTED)
        assert refused.returncode == 2, refused.stderr
        assert "<stdin>:8: spec.devices[0]: device /dev/null is refused by fleet policy" in (
            refused.stderr
        )
        assert "spec.securityContext.capabilities.add[0]: adding capability NET_ADMIN" in (
            refused.stderr
        )
        assert "granted" not in node.workloads()

        node.cli(
            "policy", "allow", "device:/dev/null", "capability:NET_ADMIN", "--workload",
            "granted", check=True,
        )  # fmt: skip
        node.apply(GRANTED)
        running = node.wait_phase("granted", "Running")
        cid = running["container_id"]

        status = podman("exec", cid, "cat", "/proc/1/status").stdout
        fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
        assert int(fields["CapEff"], 16) >> CAP_NET_ADMIN_BIT & 1
        assert fields["NoNewPrivs"].strip() == "1"  # on by default
        assert podman("exec", cid, "test", "-c", "/dev/nrdev").returncode == 0
        assert podman("exec", cid, "touch", "/x", check=False).returncode != 0  # read-only

        # The node's own data dir is known only there: apply takes it, the node refuses it.
        snoop = workload_yaml(
            "snoop", extra=f"  volumes: [{{hostPath: {node.data_dir}, mountPath: /nr}}]\n"
        )
        node.apply(snoop)
        view = node.wait_phase("snoop", "Failed")
        assert view["message"].startswith("refused by fleet policy: spec.volumes[0].hostPath")
        assert not [c for c in node.containers() if "snoop" in c["Names"][0]]
