"""apply -> container Running, against a raw `podman run -d` of the same image, as a ratio.

Target (issue 2): ratio <= 1.25. Run: .venv/bin/python bench/apply_to_running.py [N]
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
import uuid

from _common import NodeProcess, podman, summary, workload_yaml

from noderuntime.api.client import ApiClient


def raw_podman(n: int) -> list[float]:
    times = []
    for _ in range(n):
        name = f"nr-bench-raw-{uuid.uuid4().hex[:8]}"
        t0 = time.perf_counter()
        podman("run", "-d", "--name", name, "localhost/busybox:1", "sleep", "3600")
        times.append(time.perf_counter() - t0)
        podman("rm", "-f", "-t", "0", name)
    return times


async def via_node(node: NodeProcess, n: int) -> list[float]:
    times = []
    async with ApiClient(node.data_dir / "api.sock") as client:
        for _ in range(n):
            # A fresh name each time: a deleted workload's container may still be stopping
            # (busybox `sleep` as PID 1 ignores SIGTERM), and its name is taken until it is gone.
            name = f"b{uuid.uuid4().hex[:8]}"
            t0 = time.perf_counter()
            await client.call("workloads.apply", {"yaml": workload_yaml(name)})
            while True:
                views = {v["name"]: v for v in await client.call("workloads.list")}
                if views.get(name, {}).get("phase") == "Running":
                    break
                await asyncio.sleep(0.002)
            times.append(time.perf_counter() - t0)
            await client.call("workloads.delete", {"name": name})
            while await client.call("workloads.list"):  # noqa: ASYNC110 - polling a remote
                await asyncio.sleep(0.01)
            # Untimed: let the old container go so it does not load the next sample.
            gone = f"name=nr-{node.node_id}-{name}"
            while podman("ps", "-aq", "--filter", gone).stdout.strip():  # noqa: ASYNC110
                await asyncio.sleep(0.1)
    return times


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    raw_podman(2)  # warm caches
    node = NodeProcess()
    try:
        node.init()
        node.start()
        asyncio.run(via_node(node, 2))
        # Interleave so drift on the machine hits both sides alike.
        raw: list[float] = []
        nr: list[float] = []
        for _ in range(n):
            raw += raw_podman(1)
            nr += asyncio.run(via_node(node, 1))
    finally:
        node.cleanup()
    ratio = statistics.median(nr) / statistics.median(raw)
    print(f"raw podman run -d:       {summary(raw)}")
    print(f"noderuntime apply->Running: {summary(nr)}")
    print(f"ratio (median): {ratio:.2f}  (target <= 1.25)")


if __name__ == "__main__":
    main()
