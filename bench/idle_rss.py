"""Idle RSS of `noderuntime run` with 10 workloads running.

Target (issue 2): <= 50 MB. Run: .venv/bin/python bench/idle_rss.py [--metrics]
Also prints the supervised `podman system service` RSS, which is a separate process.
``--metrics`` turns the Prometheus endpoint on (metricsAddress) and scrapes it once before the
samples, to show what prometheus-client costs a node that enables it (issue 12).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request

from _common import NodeProcess, rss_kb, wait_for, workload_yaml


def main() -> None:
    metrics = "--metrics" in sys.argv[1:]
    node = NodeProcess()
    port = 0
    if metrics:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        node.extra_config = {**node.extra_config, "metricsAddress": f"127.0.0.1:{port}"}
    try:
        node.init()
        node.start()
        baseline = rss_kb(node.proc.pid)  # type: ignore[union-attr]
        node.apply("---\n".join(workload_yaml(f"w{i}") for i in range(10)))
        wait_for(
            lambda: (
                all(w["phase"] == "Running" for w in node.workloads().values())
                and len(node.workloads()) == 10
            ),
            timeout=120,
            what="10 workloads running",
        )
        if metrics:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read()
        time.sleep(20)  # idle: a few reconcile timer passes
        pid = node.proc.pid  # type: ignore[union-attr]
        samples = []
        for _ in range(5):
            samples.append(rss_kb(pid))
            time.sleep(1)
        svc = subprocess.run(
            ["pgrep", "-f", f"podman system service.*{node.data_dir}/podman.sock"],
            capture_output=True,
            text=True,
        ).stdout.split()
        svc_rss = sum(rss_kb(int(p)) for p in svc) if svc else 0
    finally:
        node.cleanup()
    print(f"metrics endpoint: {'on' if metrics else 'off'}")
    print(f"noderuntime run, 0 workloads at start: {baseline / 1024:.1f} MB")
    print(f"noderuntime run, 10 workloads idle:    {max(samples) / 1024:.1f} MB (max of 5 samples)")
    print(f"supervised podman system service:      {svc_rss / 1024:.1f} MB (separate process)")
    print("target: <= 50 MB for noderuntime run")


if __name__ == "__main__":
    main()
