"""`noderuntime init` writes a whole node or nothing (no daemon needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from noderuntime.cli.main import EXIT_OK, EXIT_USAGE, main
from noderuntime.identity.technicians import TechnicianStore, hash_pin


def test_init_that_fails_late_leaves_nothing_behind_and_can_be_retried(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "node"
    pin_hash = hash_pin("4711")
    base = ["--data-dir", str(data), "init", "--node-id", "n1", "--site", "lab"]
    # The same technician twice is only noticed after the key and config were written.
    bad = [*base, "--technician", f"ann={pin_hash}", "--technician", f"ann={pin_hash}"]
    assert main(bad) == EXIT_USAGE
    assert "named twice" in capsys.readouterr().err
    assert not (data / "identity.key").exists() and not (data / "node.yaml").exists()

    assert main([*base, "--technician", f"ann={pin_hash}"]) == EXIT_OK
    assert TechnicianStore(data).verify("ann", "4711") == "technician:ann"
    assert main(base) == 1  # now it is a node: refused, not overwritten
    assert "refusing to overwrite" in capsys.readouterr().err


def test_init_writes_the_site_cluster_and_refuses_a_bad_cluster_peer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from noderuntime.config.model import load_config

    data = tmp_path / "node"
    base = ["--data-dir", str(data), "init", "--node-id", "n1", "--site", "lab"]
    bad = [*base, "--cluster-port", "6222", "--cluster-peer", "nats-leaf://n2:6222"]
    assert main(bad) == EXIT_USAGE
    assert "nats-route://" in capsys.readouterr().err
    peers = ["--cluster-peer", "nats-route://n2:6222", "--cluster-peer", "nats-route://n3:6222"]
    assert main([*base, "--cluster-port", "6222", *peers]) == EXIT_OK
    config = load_config(data)
    assert config.cluster_port == 6222
    assert config.cluster_peers == ["nats-route://n2:6222", "nats-route://n3:6222"]
    assert config.clustered
