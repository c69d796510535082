"""A pull that hangs must not hold up any other workload's reconciliation."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from node_harness import podman, running_node, wait_for, workload_yaml
from podman_helpers import podman_service

from noderuntime.errors import ImageNotFoundError
from noderuntime.runtime.podman import PodmanRuntime
from tests.ports import free_port

pytestmark = [pytest.mark.podman, pytest.mark.usefixtures("busybox_image")]

_TLS_HANDSHAKE = b"\x16"


class HangingRegistry:
    """Accepts on 127.0.0.1 and never answers plain HTTP: a stalled registry connection.

    A TLS hello is refused at once, so Podman (told the registry is insecure) falls back to
    HTTP quickly instead of spending its TLS handshake timeout and retries on it; the HTTP
    request then waits forever, as on a dead edge link.
    """

    def __init__(self) -> None:
        self.port = free_port()
        self._server = socket.create_server(("127.0.0.1", self.port))
        self._held: list[socket.socket] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return  # closed
            first = conn.recv(1, socket.MSG_PEEK)
            if first == _TLS_HANDSHAKE or not first:
                conn.close()
                continue
            with self._lock:
                self._held.append(conn)

    def held(self) -> int:
        """Connections held open (Podman's HTTP requests waiting for an answer)."""
        with self._lock:
            return len(self._held)

    def close(self) -> None:
        self._server.close()
        with self._lock:
            for conn in self._held:
                conn.close()


@contextlib.contextmanager
def hanging_registry(tmp_path: Path) -> Iterator[tuple[HangingRegistry, dict[str, str]]]:
    reg = HangingRegistry()
    conf = tmp_path / "registries.conf"
    conf.write_text(f'[[registry]]\nlocation = "localhost:{reg.port}"\ninsecure = true\n')
    try:
        yield reg, {"CONTAINERS_REGISTRIES_CONF": str(conf)}
    finally:
        reg.close()


def test_a_hanging_pull_does_not_block_other_workloads(tmp_path: Path) -> None:
    with hanging_registry(tmp_path) as (reg, env), running_node(env=env) as node:
        image = f"localhost:{reg.port}/noderuntime-test/hangs:1"
        node.apply(workload_yaml("svc"))
        svc = node.wait_phase("svc", "Running")
        node.apply(workload_yaml("stuck", image=image))
        stuck = node.wait_phase("stuck", "Pending", message=f"pulling image {image}")
        wait_for(reg.held, timeout=60, what="Podman's pull waiting on the registry")

        # While that pull hangs, a removed container is re-created...
        podman("rm", "-f", "-t", "0", svc["container_id"])
        svc = wait_for(
            lambda: (
                (w := node.workloads()["svc"])["phase"] == "Running"
                and w["container_id"] not in (None, svc["container_id"])
                and w
            ),
            timeout=60,
            what="svc re-created while the pull hangs",
        )
        # ...and a crashed one restarted.
        podman("kill", svc["container_id"])
        wait_for(
            lambda: (w := node.workloads()["svc"])["phase"] == "Running" and w["restarts"] >= 1,
            timeout=60,
            what="svc restarted while the pull hangs",
        )

        # One status record for the whole pull: no write per pass.
        now = node.workloads()["stuck"]
        assert (now["phase"], now["message"], now["since"]) == (
            stuck["phase"],
            stuck["message"],
            stuck["since"],
        )

        # Nobody needs the image any more: the pull is cancelled, not left to hang.
        node.cli("delete", "workload", "stuck", check=True)
        wait_for(
            lambda: "cancelled the pull of image " + image in node.log(),
            timeout=60,
            what="the pull cancelled after the delete",
        )

        # Shutdown cancels a hanging pull rather than waiting for it (or for its deadline).
        node.apply(workload_yaml("stuck", image=image))
        node.wait_phase("stuck", "Pending", message=f"pulling image {image}")
        assert node.stop() == 0
        assert "shutdown took longer" not in node.log()


async def test_a_stalled_pull_is_cancelled_and_reported(tmp_path: Path) -> None:
    with hanging_registry(tmp_path) as (reg, env), podman_service(env) as sock:
        image = f"localhost:{reg.port}/noderuntime-test/stalls:1"
        runtime = PodmanRuntime(str(sock))
        with pytest.raises(ImageNotFoundError, match=rf"{image} made no progress for 2s"):
            await runtime.pull_image(image, stall_timeout_s=2)
        assert reg.held() >= 1  # it did stall on the registry, not fail on something else
