"""Durable updates per second through the control API (each acknowledged only once fsynced).

Target (issue 2): >= 1,000/s. Run: .venv/bin/python bench/durable_updates.py [seconds]
Workloads select no node, so only the store is measured, not Podman.
"""

from __future__ import annotations

import asyncio
import sys
import time

from _common import NodeProcess, workload_yaml

from noderuntime.api.client import ApiClient

UNSCHEDULED = "  nodeSelector: {noderuntime.io/node: nowhere}\n"


async def run(node: NodeProcess, clients: int, seconds: float) -> float:
    deadline = time.perf_counter() + seconds
    done = 0

    async def writer(cid: int) -> None:
        nonlocal done
        async with ApiClient(node.data_dir / "api.sock") as client:
            i = 0
            while time.perf_counter() < deadline:
                i += 1
                spec = workload_yaml(f"c{cid}", extra=UNSCHEDULED + f"  env: {{N: '{i}'}}\n")
                await client.call("workloads.apply", {"yaml": spec})
                done += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(writer(c) for c in range(clients)))
    return done / (time.perf_counter() - t0)


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 5.0
    node = NodeProcess()
    try:
        node.init()
        node.start()
        for clients in (1, 4, 16):
            rate = asyncio.run(run(node, clients, seconds))
            print(f"{clients:>2} client(s): {rate:,.0f} durable applies/s")
    finally:
        node.cleanup()
    print("target: >= 1,000/s")


if __name__ == "__main__":
    main()
