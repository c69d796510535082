"""Host CPU use between status calls, from /proc/stat deltas."""

from __future__ import annotations

from pathlib import Path

from noderuntime.api.hostmetrics import CpuMeter, host_metrics, read_cpu_times


def test_cpu_meter_reports_use_between_samples() -> None:
    samples = iter([(100, 1000), (150, 1100), (150, 1100), None])
    meter = CpuMeter(read=lambda: next(samples))
    assert meter.percent() == 50.0  # 50 busy of 100 jiffies
    assert meter.percent() is None  # no time passed: no figure rather than a wrong one
    assert meter.percent() is None  # unreadable


def test_read_cpu_times_parses_proc_stat(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    stat.write_text("cpu  10 2 3 80 5 0 0 0 0 0\ncpu0 1 1 1 1 1 1 1 1 1 1\n")
    assert read_cpu_times(str(stat)) == (15, 100)  # idle + iowait = 85
    stat.write_text("intr 1 2 3\n")
    assert read_cpu_times(str(stat)) is None
    assert read_cpu_times(str(tmp_path / "missing")) is None


def test_host_metrics_on_this_host() -> None:
    meter = CpuMeter()
    sum(i * i for i in range(200_000))  # let some jiffies pass
    m = host_metrics(meter)
    assert m["cpus"] >= 1 and len(m["load_avg"]) == 3
    assert m["cpu_percent"] is None or 0.0 <= m["cpu_percent"] <= 100.0
