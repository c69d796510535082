"""A full disk under a running node, and a node restarted on a full disk (a real tmpfs).

In the field a container's logs or a stuck upload fill the appliance's disk; then a power cut
or a watchdog restarts the node. The node must keep what runs, say clearly why writes fail,
start again on the full disk (host/reserve.py), and carry on once space is freed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from node_harness import NodeProcess, podman, wait_for, workload_yaml

from noderuntime.host.reserve import RESERVE_FILE

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounts a tmpfs: needs root (CI has it)")


@contextlib.contextmanager
def small_disk(size: str = "64m") -> Iterator[Path]:
    base = Path(tempfile.mkdtemp(prefix="nrfull-", dir="/tmp"))
    data = base / "data"
    data.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(data)], check=True)
    try:
        yield data
    finally:
        subprocess.run(["umount", "-l", str(data)], check=False)
        shutil.rmtree(base, ignore_errors=True)


def fill(path: Path) -> Path:
    filler = path / "filler"
    with open(filler, "wb") as f:
        with contextlib.suppress(OSError):  # ENOSPC: full
            while True:
                f.write(b"\0" * (1 << 20))
                f.flush()
        with contextlib.suppress(OSError):
            os.fsync(f.fileno())
    return filler


def running(node: NodeProcess, name: str) -> str:
    return podman(
        "ps", "-q", "--no-trunc", "--filter", f"label=io.noderuntime.node={node.node_id}",
        "--filter", f"name={name}",
    ).stdout.strip()  # fmt: skip


@pytest.mark.slow
def test_a_full_disk_fails_writes_clearly_keeps_what_runs_and_a_restart_still_starts() -> None:
    with small_disk() as data:
        node = NodeProcess(data_dir=data)
        try:
            node.init()
            node.start()
            assert (data / RESERVE_FILE).exists()
            node.cli("apply", "-f", "-", input=workload_yaml("keep"))
            wait_for(
                lambda: node.workloads().get("keep", {}).get("phase") == "Running",
                timeout=60,
                what="keep Running",
            )
            cid = running(node, "keep")
            assert cid
            filler = fill(data)

            # A write fails with what is wrong and where; the node and its container stay.
            r = node.cli("apply", "-f", "-", input=workload_yaml("more"), check=False)
            assert r.returncode != 0
            assert "disk is full" in r.stderr and "state.db" in r.stderr
            assert "Traceback" not in r.stderr
            store = node.status()["store"]
            assert store["healthy"] is False and "full" in store["error"]
            assert node.proc is not None and node.proc.poll() is None
            assert running(node, "keep") == cid

            # Power loss of the daemon on the full disk: it starts again, from its reserve.
            node.proc.kill()
            node.proc.wait()
            node.start()
            assert not (data / RESERVE_FILE).exists()
            assert node.workloads()["keep"]["phase"] == "Running"
            assert running(node, "keep") == cid
            assert "released the node's 8 MiB reserve" in node.log()

            # Space freed: writes go through, and the next start takes its reserve again.
            filler.unlink()
            node.cli("apply", "-f", "-", input=workload_yaml("more"))
            wait_for(
                lambda: node.workloads().get("more", {}).get("phase") == "Running",
                timeout=60,
                what="more Running",
            )
            assert node.status()["store"]["healthy"] is True
            assert node.cli("audit", "verify", check=False).returncode == 0
            node.stop()
            node.start()
            assert (data / RESERVE_FILE).exists()
            assert running(node, "keep") == cid
        finally:
            node.cleanup()
