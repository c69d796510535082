"""Average stored update size as a node restarts (issue 9 section 12).

Every start writes what a node writes: its facts, status transitions of its workloads, and an
occasional apply. Each update carries the document's whole delete set, split per CRDT client id;
a node that took a new client id at every start made that set, and so every update, grow with
the number of restarts. Run: .venv/bin/python bench/update_size_restarts.py [restarts=200]

Prints the average size of the updates stored during the start after 0, 50 and 200 restarts.
The state store is opened in-process on a real SQLite file, as `noderuntime run` opens it.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from noderuntime.crdt import schema
from noderuntime.crdt.state import StateStore
from noderuntime.crdt.store import SQLiteStore
from noderuntime.identity import keys

WORKLOADS = 10
PHASES = ("Pending", "Starting", "Running")


async def one_start(path: Path, ident: keys.Identity, start: int) -> list[int]:
    """One process lifetime; returns the sizes of the updates it stored."""
    async with StateStore(SQLiteStore(path), ident, node_id="n1", site="s1") as st:
        before = st.last_seq
        info = {"node": "n1", "site": "s1", "started": start}
        await st.write(st.node_doc, lambda doc: schema.put_info(doc, info))
        await st.write(
            st.fleet_doc,
            lambda doc: schema.put_workload(
                doc, f"w{start % WORKLOADS}", {"metadata": {"name": "w"}, "v": start}
            ),
        )
        for phase in PHASES:
            for w in range(WORKLOADS):
                record = schema.StatusRecord(phase=phase, since=float(start), restarts=start)

                def put(doc: Any, w: int = w, record: schema.StatusRecord = record) -> None:
                    schema.put_status(doc, f"w{w}", record)

                await st.write(st.node_doc, put)
        stored = await st.history(1000)
        return [len(u.data) for u in stored if u.seq > before]


async def main(restarts: int) -> None:
    ident = keys.generate("node:n1")
    checkpoints = sorted({0, 50, restarts} & set(range(restarts + 1)))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "state.db"
        for start in range(restarts + 1):
            sizes = await one_start(path, ident, start)
            if start in checkpoints:
                print(
                    f"after {start:4d} restarts: average stored update "
                    f"{statistics.mean(sizes):7.0f} B (n={len(sizes)}, max {max(sizes)} B)"
                )


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 200))
