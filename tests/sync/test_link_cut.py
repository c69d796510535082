"""A cut link between a node and its hub, with changes on both sides, heals by itself.

The link runs through a user-space TCP proxy (the kernel here has no netem): closing the proxy
cuts the leaf link mid-stream like a pulled cable; reopening it on the same port heals it.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import tempfile
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from noderuntime.crdt.records import exported_record
from tests.integration.node_harness import wait_for, workload_yaml
from tests.ports import free_port
from tests.sync.fleet_harness import FleetNode, fleet_cli

pytestmark = [pytest.mark.podman, pytest.mark.slow, pytest.mark.usefixtures("busybox_image")]
CONVERGE_S = 90


class LinkProxy:
    """Forwards 127.0.0.1:port to a target port until cut; can be healed on the same port."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self._server: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()

    @property
    def leaf_url(self) -> str:  # quacks like a FleetNode peer
        return f"nats-leaf://127.0.0.1:{self.port}"

    def heal(self) -> None:
        srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("127.0.0.1", self.port))
        srv.listen(8)
        self._server = srv
        threading.Thread(target=self._accept, args=(srv,), daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            srv, self._server = self._server, None
            conns, self._conns = self._conns, []
        if srv is not None:
            # close() alone leaves a listener blocked in accept() (another thread) listening.
            with contextlib.suppress(OSError):
                srv.shutdown(socket.SHUT_RDWR)
            srv.close()
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
            c.close()

    def _accept(self, srv: socket.socket) -> None:
        while True:
            try:
                client, _ = srv.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                if self._server is not srv:  # cut meanwhile
                    client.close()
                    upstream.close()
                    return
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)


@contextmanager
def fleet_dir() -> Iterator[Path]:
    base = Path(tempfile.mkdtemp(prefix="nrl-", dir="/tmp"))
    try:
        fleet_cli("fleet", "init", "--dir", str(base / "fleet"), "--operator", "ops")
        yield base / "fleet"
    finally:
        shutil.rmtree(base, ignore_errors=True)


def env_of(node: FleetNode, workload: str) -> dict[str, Any] | None:
    spec = exported_record(node.export("fleet").get("fleet", {}), "workloads", workload)
    if spec is None:
        return None
    return dict(spec["spec"].get("env") or {})


def test_cut_link_with_changes_on_both_sides_heals() -> None:
    with fleet_dir() as fdir:
        run = uuid.uuid4().hex[:6]
        hub = FleetNode(fdir, f"hub-{run}", "hq", role="hub", leaf=True)
        assert hub.leaf_port is not None
        link = LinkProxy(hub.leaf_port)
        link.heal()
        node = FleetNode(fdir, f"n-{run}", "s1", peers=[link])  # type: ignore[list-item]
        try:
            for n in (hub, node):
                n.enroll()
                n.init()
                n.start()
            hub.as_operator("apply", "-f", "-", input=workload_yaml("w", extra="  env: {A: '0'}\n"))
            wait_for(
                lambda: node.workloads().get("w", {}).get("phase") == "Running",
                timeout=CONVERGE_S,
                what="w running on the node",
            )

            link.cut()
            try:
                wait_for(
                    lambda: not any(p["up"] for p in node.json_cli("peers")["peers"]),
                    timeout=CONVERGE_S,
                    what="node sees the hub go down",
                )
            except AssertionError as exc:
                raise AssertionError(f"{exc}\npeers: {node.json_cli('peers')}") from None
            # Both sides keep working and change the same workload differently.
            hub.as_operator("apply", "-f", "-", input=workload_yaml("w", extra="  env: {A: hub}\n"))
            node.as_operator("apply", "-f", "-", input=workload_yaml("local", extra=""))
            node.cli("override", "set", "w", "env.B", "node", check=True)
            assert env_of(node, "w") == {"A": "0"}
            assert (
                exported_record(hub.export("fleet").get("fleet", {}), "workloads", "local") is None
            )

            link.heal()

            def same_everywhere() -> bool:
                fleet_docs = [n.export("fleet").get("fleet") for n in (hub, node)]
                own = f"node/{node.node_id}"
                return fleet_docs[0] == fleet_docs[1] and hub.export().get(own) == node.export(
                    own
                ).get(own)

            wait_for(same_everywhere, timeout=CONVERGE_S, what="docs identical after heal")
            assert env_of(node, "w") == {"A": "hub"}
            assert exported_record(hub.export("fleet")["fleet"], "workloads", "local") is not None
            wait_for(
                lambda: (
                    (w := node.workloads().get("w"))
                    and w["phase"] == "Running"
                    and w["spec"]["spec"]["env"] == {"A": "hub", "B": "node"}
                    and w["observed_spec_hash"] == w["spec_hash"]
                ),
                timeout=CONVERGE_S,
                what="node runs the merged spec",
            )
        finally:
            link.cut()
            for n in (node, hub):
                n.cleanup()
