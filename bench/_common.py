"""Shared bits for benchmarks: a real node process (the integration-test harness) and stats."""

from __future__ import annotations

import statistics
import sys
from collections.abc import Callable
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


def cpu_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine since boot, from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


class CpuSampler:
    """The machine's CPU use sampled every ``every_s`` in a thread: ``busy(t0, t1)`` is the
    share of all cores busy between two ``time.time()`` instants (1.0: every core saturated),
    which says whether a phase was bounded by this machine's CPU rather than by our waits."""

    def __init__(self, every_s: float = 0.2) -> None:
        import threading

        self._every = every_s
        self.samples: list[tuple[float, int, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> CpuSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        import time

        while not self._stop.is_set():
            self.samples.append((time.time(), *cpu_jiffies()))
            self._stop.wait(self._every)

    def busy(self, t0: float, t1: float) -> float | None:
        inside = [s for s in self.samples if t0 <= s[0] <= t1]
        if len(inside) < 2:
            return None
        (_, b0, n0), (_, b1, n1) = inside[0], inside[-1]
        return (b1 - b0) / (n1 - n0) if n1 > n0 else None


def cpu_by_process() -> dict[int, tuple[str, int, float]]:
    """Every live process: pid -> (command name, parent pid, CPU seconds it and its reaped
    children used)."""
    import os

    tick = os.sysconf("SC_CLK_TCK")
    out: dict[int, tuple[str, int, float]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                raw = f.read()
        except OSError:
            continue
        comm = raw[raw.index("(") + 1 : raw.rindex(")")]
        fields = raw[raw.rindex(")") + 2 :].split()
        used = sum(int(x) for x in fields[11:15]) / tick  # utime stime cutime cstime
        out[int(entry)] = (comm, int(fields[1]), used)
    return out


def cpu_split(
    before: dict[int, tuple[str, int, float]],
    after: dict[int, tuple[str, int, float]],
    machine_s: float,
    group_of: Callable[[int, str, int], str | None],
) -> dict[str, float]:
    """CPU seconds between two ``cpu_by_process`` snapshots by group (``group_of(pid, comm,
    ppid)``, None: not counted); what no counted process accounts for is ``other`` out of
    ``machine_s``, the machine's busy CPU seconds meanwhile (everything else running, and the
    short-lived processes init reaps: conmon's children, the OCI runtime, netavark)."""
    split: dict[str, float] = {}
    for pid, (comm, ppid, used) in after.items():
        group = group_of(pid, comm, ppid)
        if group is None:
            continue
        was = before.get(pid)
        delta = used - (was[2] if was is not None and was[0] == comm else 0.0)
        split[group] = split.get(group, 0.0) + max(0.0, delta)
    split["other"] = max(0.0, machine_s - sum(split.values()))
    return split
