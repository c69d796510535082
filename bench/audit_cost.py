"""What the audit trail costs durable writes: the store's write path with and without one audit
entry per write, made as the control API makes it (the entry rides the write's commit:
``COMMIT_RIDERS`` set to ``Audit.ride``), against a no-op recorder (``NullAudit``), in one
process, alternating short bursts so a shared machine's load hits both sides alike.

Run: .venv/bin/python bench/audit_cost.py [rounds] [burst_seconds]
Prints writes/s per side (median of the rounds) and the difference, for 1, 4 and 16 writers,
and the CPU time per write on each side (this process, both threads): on a machine others
load, writes/s swing by a third between bursts, while CPU per write still shows what the
audit adds. Target (issue 13): with audit at most 5 % lower.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

from noderuntime.audit.chain import AuditKind
from noderuntime.audit.log import Audit, NullAudit, RideSink
from noderuntime.audit.store import SQLiteAuditStore
from noderuntime.crdt import schema
from noderuntime.crdt.state import StateStore
from noderuntime.crdt.store import SQLiteStore
from noderuntime.identity import keys
from noderuntime.identity.principals import node_principal
from noderuntime.sqlitedb import COMMIT_RIDERS


async def write_as_the_api_does(state: StateStore, audit: RideSink, value: dict[str, int]) -> None:
    """One write route call: its entry rides the commit (api/server.py, ``_call``)."""
    fields = {"method": "bench", "uid": 0, "outcome": "ok"}
    ride = audit.ride(AuditKind.API_WRITE, "uid:0", **fields)
    token = COMMIT_RIDERS.set(ride)
    try:
        await state.write(state.node_doc, lambda d: schema.put_info(d, value), summary="bench")
    finally:
        COMMIT_RIDERS.reset(token)
    if ride is None or not ride.chained:
        audit.record(AuditKind.API_WRITE, "uid:0", **fields)


async def burst(
    state: StateStore, audit: RideSink, writers: int, seconds: float
) -> tuple[float, float]:
    """(writes/s, CPU seconds per write) of one burst."""
    deadline = time.perf_counter() + seconds
    done = 0

    async def writer(w: int) -> None:
        nonlocal done
        i = 0
        while time.perf_counter() < deadline:
            i += 1
            await write_as_the_api_does(state, audit, {"w": w, "i": i})
            done += 1

    t0, cpu0 = time.perf_counter(), time.process_time()
    await asyncio.gather(*(writer(w) for w in range(writers)))
    rate = done / (time.perf_counter() - t0)
    if isinstance(audit, Audit):
        await audit.flush()  # its commits are part of its cost
    return rate, (time.process_time() - cpu0) / max(done, 1)


async def main(rounds: int, seconds: float) -> None:
    ident = keys.generate(node_principal("bench"))
    with tempfile.TemporaryDirectory(prefix="nr-audit-bench-") as tmp:
        store = SQLiteStore(Path(tmp) / "state.db")
        audit_store = SQLiteAuditStore(Path(tmp) / "audit.db")
        async with (
            Audit(
                audit_store,
                node="bench",
                sign=ident.sign,
                public_key=ident.public_bytes,
                outbox_path=Path(tmp) / "state.db",
            ) as audit,
            StateStore(store, ident, node_id="bench", site="s") as state,
        ):
            audit.outbox = store
            for writers in (1, 4, 16):
                without, with_ = [], []
                cpu_without, cpu_with = [], []
                for r in range(rounds):
                    # Each side goes first every other round: neither always meets a warm disk.
                    for side in ("off", "on") if r % 2 == 0 else ("on", "off"):
                        rate, cpu = await burst(
                            state, audit if side == "on" else NullAudit(), writers, seconds
                        )
                        (with_ if side == "on" else without).append(rate)
                        (cpu_with if side == "on" else cpu_without).append(cpu)
                a, b = statistics.median(without), statistics.median(with_)
                ca, cb = statistics.median(cpu_without), statistics.median(cpu_with)
                print(
                    f"{writers:>2} writer(s): {a:,.0f}/s without audit, {b:,.0f}/s with "
                    f"({(b - a) / a:+.1%}; rounds without {min(without):,.0f}-"
                    f"{max(without):,.0f}, with {min(with_):,.0f}-{max(with_):,.0f}); "
                    f"CPU per write {ca * 1e6:,.0f} us without, {cb * 1e6:,.0f} us with "
                    f"({(cb - ca) / ca:+.1%})"
                )
            print(f"audit entries written: {audit.head_seq}, chain ok: {(await audit.verify()).ok}")


if __name__ == "__main__":
    asyncio.run(
        main(
            int(sys.argv[1]) if len(sys.argv) > 1 else 8,
            float(sys.argv[2]) if len(sys.argv) > 2 else 1.0,
        )
    )
