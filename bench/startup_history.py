"""Start-up time of `noderuntime run` with 100k updates in history, against an empty node.

Target (issue 2): <= 1.5 s. Run: .venv/bin/python bench/startup_history.py [updates]
Start-up = exec of `noderuntime run` until the control API answers `node.status`.
"""

from __future__ import annotations

import asyncio
import sys
import time

from _common import NodeProcess, wait_for

from noderuntime.api.client import ApiClient
from noderuntime.crdt import schema
from noderuntime.crdt.state import StateStore
from noderuntime.crdt.store import SQLiteStore
from noderuntime.errors import DaemonNotRunningError
from noderuntime.identity.keys import load_key


async def fill(node: NodeProcess, n: int) -> None:
    ident = load_key(node.data_dir / "identity.key", f"node:{node.node_id}")
    async with StateStore(
        SQLiteStore(node.data_dir / "state.db"), ident, node_id=node.node_id, site=node.site
    ) as st:
        batch = 500
        for start in range(0, n, batch):
            await asyncio.gather(
                *(
                    st.write(
                        st.fleet_doc,
                        lambda doc, i=i: schema.put_workload(
                            doc, f"w{i % 50}", {"metadata": {"name": f"w{i % 50}"}, "v": i}
                        ),
                    )
                    for i in range(start, min(n, start + batch))
                )
            )


async def _status_ok(node: NodeProcess) -> bool:
    try:
        async with ApiClient(node.data_dir / "api.sock") as client:
            await client.call("node.status")
    except DaemonNotRunningError:
        return False
    return True


def time_start(node: NodeProcess) -> float:
    t0 = time.perf_counter()
    node.start(wait=False)
    wait_for(lambda: asyncio.run(_status_ok(node)), timeout=60, interval=0.005, what="API")
    elapsed = time.perf_counter() - t0
    node.stop()
    return elapsed


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    empty = NodeProcess()
    full = NodeProcess()
    try:
        empty.init()
        full.init()
        t0 = time.perf_counter()
        asyncio.run(fill(full, n))
        print(f"wrote {n:,} updates in {time.perf_counter() - t0:.1f}s")
        time_start(empty)
        time_start(full)  # first start compacts the log into a snapshot
        e = min(time_start(empty) for _ in range(3))
        f = min(time_start(full) for _ in range(3))
    finally:
        empty.cleanup()
        full.cleanup()
    print(f"start-up, empty history:      {e:.2f}s")
    print(f"start-up, {n:,} updates: {f:.2f}s  (ratio {f / e:.2f}; target <= 1.5 s)")


if __name__ == "__main__":
    main()
