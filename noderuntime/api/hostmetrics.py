"""Host CPU, memory and load for ``node.status``, read from /proc (no extra dependency)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any


def read_cpu_times(path: str = "/proc/stat") -> tuple[int, int] | None:
    """(busy, total) jiffies of all CPUs since boot, or None where /proc/stat is unreadable."""
    try:
        with open(path) as fh:
            fields = fh.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    values = [int(v) for v in fields[1:9]]  # user nice system idle iowait irq softirq steal
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


class CpuMeter:
    """Host CPU use between two status calls (what a technician means by "CPU"; the load
    average counts waiting processes too)."""

    def __init__(self, read: Callable[[], tuple[int, int] | None] = read_cpu_times) -> None:
        self._read = read
        self._last = read()

    def percent(self) -> float | None:
        now = self._read()
        last, self._last = self._last, now
        if now is None or last is None or now[1] <= last[1]:
            return None
        return round(100.0 * (now[0] - last[0]) / (now[1] - last[1]), 1)


def host_metrics(cpu: CpuMeter | None = None) -> dict[str, Any]:
    """CPU, memory and load of the host, from /proc (no extra dependency)."""
    mem: dict[str, int] = {}
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                key, _, rest = line.partition(":")
                if key in ("MemTotal", "MemAvailable"):
                    mem[key] = int(rest.split()[0]) * 1024
    except (OSError, ValueError):
        pass
    return {
        "cpus": os.cpu_count() or 1,
        "cpu_percent": cpu.percent() if cpu is not None else None,
        "load_avg": list(os.getloadavg()),
        "mem_total_bytes": mem.get("MemTotal"),
        "mem_available_bytes": mem.get("MemAvailable"),
    }
