"""RSS of a real enrolled node (`noderuntime run` + its own nats-server), linked to a hub.

Issue 3 asks for the RSS of a node including its nats-server. Run:
.venv/bin/python bench/sync_node_rss.py  (2 real daemons: a hub and a node with 10 workloads)
"""

from __future__ import annotations

import subprocess
import sys
import time

from _common import ROOT, rss_kb, wait_for, workload_yaml

sys.path.insert(0, str(ROOT))
from tests.sync.fleet_harness import FleetNode, hub_and_node


def nats_pid(node: FleetNode) -> int:
    out = subprocess.run(
        ["pgrep", "-f", f"nats-server.*{node.data_dir}"], capture_output=True, text=True
    ).stdout.split()
    return int(out[0])


def main() -> None:
    with hub_and_node("bench") as (hub, node):
        hub.as_operator(
            "apply", "-f", "-", input="---\n".join(workload_yaml(f"w{i}") for i in range(10))
        )
        wait_for(
            lambda: (
                len(node.workloads()) == 10
                and all(w["phase"] == "Running" for w in node.workloads().values())
            ),
            timeout=180,
            what="10 workloads running on the node",
        )
        time.sleep(20)  # idle: heartbeats, anti-entropy rounds
        assert node.proc is not None
        daemon = max(rss_kb(node.proc.pid) for _ in range(3))
        nats = rss_kb(nats_pid(node))
    print(f"enrolled node, 10 workloads, linked to a hub: noderuntime run {daemon / 1024:.1f} MB")
    print(f"its nats-server:                                {nats / 1024:.1f} MB")
    print(f"total:                                          {(daemon + nats) / 1024:.1f} MB")


if __name__ == "__main__":
    main()
