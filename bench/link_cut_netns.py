"""A real link cut: time from a heal until changes flow both ways again (needs root and `ip`).

Run: .venv/bin/python bench/link_cut_netns.py [cut_s ...]   (default: 20 60 150)

A hub and a site node run as real daemons (`noderuntime run`, each with its nats-server), each
in its own network namespace, the node's leaf link to the hub over veths on a bridge. Both
sides write a change every 0.2 s the whole time (the hub into the fleet document, the node into
its own). For each cut length the node's veth is taken down at the bridge (no FIN, no RST: a
pulled cable), left down that long, and brought back up; the figure is the time from the heal
until a change written after it has been seen on the other side, in both directions (the
slower of the two; the reading polls every 0.05 s through each daemon's control API). The
daemons run their production intervals (heartbeats 2 s, anti-entropy 10 s). First, the
bytes an idle leaf link carries (heartbeats, PINGs, periodic rounds) over 30 s.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.sync.netns_harness import (
    Flow,
    NetnsLab,
    hub_and_site,
    netns_unavailable,
)

SETTLE_S = 5.0
IDLE_S = 30.0
FLOW_TIMEOUT_S = 300.0


def leaf_socket(netns: str) -> str:
    """The leaf connection's TCP state in ``netns`` (`ss -ti`), for the record."""
    r = subprocess.run(
        ["ip", "netns", "exec", netns, "ss", "-tin", "dport", "=", ":7422"],
        capture_output=True,
        text=True,
        timeout=10,
    )
    return " ".join(" ".join(r.stdout.splitlines()[1:]).split()) or "(no connection)"


def idle_link_bytes_per_s(link: str, seconds: float) -> float:
    """Bytes per second through ``link`` (both directions) while nothing is written."""

    def total() -> int:
        stats = Path("/sys/class/net") / link / "statistics"
        return sum(int((stats / f).read_text()) for f in ("rx_bytes", "tx_bytes"))

    before = total()
    time.sleep(seconds)
    return (total() - before) / seconds


def main() -> None:
    why = netns_unavailable()
    if why:
        sys.exit(f"link_cut_netns: {why}")
    cuts = [float(a) for a in sys.argv[1:]] or [20.0, 60.0, 150.0]
    with NetnsLab() as lab, hub_and_site(lab) as (hub, node):
        flow = Flow(hub, node)
        flow.setup()
        time.sleep(SETTLE_S)
        rate = idle_link_bytes_per_s(lab.hosts["site"].link, IDLE_S)
        print(f"idle leaf link, both directions: {rate:.0f} B/s over {IDLE_S:.0f} s", flush=True)
        with flow:
            flow.wait_flowing(time.monotonic(), 60)
            for cut_s in cuts:
                time.sleep(SETTLE_S)
                lab.cut("site")
                print(f"(cut at {time.monotonic():.1f})", flush=True)
                time.sleep(cut_s)
                before = leaf_socket(node.host.netns)
                healed = time.monotonic()
                lab.heal("site")
                took = flow.wait_flowing(healed, FLOW_TIMEOUT_S)
                each = {
                    side: (flow.first_seen_after(side, healed) or healed) - healed
                    for side in ("hub", "node")
                }
                print(
                    f"cut {cut_s:.0f} s: changes flow both ways {took:.2f} s after the heal "
                    f"(hub -> node {each['hub']:.2f} s, node -> hub {each['node']:.2f} s); "
                    f"node's leaf socket at the heal: {before}",
                    flush=True,
                )
        if flow.errors:
            print(f"{len(flow.errors)} write/read errors (monotonic time, writer):")
            for e in flow.errors[:20]:
                print(f"  {e}")


if __name__ == "__main__":
    main()
