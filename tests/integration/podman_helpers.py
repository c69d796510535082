"""Shared bits of the tests that drive Podman's REST API directly (no node process)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

from noderuntime.runtime.base import (
    LABEL_MANAGED,
    LABEL_NODE,
    LABEL_SPEC_HASH,
    LABEL_WORKLOAD,
    ContainerSpec,
)

T = TypeVar("T")
PREFIX = "nrtest"


def unique(kind: str) -> str:
    return f"{PREFIX}-{kind}-{uuid.uuid4().hex[:8]}"


def spec(node_id: str, workload: str, image: str, *cmd: str, **kw: object) -> ContainerSpec:
    labels = {
        LABEL_MANAGED: "true",
        LABEL_NODE: node_id,
        LABEL_WORKLOAD: workload,
        LABEL_SPEC_HASH: "h-" + workload,
    }
    extra = kw.pop("labels", ())
    assert isinstance(extra, tuple)
    labels.update(dict(extra))
    return ContainerSpec(
        name=f"{node_id}-{workload}",
        image=image,
        command=tuple(cmd),
        labels=tuple(sorted(labels.items())),
        **kw,  # type: ignore[arg-type]
    )


def remove_node_containers(node_id: str) -> None:
    subprocess.run(
        ["podman", "rm", "-f", "-t", "0", "--filter", f"label={LABEL_NODE}={node_id}"],
        capture_output=True,
        check=False,
        timeout=60,
    )


def socket_accepts(path: Path | str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(str(path))
        except OSError:
            return False
    return True


@contextlib.contextmanager
def podman_service(env: dict[str, str] | None = None) -> Iterator[Path]:
    """A `podman system service` on a private socket (started with ``env`` added), until exit."""
    # Unix socket paths are limited to 107 bytes: keep it short, not under pytest's tmp_path.
    tmp = Path(tempfile.mkdtemp(prefix="nrp-", dir="/tmp"))
    sock = tmp / "podman.sock"
    proc = subprocess.Popen(
        ["podman", "system", "service", "--time=0", f"unix://{sock}"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )
    try:
        deadline = time.monotonic() + 30
        while not socket_accepts(sock):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"podman system service did not come up on {sock}")
            time.sleep(0.05)
        yield sock
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        # A test may have restarted the service on this socket itself.
        subprocess.run(["pkill", "-f", f"podman system service.*{sock}"], check=False)
        shutil.rmtree(tmp, ignore_errors=True)


def ensure_service(path: Path) -> subprocess.Popen[bytes] | None:
    """Restart the session's Podman service if an earlier test killed it; returns the new one."""
    if socket_accepts(path):
        return None
    path.unlink(missing_ok=True)
    proc = subprocess.Popen(
        ["podman", "system", "service", "--time=0", f"unix://{path}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while not socket_accepts(path):
        assert time.monotonic() < deadline, f"podman system service did not come back on {path}"
        time.sleep(0.05)
    return proc


async def eventually(
    probe: Callable[[], Awaitable[T | None]], *, within_s: float = 30.0, what: str = ""
) -> T:
    """Poll an async ``probe`` until it returns something truthy."""
    deadline = time.monotonic() + within_s
    last: object = None
    while time.monotonic() < deadline:
        last = await probe()
        if last:
            return last  # type: ignore[return-value]
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out after {within_s}s waiting for {what}: last={last!r}")


def pid_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"
