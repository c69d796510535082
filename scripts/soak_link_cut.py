"""Soak: silent link cuts and heals at random intervals while changes flow on both sides.

Run (root, iproute2): .venv/bin/python scripts/soak_link_cut.py [minutes=10] [seed]

A hub and a site node run as real daemons in their own network namespaces (see
tests/sync/netns_harness.py); both write a change every 0.2 s throughout. Until the time is
up: the link stays up 2-20 s, then one side's veth (either end, at random) goes down for
1-60 s (no FIN, no RST) and comes back. After each heal the time until changes flow both
ways again is recorded; a heal after which they do not flow within 60 s is a stuck link.
At the end the writers stop and both daemons must hold identical documents, with the leaf
link up at both ends.

Prints one line per cycle and a summary with the longest heal -> flow time. Exit status 0
only if no link was stuck and the state ended identical.
"""

from __future__ import annotations

import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.integration.node_harness import wait_for
from tests.sync.netns_harness import Flow, NetnsLab, NetnsNode, hub_and_site, netns_unavailable

UP_S = (2.0, 20.0)
CUT_S = (1.0, 60.0)
STUCK_S = 60.0
CONVERGE_S = 60.0


def identical(hub: NetnsNode, node: NetnsNode) -> bool:
    own = f"node/{node.node_id}"
    return bool(hub.export("fleet", own) == node.export("fleet", own))


def links_up(hub: NetnsNode, node: NetnsNode) -> bool:
    out = [x for x in node.json_cli("peers")["links"] if "peer" in x]
    inbound = [x for x in hub.json_cli("peers")["links"] if "peer" in x]
    return len(out) == 1 and bool(out[0]["up"]) and len(inbound) == 1


def main() -> int:
    why = netns_unavailable()
    if why:
        sys.exit(f"soak_link_cut: {why}")
    minutes = float(sys.argv[1]) if len(sys.argv) > 1 else 10.0
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else random.randrange(1 << 30)
    rng = random.Random(seed)
    print(f"soak: {minutes:.0f} min of cut and heal, seed {seed}", flush=True)
    heals: list[tuple[float, float]] = []  # (cut length, heal -> flow)
    stuck: list[str] = []
    with NetnsLab() as lab, hub_and_site(lab) as (hub, node):
        flow = Flow(hub, node)
        flow.setup()
        with flow:
            flow.wait_flowing(time.monotonic(), 60)
            end = time.monotonic() + minutes * 60
            cycle = 0
            while time.monotonic() < end:
                cycle += 1
                time.sleep(rng.uniform(*UP_S))
                side = rng.choice(["hub", "site"])
                cut_s = rng.uniform(*CUT_S)
                lab.cut(side)
                time.sleep(cut_s)
                healed = time.monotonic()
                lab.heal(side)
                try:
                    took = flow.wait_flowing(healed, STUCK_S)
                except AssertionError:
                    stuck.append(f"cycle {cycle}: {side} cut {cut_s:.1f} s")
                    print(f"cycle {cycle}: {side} cut {cut_s:.1f} s: STUCK", flush=True)
                    continue
                heals.append((cut_s, took))
                print(
                    f"cycle {cycle}: {side} cut {cut_s:5.1f} s -> flowing both ways "
                    f"{took:.2f} s after the heal",
                    flush=True,
                )
        try:
            wait_for(lambda: identical(hub, node), timeout=CONVERGE_S, what="identical state")
            same = True
        except AssertionError:
            same = False
        try:
            wait_for(lambda: links_up(hub, node), timeout=CONVERGE_S, what="link up")
            up = True
        except AssertionError:
            up = False
        errors = list(flow.errors)
    times = [t for _, t in heals]
    if times:
        worst_cut, worst = max(heals, key=lambda h: h[1])
        print(
            f"{len(heals)} heals: heal -> flowing both ways median "
            f"{statistics.median(times):.2f} s, longest {worst:.2f} s "
            f"(after a {worst_cut:.1f} s cut)"
        )
    print(f"stuck links: {len(stuck)} {stuck if stuck else ''}")
    print(f"state identical at the end: {same}; leaf link up at both ends: {up}")
    print(f"write/read errors during the soak: {len(errors)}")
    for e in errors[:10]:
        print(f"  {e}")
    return 0 if same and up and not stuck and heals else 1


if __name__ == "__main__":
    sys.exit(main())
