"""What the audit trail costs durable writes: the store's write path with and without one audit
entry per write (as the control API records one per write route), in one process, alternating
short bursts so a shared machine's load hits both sides alike.

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
from noderuntime.audit.log import Audit
from noderuntime.audit.store import SQLiteAuditStore
from noderuntime.crdt import schema
from noderuntime.crdt.state import StateStore
from noderuntime.crdt.store import SQLiteStore
from noderuntime.identity import keys
from noderuntime.identity.principals import node_principal


async def burst(
    state: StateStore, audit: Audit | None, writers: int, seconds: float
) -> tuple[float, float]:
    """(writes/s, CPU seconds per write) of one burst."""
    deadline = time.perf_counter() + seconds
    done = 0

    async def writer(w: int) -> None:
        nonlocal done
        i = 0
        while time.perf_counter() < deadline:
            i += 1
            value = {"w": w, "i": i}
            await state.write(
                state.node_doc, lambda d, v=value: schema.put_info(d, v), summary="bench"
            )
            if audit is not None:
                audit.record(AuditKind.API_WRITE, "uid:0", method="bench", uid=0, outcome="ok")
            done += 1

    t0, cpu0 = time.perf_counter(), time.process_time()
    await asyncio.gather(*(writer(w) for w in range(writers)))
    rate = done / (time.perf_counter() - t0)
    if audit is not None:
        await audit.flush()  # its commits are part of its cost
    return rate, (time.process_time() - cpu0) / max(done, 1)


async def main(rounds: int, seconds: float) -> None:
    ident = keys.generate(node_principal("bench"))
    with tempfile.TemporaryDirectory(prefix="nr-audit-bench-") as tmp:
        store = SQLiteStore(Path(tmp) / "state.db")
        audit_store = SQLiteAuditStore(Path(tmp) / "audit.db")
        async with (
            StateStore(store, ident, node_id="bench", site="s") as state,
            Audit(
                audit_store, node="bench", sign=ident.sign, public_key=ident.public_bytes
            ) as audit,
        ):
            for writers in (1, 4, 16):
                without, with_ = [], []
                cpu_without, cpu_with = [], []
                for _ in range(rounds):
                    rate, cpu = await burst(state, None, writers, seconds)
                    without.append(rate)
                    cpu_without.append(cpu)
                    rate, cpu = await burst(state, audit, writers, seconds)
                    with_.append(rate)
                    cpu_with.append(cpu)
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
