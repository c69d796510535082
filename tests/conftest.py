"""Fixtures shared by every test package: the test image and a Podman REST service."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.podman_helpers import podman_service

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


@pytest.fixture(scope="session")
def podman_service_socket(busybox_image: str) -> Iterator[Path]:
    """A shared `podman system service` on a private socket, for tests that drive the REST API
    directly. Tests must not kill it: use ``own_podman_service`` for that."""
    with podman_service() as sock:
        yield sock


@pytest.fixture
def own_podman_service(busybox_image: str) -> Iterator[Path]:
    """A `podman system service` for this test alone: it may kill and restart it."""
    with podman_service() as sock:
        yield sock
