"""The control API of a real node under hostile clients (issue 10, "Control API"; issue 9, 13).

Memory is read from /proc: RSS is what the kernel says the node holds, whatever Python thinks.
"""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from node_harness import NodeProcess, running_node

from noderuntime.api.protocol import MAX_MESSAGE_BYTES

pytestmark = [pytest.mark.podman, pytest.mark.usefixtures("busybox_image")]

MiB = 1024 * 1024
UNTERMINATED_CONNECTIONS = 40
RSS_LIMIT_BYTES = 200 * MiB


def _proc_status(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {key} in /proc/{pid}/status")


@contextlib.contextmanager
def _unterminated(node: NodeProcess, count: int, size: int) -> Iterator[list[socket.socket]]:
    """``count`` connections, each having sent ``size`` bytes with no newline, kept open."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(60)
            s.connect(str(node.data_dir / "api.sock"))
            socks.append(s)
            with contextlib.suppress(OSError):  # a node may answer and hang up: fine
                s.sendall(b'{"v": 1, "id": 1, "method": "node.status", "params": {"x": "')
                s.sendall(b"a" * (size - 64))
        yield socks
    finally:
        for s in socks:
            s.close()


def test_forty_unterminated_8mib_requests_leave_the_node_answering_and_small() -> None:
    with running_node() as node:
        assert node.proc is not None
        pid = node.proc.pid
        idle = _proc_status(pid, "VmRSS")
        figures = []
        for _round in range(3):
            with _unterminated(node, UNTERMINATED_CONNECTIONS, MAX_MESSAGE_BYTES - 1):
                rss = _proc_status(pid, "VmRSS")
                status = node.cli("status", "-o", "json")
                figures.append(rss)
                assert status.returncode == 0, status.stderr
                assert json.loads(status.stdout)["node"]["id"] == node.node_id
                assert rss < RSS_LIMIT_BYTES, f"RSS {rss // MiB} MiB per round: {figures}"
        peak = _proc_status(pid, "VmHWM")
        print(
            f"RSS idle {idle // MiB} MiB; while held, per round: {[f // MiB for f in figures]} "
            f"MiB; peak {peak // MiB} MiB"
        )
        assert peak < RSS_LIMIT_BYTES, f"peak RSS {peak // MiB} MiB"


def test_an_oversized_apply_is_too_large_exit_2_while_the_node_runs(tmp_path: Path) -> None:
    """It was "lost the connection ... Broken pipe", exit 3 (node not running) (issue 9, 13)."""
    big = tmp_path / "big.yaml"
    big.write_bytes(b"# padding\n" * (5 * MiB))  # 50 MiB
    with running_node() as node:
        for r in (
            node.cli("apply", "-f", str(big)),
            node.cli("apply", "-f", "-", input=big.read_text()),
        ):
            assert r.returncode == 2, r.stderr
            assert "too large" in r.stderr and "Traceback" not in r.stderr
        # A client that sends it anyway gets the node's answer, not a broken pipe.
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(60)
            s.connect(str(node.data_dir / "api.sock"))
            s.sendall(b'{"v": 1, "id": 1, "method": "workloads.apply", "params": {"yaml": "')
            s.sendall(b"#" * (50 * MiB) + b'"}}\n')
            answer = json.loads(s.makefile("rb").readline())
        assert answer["error"]["code"] == "request_too_large"
        assert node.status()["node"]["id"] == node.node_id
