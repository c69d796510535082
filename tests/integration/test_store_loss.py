"""A node that lost its store never destroys what runs: it holds, says why, and waits for a
decision (issue 9, section 9). Real node, real Podman, a real store moved away or damaged."""

from __future__ import annotations

import json
import signal
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from node_harness import NodeProcess, running_node, wait_for, workload_yaml
from pycrdt import Doc

from noderuntime.crdt.state import apply_update_safely

pytestmark = [pytest.mark.podman, pytest.mark.usefixtures("busybox_image")]

INTERVAL_S = 5  # reconcileIntervalSeconds of the harness's nodes


def _run_workload(node: NodeProcess, name: str = "keep") -> str:
    node.apply(workload_yaml(name))
    return str(node.wait_phase(name, "Running")["container_id"])


def _running_ids(node: NodeProcess) -> set[str]:
    return {c["Id"] for c in node.containers() if c["State"] == "running"}


def _passes_well_past_an_interval(node: NodeProcess) -> dict[str, Any]:
    """Status once the node has run a pass two reconcile intervals after it started."""

    def probe() -> dict[str, Any] | None:
        s = node.status()
        last = s["reconciler"]["last_pass_at"]
        return s if last and last - s["node"]["started_at"] >= 2 * INTERVAL_S else None

    return wait_for(probe, timeout=60, what="a timer pass two intervals after the start")


def _store_files(data_dir: Path) -> list[Path]:
    return [data_dir / f"state.db{suffix}" for suffix in ("", "-wal", "-shm")]


def test_a_missing_store_holds_the_containers_until_reset() -> None:
    with running_node() as node:
        cid = _run_workload(node)
        node.stop()
        aside = node.data_dir / "aside"
        aside.mkdir()
        for f in _store_files(node.data_dir):
            if f.exists():
                f.rename(aside / f.name)
        node.start()

        status = _passes_well_past_an_interval(node)
        assert cid in _running_ids(node)
        store = status["store"]
        assert store["healthy"] is False
        assert store["hold"]["kind"] == "missing"
        assert "state.db is missing or empty" in store["error"]
        assert store["hold"]["workloads"] == ["keep"]
        assert "reset --i-mean-it" in store["hold"]["decide"]
        text = node.cli("status", check=True).stdout
        assert "STORE HELD: state.db is missing or empty" in text and "keep" in text
        events = json.loads(node.cli("events", "-o", "json", check=True).stdout)
        assert any(e["kind"] == "store-hold" for e in events)
        assert "ERROR" in node.log() and "store lost: state.db is missing" in node.log()

        # The hold outlives a restart, although the node has written to its new store.
        node.stop()
        node.start()
        status = _passes_well_past_an_interval(node)
        assert status["store"]["hold"]["kind"] == "missing"
        assert cid in _running_ids(node)

        refused = node.cli("reset")
        assert refused.returncode == 2 and "--i-mean-it" in refused.stderr
        out = node.cli("reset", "--i-mean-it", check=True).stdout
        assert "store hold ended" in out
        wait_for(lambda: not node.containers(), timeout=60, what="the orphan removed")
        assert node.status()["store"]["hold"] is None


def _flip_a_byte_of_the_apply(db: Path) -> None:
    """Flip one byte of the stored fleet update so that it no longer decodes."""
    with sqlite3.connect(db) as conn:
        seq, data = conn.execute(
            "SELECT seq, data FROM updates WHERE doc = 'fleet' ORDER BY seq LIMIT 1"
        ).fetchone()
        for i in range(len(data)):
            bad = data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1 :]
            if apply_update_safely(Doc(), bad) is not None:
                break
        else:
            raise AssertionError("no single flipped byte makes the update undecodable")
        conn.execute("UPDATE updates SET data = ? WHERE seq = ?", (bad, seq))


def test_a_damaged_update_holds_the_container_and_reports_data_loss() -> None:
    with running_node() as node:
        cid = _run_workload(node)
        node.stop(signal.SIGKILL)  # no snapshot at shutdown: the update is replayed at start
        _flip_a_byte_of_the_apply(node.data_dir / "state.db")
        node.start()

        status = _passes_well_past_an_interval(node)
        assert cid in _running_ids(node)
        store = status["store"]
        assert store["healthy"] is False and store["load_problems"] == 1
        assert store["hold"]["kind"] == "undecodable"
        assert "could not be decoded" in store["error"]
        doctor = node.cli("doctor")
        assert doctor.returncode == 1
        assert "could not be decoded" in doctor.stdout


def test_a_store_that_cannot_be_opened_is_set_aside_and_the_node_holds() -> None:
    with running_node() as node:
        cid = _run_workload(node)
        node.stop()
        for f in _store_files(node.data_dir):
            f.unlink(missing_ok=True)
        (node.data_dir / "state.db").write_bytes(b"this is no SQLite database " * 400)
        node.start()

        status = _passes_well_past_an_interval(node)
        assert cid in _running_ids(node)
        hold = status["store"]["hold"]
        assert hold["kind"] == "unreadable" and "set aside as state.db.damaged-" in hold["reason"]
        (aside,) = node.data_dir.glob("state.db.damaged-*")
        assert aside.read_bytes().startswith(b"this is no SQLite database")
        assert node.cli("doctor").returncode == 1
