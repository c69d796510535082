"""`noderuntime backup` / `restore`: a consistent store copy while a writer holds the WAL."""

from __future__ import annotations

import io
import socket
import sqlite3
import stat
import tarfile
from pathlib import Path

import pytest

from noderuntime.cli import main as cli
from noderuntime.host.backup import BackupError, restore


def _init(data_dir: Path) -> None:
    assert cli.main(["--data-dir", str(data_dir), "init", "--node-id", "n1", "--site", "s"]) == 0


def _live_store(data_dir: Path, rows: int) -> sqlite3.Connection:
    """A WAL database with commits still only in the WAL, its writer connection left open."""
    db = sqlite3.connect(data_dir / "state.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA wal_autocheckpoint=0")
    db.execute("PRAGMA user_version=2")
    db.execute("CREATE TABLE updates (seq INTEGER PRIMARY KEY, data BLOB)")
    for i in range(rows):
        db.execute("INSERT INTO updates (data) VALUES (?)", (f"u{i}".encode(),))
    assert (data_dir / "state.db-wal").stat().st_size > 0
    return db


def test_backup_of_a_live_store_restores_every_committed_update(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    _init(src)
    (src / "fleet").mkdir()
    (src / "fleet" / "trust.json").write_text("{}")
    (src / "nats").mkdir()
    (src / "nats" / "nats-server.conf").write_text("scratch")
    writer = _live_store(src, 500)
    try:
        archive = tmp_path / "b.tar.gz"
        assert cli.main(["--data-dir", str(src), "backup", "-o", str(archive)]) == 0
        # A write after the snapshot is not in it.
        writer.execute("INSERT INTO updates (data) VALUES (x'00')")
    finally:
        writer.close()
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert "data/state.db-wal" not in names and not any(n.startswith("data/nats") for n in names)

    assert cli.main(["--data-dir", str(dst), "restore", str(archive)]) == 0
    with sqlite3.connect(dst / "state.db") as copy:
        assert copy.execute("SELECT count(*) FROM updates").fetchone()[0] == 500
        assert copy.execute("PRAGMA user_version").fetchone()[0] == 2
        assert copy.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert (dst / "identity.key").read_bytes() == (src / "identity.key").read_bytes()
    assert stat.S_IMODE((dst / "identity.key").stat().st_mode) == 0o600
    assert (dst / "node.yaml").read_text() == (src / "node.yaml").read_text()
    assert (dst / "fleet" / "trust.json").read_text() == "{}"

    # Over an existing node: only with --force.
    with pytest.raises(BackupError, match="--force"):
        restore(archive, dst, None, force=False)
    assert cli.main(["--data-dir", str(dst), "restore", "--force", str(archive)]) == 0


def test_restore_refuses_while_the_node_answers(tmp_path: Path) -> None:
    src = tmp_path / "n"
    _init(src)
    _live_store(src, 3).close()
    archive = tmp_path / "b.tar.gz"
    assert cli.main(["--data-dir", str(src), "backup", "-o", str(archive)]) == 0
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(src / "api.sock"))
        s.listen()
        with pytest.raises(BackupError, match="stop it first"):
            restore(archive, src, None, force=True)


def test_restore_refuses_foreign_archives(tmp_path: Path) -> None:
    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as tar:
        for name, blob in (
            ("noderuntime-backup.json", b'{"format": 1, "configFile": "/x", "dataDir": "/y"}'),
            ("data/../../escape", b"x"),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    with pytest.raises(BackupError, match="refusing"):
        restore(evil, tmp_path / "d", tmp_path / "node.yaml", force=False)
    assert not (tmp_path / "escape").exists()
