"""`noderuntime backup` and `noderuntime restore`: a node's data in one archive, consistently.

The CRDT store is a SQLite database in WAL mode that the running node writes to; copying its
files could catch a commit half-way. The backup reads it through SQLite's online backup API
(one read transaction: a consistent snapshot, taken while the node keeps running). Everything
else the node owns is small, written atomically, and copied as it is:

    noderuntime-backup.json   manifest (format, version, node, schema, original paths)
    config/node.yaml          the node config (wherever it lives, e.g. /etc/noderuntime)
    data/state.db             the store snapshot
    data/...                  identity.key, fleet/ (trust, credentials), technicians.json, ...

Left out: sockets, the store's -wal/-shm files (the snapshot holds their content) and
``nats/`` (nats-server's generated config and scratch state, rebuilt at every start).

Restore writes a backup into a data directory with no node in it (``--force`` replaces one),
and refuses while a node answers on the control socket. The archive holds the node's private
key: it is written 0600 and must be kept like the key itself.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import socket
import sqlite3
import tempfile
import time
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import tarfile

from noderuntime import __version__
from noderuntime.config.model import (
    API_SOCKET_FILE,
    CONFIG_FILE,
    IDENTITY_FILE,
    PODMAN_SOCKET_FILE,
    STATE_DB_FILE,
    NodePaths,
    load_config,
)
from noderuntime.errors import NodeRuntimeError

# Backup archive format. 1 (2026-11-26): manifest + config/ + data/, gzip-compressed tar.
BACKUP_FORMAT = 1
MANIFEST = "noderuntime-backup.json"
SKIP_TOP = {API_SOCKET_FILE, PODMAN_SOCKET_FILE, "nats"}
SKIP_SUFFIXES = ("-wal", "-shm", "-journal", ".tmp")
ARCHIVE_MODE = 0o600


class BackupError(NodeRuntimeError):
    """A backup could not be made or restored; the message says why and what to do."""


def _snapshot_db(src: Path, dst: Path) -> int:
    """Copy a live SQLite database consistently; return its schema version (user_version)."""
    try:
        with (
            sqlite3.connect(f"file:{src}?mode=ro", uri=True, timeout=10) as source,
            sqlite3.connect(dst) as target,
        ):
            source.backup(target)
            version = int(target.execute("PRAGMA user_version").fetchone()[0])
            # The copy stands alone: no WAL beside it.
            target.execute("PRAGMA journal_mode=DELETE")
        return version
    except sqlite3.Error as exc:
        raise BackupError(f"cannot read the store {src}: {exc}") from exc


def backup(data_dir: Path, config_file: Path, out: Path) -> dict[str, Any]:
    """Write a backup archive of the node in ``data_dir`` to ``out``; return its manifest."""
    import tarfile  # lazily: only backup/restore need it, not the daemon

    config = load_config(data_dir, config_file)
    if not (data_dir / IDENTITY_FILE).exists():
        raise BackupError(f"{data_dir} holds no node identity; nothing to back up")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".nr-backup-", dir=out.parent) as tmp:
        schema = None
        db = data_dir / STATE_DB_FILE
        snapshot = Path(tmp) / STATE_DB_FILE
        if db.exists():
            schema = _snapshot_db(db, snapshot)
        manifest: dict[str, Any] = {
            "format": BACKUP_FORMAT,
            "noderuntimeVersion": __version__,
            "nodeId": config.node_id,
            "site": config.site,
            "createdAt": time.time(),
            "storeSchema": schema,
            "dataDir": str(data_dir),
            "configFile": str(config_file),
        }
        partial = Path(tmp) / "archive.tar.gz"
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, ARCHIVE_MODE)
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
            blob = json.dumps(manifest, indent=2).encode()
            info = tarfile.TarInfo(MANIFEST)
            info.size, info.mtime, info.mode = len(blob), int(time.time()), 0o600
            tar.addfile(info, io.BytesIO(blob))
            tar.add(config_file, arcname=f"config/{CONFIG_FILE}", recursive=False)
            if schema is not None:
                tar.add(snapshot, arcname=f"data/{STATE_DB_FILE}", recursive=False)
            for path in sorted(data_dir.rglob("*")):
                rel = path.relative_to(data_dir)
                if rel.parts[0] in SKIP_TOP or path == config_file:
                    continue
                if rel.name == STATE_DB_FILE or rel.name.endswith(SKIP_SUFFIXES):
                    continue
                if path.is_file() and not path.is_symlink():
                    tar.add(path, arcname=f"data/{rel.as_posix()}", recursive=False)
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(partial, out)
    return manifest


def _node_answers(sock: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(2)
        try:
            s.connect(str(sock))
        except OSError:
            return False
    return True


def _member_target(name: str, data_dir: Path, config_file: Path) -> Path | None:
    """Where an archive member goes; None for the manifest. Refuses anything unexpected."""
    p = PurePosixPath(name)
    if p.is_absolute() or ".." in p.parts:
        raise BackupError(f"refusing archive member {name!r}: not a backup made by noderuntime")
    if name == MANIFEST:
        return None
    if name == f"config/{CONFIG_FILE}":
        return config_file
    if p.parts[0] == "data" and len(p.parts) > 1:
        return data_dir.joinpath(*p.parts[1:])
    raise BackupError(f"refusing archive member {name!r}: not a backup made by noderuntime")


def restore(archive: Path, data_dir: Path, config_file: Path | None, *, force: bool) -> str:
    """Restore ``archive`` into ``data_dir``; return the restored node id."""
    import tarfile  # lazily: only backup/restore need it, not the daemon

    try:
        with tarfile.open(archive, mode="r:gz") as tar:
            return _restore_from(tar, archive, data_dir, config_file, force=force)
    except (OSError, tarfile.TarError) as exc:
        raise BackupError(f"cannot restore from {archive}: {exc}") from exc


def _restore_from(
    tar: tarfile.TarFile, archive: Path, data_dir: Path, config_file: Path | None, *, force: bool
) -> str:
    try:
        manifest = json.load(tar.extractfile(MANIFEST) or io.BytesIO(b"null"))
    except (KeyError, ValueError) as exc:
        raise BackupError(f"{archive} is not a noderuntime backup (no manifest)") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != BACKUP_FORMAT:
        raise BackupError(f"{archive}: unknown backup format; use a matching noderuntime")
    if config_file is None:
        # Where it was, unless it lived in the old data dir: then in the new one.
        old, old_dir = Path(manifest["configFile"]), Path(manifest["dataDir"])
        config_file = data_dir / old.relative_to(old_dir) if old.is_relative_to(old_dir) else old
    present = [
        p for p in (config_file, data_dir / IDENTITY_FILE, data_dir / STATE_DB_FILE) if p.exists()
    ]
    if present:
        sock = NodePaths(data_dir).api_socket
        with contextlib.suppress(NodeRuntimeError):
            sock = NodePaths(data_dir, load_config(data_dir, config_file)).api_socket
        if _node_answers(sock):
            raise BackupError(
                f"a node is running on {sock}: stop it first (systemctl stop noderuntime), "
                "then restore"
            )
        if not force:
            raise BackupError(
                f"{', '.join(map(str, present))} already exist(s): restoring would replace "
                "this node; add --force to do so"
            )
        for name in (STATE_DB_FILE, f"{STATE_DB_FILE}-wal", f"{STATE_DB_FILE}-shm"):
            (data_dir / name).unlink(missing_ok=True)
    members = tar.getmembers()
    targets = [(m, _member_target(m.name, data_dir, config_file)) for m in members]
    for member, target in targets:
        if target is not None and not member.isfile():
            raise BackupError(f"refusing archive member {member.name!r}: not a plain file")
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(data_dir, 0o700)
    for member, target in targets:
        if target is None:
            continue
        src = tar.extractfile(member)
        if src is None:
            raise BackupError(f"cannot read {member.name} from {archive}")
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = target.with_name(target.name + ".restore")
        with open(tmp, "wb") as fh:
            shutil.copyfileobj(src, fh)
        os.chmod(tmp, 0o640 if target == config_file else 0o600)
        os.replace(tmp, target)
    return str(manifest.get("nodeId", "?"))
