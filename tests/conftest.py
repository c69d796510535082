"""Fixtures shared by every test package: the test image and a Podman REST service."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TEST_IMAGE = os.environ.get("NODERUNTIME_TEST_IMAGE", "localhost/busybox:1")


def _podman_works() -> str | None:
    """None if Podman can run a container here, else why not."""
    if shutil.which("podman") is None:
        return "podman is not installed (run scripts/setup.sh test)"
    return None


@pytest.fixture(scope="session")
def busybox_image() -> str:
    """The locally built busybox image (built on first use; no registry needed)."""
    why = _podman_works()
    if why:
        pytest.fail(why)
    subprocess.run(["bash", str(REPO / "scripts" / "build-test-images.sh")], check=True)
    return TEST_IMAGE


@contextlib.contextmanager
def _podman_service() -> Iterator[Path]:
    # Unix socket paths are limited to 107 bytes: keep it short, not under pytest's tmp_path.
    tmp = Path(tempfile.mkdtemp(prefix="nrp-", dir="/tmp"))
    sock = tmp / "podman.sock"
    proc = subprocess.Popen(
        ["podman", "system", "service", "--time=0", f"unix://{sock}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not sock.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"podman system service did not come up on {sock}")
            time.sleep(0.05)
        yield sock
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        # A test may have restarted the service on this socket itself.
        subprocess.run(["pkill", "-f", f"podman system service.*{sock}"], check=False)
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def podman_service_socket(busybox_image: str) -> Iterator[Path]:
    """A shared `podman system service` on a private socket, for tests that drive the REST API
    directly. Tests must not kill it: use ``own_podman_service`` for that."""
    with _podman_service() as sock:
        yield sock


@pytest.fixture
def own_podman_service(busybox_image: str) -> Iterator[Path]:
    """A `podman system service` for this test alone: it may kill and restart it."""
    with _podman_service() as sock:
        yield sock
