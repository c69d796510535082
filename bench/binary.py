"""The one-file binary: size, cold start to control API ready, RSS against the virtualenv node.

Targets (issue 5): binary <= 60 MB; cold start to control API ready <= 1.5 s.
Run: .venv/bin/python bench/binary.py [--runs N]   (builds dist/noderuntime if it is stale)

Each start is a new process on an initialised node (fresh data dir per variant, reused across
its runs). "Ready" is the first `node.status` answered on the control socket, timed from just
before the process is spawned. Both variants talk to one shared `podman system service`
(podmanSocket), so Podman's own start-up is not counted and is the same for both. RSS is read
after the node has idled for --settle seconds; the one-file binary is two processes (the
PyInstaller bootloader, which unpacks and waits, and the Python child), both counted.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from _common import ROOT, rss_kb
from podman_helpers import podman_service

from noderuntime.api.client import ApiClient
from noderuntime.errors import NodeRuntimeError

BINARY = ROOT / "dist" / "noderuntime"
VENV_CLI = Path(sys.executable).parent / "noderuntime"
TARGET_SIZE_MB = 60
TARGET_READY_S = 1.5


def _status_ok(sock: Path) -> bool:
    async def go() -> bool:
        try:
            async with ApiClient(sock, timeout_s=2) as client:
                await client.call("node.status")
            return True
        except NodeRuntimeError:
            return False

    return asyncio.run(go())


class Variant:
    def __init__(self, name: str, cli: Path, podman_sock: Path) -> None:
        self.name = name
        self.cli = cli
        self.data_dir = Path(tempfile.mkdtemp(prefix="nrb-", dir="/tmp"))
        self.api = self.data_dir / "api.sock"
        subprocess.run(
            [
                str(cli),
                *("--data-dir", str(self.data_dir), "init", "--node-id", "bench"),
                *("--site", "bench", "--podman-socket", str(podman_sock)),
            ],
            check=True,
            capture_output=True,
        )

    def start(self) -> tuple[subprocess.Popen[bytes], float]:
        """Start the node; return it and seconds until its control API answered."""
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [str(self.cli), "--data-dir", str(self.data_dir), "run", "--log-level", "warning"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )
        while not _status_ok(self.api):
            if proc.poll() is not None:
                raise RuntimeError(f"{self.name}: node exited {proc.returncode}")
            if time.perf_counter() - t0 > 60:
                raise RuntimeError(f"{self.name}: not ready after 60 s")
            time.sleep(0.005)
        return proc, time.perf_counter() - t0

    @staticmethod
    def stop(proc: subprocess.Popen[bytes]) -> None:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)

    def cleanup(self) -> None:
        shutil.rmtree(self.data_dir, ignore_errors=True)


def tree_rss_kb(pid: int) -> tuple[int, int]:
    """(RSS of pid, RSS of its children) in KiB."""
    children = [
        int(c)
        for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        if Path(f"/proc/{c}").exists()
    ]
    return rss_kb(pid), sum(rss_kb(c) for c in children)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10, help="starts per variant (default 10)")
    ap.add_argument("--settle", type=float, default=5.0, help="idle seconds before RSS")
    ns = ap.parse_args()

    subprocess.run(["bash", str(ROOT / "packaging" / "build.sh"), "--if-stale"], check=True)
    size = BINARY.stat().st_size
    version = subprocess.run(
        [str(BINARY), "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()

    results: dict[str, dict[str, float]] = {}
    with podman_service() as sock:
        for name, cli in (("binary", BINARY), ("venv", VENV_CLI)):
            variant = Variant(name, cli, sock)
            try:
                times = []
                for i in range(ns.runs + 1):
                    proc, ready = variant.start()
                    if i > 0:  # the first start also creates the store: not a typical start
                        times.append(ready)
                    if i == ns.runs:
                        time.sleep(ns.settle)
                        own, children = tree_rss_kb(proc.pid)
                        results[name] = {"rss_main_kb": own, "rss_children_kb": children}
                    variant.stop(proc)
                results[name] |= {
                    "ready_median_s": statistics.median(times),
                    "ready_min_s": min(times),
                    "ready_max_s": max(times),
                }
            finally:
                variant.cleanup()

    print(version)
    print(f"binary size:  {size / 1e6:.1f} MB ({size} bytes); target <= {TARGET_SIZE_MB} MB")
    for name, r in results.items():
        print(
            f"{name:7} cold start to API ready: median {r['ready_median_s']:.2f} s "
            f"(min {r['ready_min_s']:.2f}, max {r['ready_max_s']:.2f}, n={ns.runs}); "
            f"target <= {TARGET_READY_S} s"
        )
    b, v = results["binary"], results["venv"]
    total_b = (b["rss_main_kb"] + b["rss_children_kb"]) / 1024
    print(
        f"RSS idle:     binary {total_b:.1f} MB (bootloader {b['rss_main_kb'] / 1024:.1f} + "
        f"node {b['rss_children_kb'] / 1024:.1f}); venv {v['rss_main_kb'] / 1024:.1f} MB"
    )
    print(yaml.safe_dump({"size_bytes": size, **results}, sort_keys=True), end="")


if __name__ == "__main__":
    main()
