"""Staged rollout overhead and rollback time, with real daemons (issue 12, section 2).

Run: .venv/bin/python bench/rollout.py [nodes=20] [gate_s=10]

A hub and ``nodes`` plain nodes at 4 sites (s0..s3), all sharing one `podman system service`
(so twenty Podman services do not fight for two cores), every node running a stable v1.

1. Overhead: a good v2 rolled out in 3 waves (``site=s0,50%,100%``) with a ``gate_s`` gate:
   from `rollout start` to every node Running v2 and the rollout Complete, minus the sum of the
   gates (target <= 5 s).
2. Rollback: a v3 that exits at once, in the same 3 waves: from the first failing report (the
   earliest `since` of a status of v3 Failed or exited non-zero, polled at the hub; one machine,
   one clock) to every node of the released wave Running v2 again (target <= 10 s).
   Later waves are checked never to have run v3.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from podman_helpers import podman_service  # noqa: E402

from bench._common import CpuSampler, cpu_by_process, cpu_jiffies, cpu_split  # noqa: E402
from noderuntime.config.model import RECONCILE_INTERVAL_S  # noqa: E402
from tests.integration.node_harness import wait_for, workload_yaml  # noqa: E402
from tests.sync.rollout_harness import (  # noqa: E402
    Fleet,
    fleet,
    hashes_created,
    runs,
    status,
    version_yaml,
    wait_known,
)

NAME = "web"
WAVES = "site=s0,50%,100%"
# A service that exits on SIGTERM, as real ones do. `sleep` as PID 1 ignores it, so each
# replacement waited the workload's whole stopTimeoutSeconds (10 s) before Podman's SIGKILL:
# 10 of the ~13 s from release to Running per wave (2026-12-03 trace, bench/README.md).
# ROLLOUT_BENCH_IGNORE_TERM=1 measures that workload instead.
STOPS_ON_TERM = ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]


def bench_yaml(version: str, *, failing: bool = False) -> str:
    if failing or os.environ.get("ROLLOUT_BENCH_IGNORE_TERM") == "1":
        return version_yaml(NAME, version, failing=failing)
    return workload_yaml(NAME, command=STOPS_ON_TERM, extra=f"  env: {{VERSION: {version}}}\n")


def all_run(nodes: list[Any], spec_hash: str) -> bool:
    return all(runs(n, NAME) == spec_hash for n in nodes)


def start(f: Fleet, version: str, gate_s: float, *, failing: bool = False) -> str:
    path = f.dir.parent / f"{version}.yaml"
    path.write_text(bench_yaml(version, failing=failing))
    f.operator(
        f.hub, "rollout", "start", NAME, "-f", str(path), "--waves", WAVES,
        "--gate-for", f"{gate_s}s", "--start-deadline", "60s",
    )  # fmt: skip
    return str(status(f.hub, NAME)["spec_hash"])


def failing_since(f: Fleet, bad: str) -> float | None:
    """The earliest failing report of ``bad`` the hub holds now (its ``since``, node clock)."""
    times = []
    for name, maps in f.hub.call("state.export").items():
        raw = maps.get("status", {}).get(NAME) if name.startswith("node/") else None
        if raw:
            rec = json.loads(raw)
            failing = rec.get("phase") == "Failed" or rec.get("exitCode") not in (None, 0)
            if rec.get("specHash") == bad and failing:
                times.append(float(rec["since"]))
    return min(times) if times else None


def cpu_groups(f: Fleet, sock: Path) -> Callable[[int, str, int], str | None]:
    """Who used the CPU during a rollout: the fleet's daemons, their nats-servers, the shared
    Podman service (with the children it reaps) and the containers' conmon monitors."""
    daemons = {m.proc.pid for m in f.members if m.proc is not None}
    found = subprocess.run(
        ["pgrep", "-f", f"podman system service.*{sock}"], capture_output=True, text=True
    ).stdout.split()
    service = {int(p) for p in found}

    def group_of(pid: int, comm: str, ppid: int) -> str | None:
        if pid in daemons:
            return "daemons"
        if comm == "nats-server" and ppid in daemons:
            return "nats-servers"
        if pid in service:
            return "podman service"
        if comm == "conmon":
            return "conmon"
        return None

    return group_of


def breakdown(f: Fleet, gate_s: float, cpu: CpuSampler) -> list[str]:
    """Per wave: release -> the last old container stopped (the fleet update relayed, the
    node's reconciler woken, its pass asking Podman to remove the old one; Podman's stop
    events), -> its last node reports Running (Podman replacing containers), how busy the
    machine's cores were meanwhile (near 100 %: bounded by this machine's CPU, not by a wait of
    ours), and how long after that node's gate_s had passed the gate was recorded (the rollout
    machinery)."""
    st = status(f.hub, NAME)
    exp = f.hub.call("state.export")
    steps = {
        k.split("/", 1)[1]: json.loads(v)
        for k, v in exp["fleet"].get("rolloutSteps", {}).items()
        if k.startswith(st["id"] + "/")
    }
    out = []
    for w in range(st["waves_total"]):
        members = [n["node"] for n in st["nodes"] if n["wave"] == w + 1]
        go = [v["at"] for k, v in steps.items() if k.startswith(f"go/{w}/")]
        since = [
            json.loads(exp[f"node/{m}"]["status"][NAME])["since"]
            for m in members
            if NAME in exp.get(f"node/{m}", {}).get("status", {})
        ]
        gate = steps.get(f"gate/{w}", {}).get("at")
        if go and since and gate:
            last = max(since)
            died = stopped_at(members, min(go))
            stop = f"last old container stopped {max(died) - min(go):.2f}s, " if died else ""
            busy = cpu.busy(min(go), last)
            load = f" (CPU {busy:.0%} busy)" if busy is not None else ""
            out.append(
                f"wave {w + 1} ({len(members)} nodes): release -> {stop}last Running "
                f"{last - min(go):.2f}s{load}, gate recorded {gate - (last + gate_s):.2f}s late"
            )
    return out


