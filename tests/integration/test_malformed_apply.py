"""The malformed corpus through a real node: `apply` (the node parses) and `doctor`.

The CLI runs in a subprocess as a user runs it; a traceback anywhere (CLI or node) shows in
its stderr or as a code other than 2. The node must still answer after the whole corpus.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from node_harness import CLI, running_node

from tests.malformed_corpus import CORPUS

pytestmark = [pytest.mark.podman, pytest.mark.usefixtures("busybox_image")]


def _cli(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[str]:
    """The CLI with raw bytes on stdin (NodeProcess.cli sends text)."""
    r = subprocess.run([*CLI, *args], input=stdin, capture_output=True, timeout=120)
    return subprocess.CompletedProcess(
        r.args, r.returncode, r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")
    )


def _clear_refusal(r: subprocess.CompletedProcess[str], what: str) -> None:
    assert r.returncode == 2, f"{what}: exit {r.returncode}\n{r.stderr}"
    assert r.stderr.startswith("error: ") and "Traceback" not in r.stderr, f"{what}:\n{r.stderr}"


def test_apply_of_every_malformed_file_and_stdin_is_refused_by_the_node(tmp_path: Path) -> None:
    with running_node() as node:
        for case, blob in sorted(CORPUS.items()):
            f = tmp_path / "in.yaml"
            f.write_bytes(blob)
            _clear_refusal(node.cli("apply", "-f", str(f)), f"apply -f ({case})")
            r = _cli("--data-dir", str(node.data_dir), "apply", "-f", "-", stdin=blob)
            _clear_refusal(r, f"apply -f - ({case})")
        assert json.loads(node.cli("get", "workloads", "-o", "json", check=True).stdout) == []
        assert node.status()["node"]["id"] == node.node_id


def test_doctor_names_a_malformed_node_yaml_and_exits_2(tmp_path: Path) -> None:
    for case in ("latin-1", "billion laughs", "flow mappings, deep", "empty", "binary"):
        f = tmp_path / "node.yaml"
        f.write_bytes(CORPUS[case])
        r = _cli("--data-dir", str(tmp_path / "d"), "--config", str(f), "doctor")
        assert r.returncode == 2, f"doctor ({case}): exit {r.returncode}\n{r.stdout}{r.stderr}"
        assert "Traceback" not in r.stderr
        first = r.stdout.splitlines()[0]
        assert first.startswith(f"[FAIL] node config: {f}"), first
