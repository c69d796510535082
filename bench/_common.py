"""Shared bits for benchmarks: a real node process (the integration-test harness) and stats."""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from node_harness import NodeProcess, podman, wait_for, workload_yaml  # noqa: E402

__all__ = ["NodeProcess", "podman", "rss_kb", "summary", "wait_for", "workload_yaml"]


def summary(values: list[float]) -> str:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return (
        f"n={len(values)} median={statistics.median(values) * 1000:.1f}ms "
        f"min={ordered[0] * 1000:.1f}ms p99={p99 * 1000:.1f}ms"
    )


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")