def stopped_at(nodes: list[str], after: float) -> list[float]:
    """When each node's old container died after ``after`` (Podman's event log)."""
    lines = subprocess.run(
        ["podman", "events", "--stream=false", "--since", str(int(after) - 1),
         "--filter", "event=died", "--format", "{{.Time.UnixNano}} {{.Name}}"],
        capture_output=True, text=True, timeout=60, check=False,
    ).stdout.split("\n")  # fmt: skip
    first: dict[str, float] = {}
    for line in lines:
        ns, _, name = line.partition(" ")
        at = int(ns) / 1e9 if ns.isdigit() else 0.0
        node = name.removeprefix("nr-").removesuffix(f"-{NAME}")
        if node in nodes and at > after and node not in first:
            first[node] = at
    return list(first.values())


def main() -> None:
    n_nodes = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    gate_s = float(sys.argv[2]) if len(sys.argv) > 2 else 10.0
    sites = {f"s{i}": n_nodes // 4 + (1 if i < n_nodes % 4 else 0) for i in range(4)}
    with podman_service() as sock, CpuSampler() as cpu:
        t = time.monotonic()
        # The product's reconcile period, not the test harness's 2 s: with 21 daemons on one
        # Podman service, 2 s periods alone are ~10 container listings a second (idle load
        # production does not have). ROLLOUT_BENCH_RECONCILE_S overrides it.
        period = float(os.environ.get("ROLLOUT_BENCH_RECONCILE_S", RECONCILE_INTERVAL_S))
        config = {"podmanSocket": str(sock), "reconcileIntervalSeconds": period}
        with fleet(sites, extra_config=config, ready_timeout=600) as f:
            try:
                print(
                    f"{len(f.members)} daemons up in {time.monotonic() - t:.1f}s "
                    f"(reconcile period {period:g} s)"
                )
                f.operator(f.hub, "apply", "-f", "-", input=bench_yaml("v1"))
                v1 = str(f.hub.workloads()[NAME]["spec_hash"])
                wait_for(lambda: all_run(f.members, v1), timeout=300, interval=0.5, what="v1")
                wait_known(f, f.hub)
                w0 = time.time()
                time.sleep(5)
                idle = cpu.busy(w0, time.time())
                cores = os.cpu_count()
                print(f"machine CPU busy with every daemon idle: {idle or 0:.0%} of {cores} cores")

                procs0, jiffies0 = cpu_by_process(), cpu_jiffies()[0]
                t0 = time.monotonic()
                v2 = start(f, "v2", gate_s)
                wait_for(
                    lambda: status(f.hub, NAME)["state"] == "Complete",
                    timeout=30 * gate_s + 300,
                    interval=0.2,
                    what="v2 complete",
                )
                t_complete = time.monotonic() - t0
                wait_for(lambda: all_run(f.members, v2), timeout=120, interval=0.2, what="v2")
                t_all = time.monotonic() - t0
                busy_s = (cpu_jiffies()[0] - jiffies0) / os.sysconf("SC_CLK_TCK")
                split = cpu_split(procs0, cpu_by_process(), busy_s, cpu_groups(f, sock))
                print(
                    f"CPU during the rollout: {busy_s:.1f} core-s, "
                    + ", ".join(f"{k} {v:.1f}" for k, v in split.items())
                    + f"; {busy_s / n_nodes:.2f} core-s per replaced container"
                )
                for line in breakdown(f, gate_s, cpu):
                    print("  " + line)
                gates = 3 * gate_s
                print(
                    f"3-wave rollout, {n_nodes} nodes at 4 sites, gate {gate_s:g}s: Complete after "
                    f"{t_complete:.2f}s, every node Running v2 after {t_all:.2f}s; "
                    f"overhead (total - gates) {max(t_complete, t_all) - gates:.2f}s (target <= 5s)"
                )

                since = time.time()
                bad = start(f, "v3", gate_s, failing=True)
                wave1 = f.by_site("s0")
                # Reports are overwritten as nodes go back: poll the hub for the earliest one.
                t_fail: float | None = None
                deadline = time.monotonic() + 300
                while time.monotonic() < deadline:
                    seen = failing_since(f, bad)
                    if seen is not None:
                        t_fail = seen if t_fail is None else min(t_fail, seen)
                    if status(f.hub, NAME)["state"] == "RolledBack" and all_run(wave1, v2):
                        break
                    time.sleep(0.2)
                t_back = time.time()
                s = status(f.hub, NAME)
                assert t_fail is not None and s["state"] == "RolledBack", s
                later = [m for m in f.members if m not in wave1]
                leaked = [m.node_id for m in later if bad in hashes_created(m, NAME, since)]
                print(
                    f"rollback: first failing report -> {len(wave1)} released nodes Running v2 "
                    f"again: {t_back - t_fail:.2f}s (target <= 10s); failed nodes "
                    f"{len(s['failed_nodes'])}; later-wave nodes that ran v3: {len(leaked)}"
                )
            finally:
                keep_logs(f)


def keep_logs(f: Fleet) -> None:
    """``ROLLOUT_BENCH_LOGS=DIR``: copy every daemon's debug log there (the fleet's directory
    goes at the end), to trace a release from the hub's signed update to the gate."""
    out = os.environ.get("ROLLOUT_BENCH_LOGS")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        for m in f.members:
            shutil.copy(m.log_path, Path(out) / f"{m.node_id}.log")


if __name__ == "__main__":
    main()
