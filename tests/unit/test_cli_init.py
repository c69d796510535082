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
