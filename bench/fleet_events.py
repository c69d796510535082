"""Fleet events: how long from a transition on a node to the hub holding it (issue 12: <= 2 s).

    PYTHONPATH=. .venv/bin/python bench/fleet_events.py

A real hub and two nodes (tests/sync/fleet_harness.py); a workload that crashes every second
on each; the hub's `events --fleet -o json` once it holds 12 events from the nodes. Each event
carries ``ts`` (when the node's reconciler recorded it) and ``received`` (when the hub took
it); both clocks are this machine's, so the difference is the delivery time.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import uuid
from pathlib import Path
from typing import Any

from tests.integration.node_harness import wait_for, workload_yaml
from tests.sync.fleet_harness import FleetNode, fleet_cli

CRASHER = workload_yaml("crashy", command=["sh", "-c", "sleep 1; exit 3"])


def main() -> None:
    base = Path(tempfile.mkdtemp(prefix="nrl-", dir="/tmp"))
    run = uuid.uuid4().hex[:6]
    fdir = base / "fleet"
    fleet_cli("fleet", "init", "--dir", str(fdir), "--operator", "ops")
    hub = FleetNode(fdir, f"hub-{run}", "hq", role="hub", leaf=True)
    nodes = [hub, *(FleetNode(fdir, f"{s}-{run}", s, peers=[hub]) for s in ("lab", "shop"))]
    try:
        for n in nodes:
            n.enroll()
            n.init()
        for n in nodes:
            n.start(wait=False)
        for n in nodes:
            n.wait_ready()
        hub.as_operator("apply", "-f", "-", input=CRASHER)

        def enough() -> list[dict[str, Any]] | None:
            ev = [e for e in hub.json_cli("events", "--fleet") if e["node"] != hub.node_id]
            return ev if len(ev) >= 12 else None

        ev = wait_for(enough, timeout=120, what="12 fleet events from the nodes")
        lat = sorted(e["received"] - e["ts"] for e in ev)
        kinds = sorted({e["transition"] for e in ev})
        print(
            f"n={len(lat)} median={statistics.median(lat) * 1000:.0f}ms "
            f"max={lat[-1] * 1000:.0f}ms transitions={kinds}"
        )
    finally:
        for n in reversed(nodes):
            n.cleanup()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
