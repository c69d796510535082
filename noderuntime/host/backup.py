"""`noderuntime backup` and `noderuntime restore`: a node's data in one archive, consistently.

The CRDT store is a SQLite database in WAL mode that the running node writes to; copying its
files could catch a commit half-way. The backup reads it through SQLite's online backup API
(one read transaction: a consistent snapshot, taken while the node keeps running). Everything
else the node owns is small, written atomically, and copied as it is:

    noderuntime-backup.json   manifest (format, version, node, schema, original paths)
    config/node.yaml          the node config (wherever it lives, e.g. /etc/noderuntime)
    data/state.db             the store snapshot
    data/...                  identity.key, fleet/ (trust, credentials), technicians.json, ...

Left out: sockets, the store's -wal/-shm files (the snapshot holds their content),
``nats/`` (nats-server's generated config and scratch state, rebuilt at every start) and
``audit.db`` (the audit trail is evidence: a restore must not roll it back; export it with
``noderuntime audit export`` to keep a copy).

Restore writes a backup into a data directory with no node in it (``--force`` replaces one),
and refuses while a node answers on the control socket. The archive holds the node's private
key: it is written 0600 and must be kept like the key itself.

Restore treats the archive as untrusted input (it runs as root and archives travel): it writes
only into the data dir and config path of the node being restored, never to a path the
manifest names; it accepts only the members a backup holds (plain files under ``config/`` and
``data/``; no links, devices, absolute paths or ``..``); it validates the manifest and the config
strictly; and it checks all of that before writing anything.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import shutil
import socket
import sqlite3
import tempfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

if TYPE_CHECKING:
    import tarfile

from noderuntime import __version__
from noderuntime.config.model import (
    API_SOCKET_FILE,
    AUDIT_DB_FILE,
    CONFIG_FILE,
    IDENTITY_FILE,
    MAX_CONFIG_BYTES,
    PODMAN_SOCKET_FILE,
    STATE_DB_FILE,
    NodePaths,
    load_config,
    parse_config,
    validate_id,
)
from noderuntime.crdt.mark import MARK_FILE, accept_store
from noderuntime.errors import ConfigError, NodeRuntimeError
from noderuntime.host.reserve import RESERVE_FILE

# Backup archive format. 1 (2026-11-26): manifest + config/ + data/, gzip-compressed tar.
BACKUP_FORMAT = 1
MANIFEST = "noderuntime-backup.json"
# secrets.tmpfs: the plaintext of containers' secrets, a tmpfs that must never reach a backup.
# audit.db stays out: restoring an older audit log would roll its chain back (hubs would see it
# as truncated), and a restore leaves the node's own audit.db where it is.
SKIP_TOP = {
    API_SOCKET_FILE,
    PODMAN_SOCKET_FILE,
    "nats",
    "secrets.tmpfs",
    AUDIT_DB_FILE,
    RESERVE_FILE,
    RESERVE_FILE + ".tmp",
}
SKIP_SUFFIXES = ("-wal", "-shm", "-journal", ".tmp")
ARCHIVE_MODE = 0o600
# The manifest is a few hundred bytes; read no more than this of what claims to be one.
MAX_MANIFEST_BYTES = 64 * 1024


class BackupError(NodeRuntimeError):
    """A backup could not be made or restored; the message says why and what to do."""


class InvalidBackupError(BackupError):
    """The archive given to restore is damaged, foreign or crafted; nothing was written."""

    code = "invalid_backup"


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


def _refuse(name: str, why: str) -> InvalidBackupError:
    return InvalidBackupError(
        f"refusing archive member {name!r}: {why}; this is not a backup made by noderuntime"
    )


def _member_kind(member: tarfile.TarInfo) -> str:
    if member.issym():
        return "a symbolic link"
    if member.islnk():
        return "a hard link"
    if member.isdir():
        return "a directory"
    if member.ischr() or member.isblk():
        return "a device"
    if member.isfifo():
        return "a fifo"
    return "not a plain file"


def _member_dest(member: tarfile.TarInfo) -> str | None:
    """Check one member; return the data-dir relative path it restores to, "" for the config,
    None for the manifest. Only what :func:`backup` writes passes."""
    name = member.name
    p = PurePosixPath(name)
    if p.is_absolute():
        raise _refuse(name, "an absolute path")
    if ".." in p.parts:
        raise _refuse(name, "a path with '..'")
    if p.as_posix() != name or "\\" in name or not name.isprintable():
        raise _refuse(name, "not a plain relative path")
    if not member.isreg():
        raise _refuse(name, _member_kind(member))
    if name == MANIFEST:
        return None
    if name == f"config/{CONFIG_FILE}":
        return ""
    if p.parts[0] != "data" or len(p.parts) < 2:
        raise _refuse(name, "outside config/ and data/")
    rel = PurePosixPath(*p.parts[1:])
    if rel.parts[0] in SKIP_TOP or rel.name.endswith(SKIP_SUFFIXES) or rel.name.startswith("."):
        raise _refuse(name, "a file a backup never holds")
    return rel.as_posix()


class Manifest(BaseModel):
    """``noderuntime-backup.json``, format 1. Paths in it are informational only: a restore
    writes where the node being restored keeps its files, never where the archive says."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    format: Literal[1]
    noderuntime_version: str = Field(alias="noderuntimeVersion", max_length=200)
    node_id: str = Field(alias="nodeId")
    site: str
    created_at: float = Field(alias="createdAt", ge=0)
    store_schema: int | None = Field(alias="storeSchema", ge=0)
    data_dir: str = Field(alias="dataDir", max_length=4096)
    config_file: str = Field(alias="configFile", max_length=4096)

    @field_validator("node_id")
    @classmethod
    def _node_id(cls, v: str) -> str:
        return validate_id("node id", v)

    @field_validator("site")
    @classmethod
    def _site(cls, v: str) -> str:
        return validate_id("site", v)


def _read_member(tar: tarfile.TarFile, member: tarfile.TarInfo, limit: int) -> bytes:
    if member.size > limit:
        raise InvalidBackupError(
            f"{member.name} in the archive is {member.size} bytes, more than a backup holds "
            f"({limit}); this is not a backup made by noderuntime"
        )
    src = tar.extractfile(member)
    if src is None:
        raise InvalidBackupError(f"cannot read {member.name} from the archive")
    return src.read(limit + 1)


def _parse_manifest(blob: bytes) -> Manifest:
    try:
        data = json.loads(blob.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise InvalidBackupError(f"its manifest {MANIFEST} is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidBackupError(f"its manifest {MANIFEST} is not a JSON object")
    if data.get("format") != BACKUP_FORMAT:
        raise InvalidBackupError(
            f"unknown backup format {data.get('format')!r} (this noderuntime reads format "
            f"{BACKUP_FORMAT}); restore it with the noderuntime that made it"
        )
    try:
        return Manifest.model_validate(data)
    except (ValidationError, ConfigError) as exc:
        if isinstance(exc, ConfigError):
            problems = str(exc)
        else:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
            )
        raise InvalidBackupError(f"its manifest {MANIFEST} is invalid: {problems}") from exc


@dataclass(frozen=True)
class _Checked:
    """An archive that passed every check, before anything is written."""

    manifest: Manifest
    config: bytes
    data: list[tuple[tarfile.TarInfo, str]]


def _check_archive(tar: tarfile.TarFile) -> _Checked:
    seen: set[str] = set()
    manifest_member: tarfile.TarInfo | None = None
    config_member: tarfile.TarInfo | None = None
    data: list[tuple[tarfile.TarInfo, str]] = []
    for member in tar.getmembers():
        dest = _member_dest(member)
        if member.name in seen:
            raise _refuse(member.name, "it is in the archive twice")
        seen.add(member.name)
        if dest is None:
            manifest_member = member
        elif dest == "":
            config_member = member
        else:
            data.append((member, dest))
    if manifest_member is None:
        raise InvalidBackupError(f"it holds no manifest ({MANIFEST})")
    manifest = _parse_manifest(_read_member(tar, manifest_member, MAX_MANIFEST_BYTES))
    if config_member is None:
        raise InvalidBackupError(f"it holds no node config (config/{CONFIG_FILE})")
    config_blob = _read_member(tar, config_member, MAX_CONFIG_BYTES)
    try:
        config = parse_config(config_blob, f"config/{CONFIG_FILE} in the archive")
    except ConfigError as exc:
        raise InvalidBackupError(str(exc)) from exc
    if (config.node_id, config.site) != (manifest.node_id, manifest.site):
        raise InvalidBackupError(
            f"its config is for node {config.node_id} (site {config.site}) but its manifest "
            f"says {manifest.node_id} (site {manifest.site})"
        )
    dests = {dest for _, dest in data}
    if IDENTITY_FILE not in dests:
        raise InvalidBackupError(f"it holds no node identity (data/{IDENTITY_FILE})")
    if (STATE_DB_FILE in dests) != (manifest.store_schema is not None):
        raise InvalidBackupError(
            f"its manifest and its data/{STATE_DB_FILE} disagree on whether it holds a store"
        )
    return _Checked(manifest, config_blob, data)


def restore(archive: Path, data_dir: Path, config_file: Path | None, *, force: bool) -> str:
    """Restore ``archive`` into ``data_dir`` and ``config_file`` (default: the data dir's
    node.yaml); return the restored node id.

    Everything in the archive is checked before anything is written; a damaged archive found
    only while copying (a truncated store) leaves the node as it was.
    """
    import tarfile  # lazily: only backup/restore need it, not the daemon

    config_file = config_file or data_dir / CONFIG_FILE
    try:
        with tarfile.open(archive, mode="r:gz") as tar:
            checked = _check_archive(tar)
            _check_target(data_dir, config_file, force=force)
            _write(tar, checked, data_dir, config_file)
            # The restored store is the truth now: no mark of the store it replaced may hold it.
            accept_store(data_dir / MARK_FILE, "restore")
            return checked.manifest.node_id
    except InvalidBackupError as exc:
        raise InvalidBackupError(f"cannot restore from {archive}: {exc}") from exc
    except BackupError:
        raise
    except FileNotFoundError as exc:
        raise BackupError(f"cannot restore: {archive} does not exist") from exc
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise InvalidBackupError(
            f"cannot restore from {archive}: it is not a whole gzip-compressed tar archive "
            f"({exc or type(exc).__name__}); is it damaged or truncated?"
        ) from exc
    except OSError as exc:
        raise BackupError(f"cannot restore from {archive}: {exc}") from exc


def _check_target(data_dir: Path, config_file: Path, *, force: bool) -> None:
    present = [
        p for p in (config_file, data_dir / IDENTITY_FILE, data_dir / STATE_DB_FILE) if p.exists()
    ]
    if not present:
        return
    sock = NodePaths(data_dir).api_socket
    with contextlib.suppress(NodeRuntimeError):
        sock = NodePaths(data_dir, load_config(data_dir, config_file)).api_socket
    if _node_answers(sock):
        raise BackupError(
            f"a node is running on {sock}: stop it first (systemctl stop noderuntime), then restore"
        )
    if not force:
        raise BackupError(
            f"{', '.join(map(str, present))} already exist(s): restoring would replace "
            "this node; add --force to do so"
        )


def _parent_inside(data_dir: Path, dest: str) -> Path:
    """The directory ``dest`` goes in, made if need be; never through a symlink out of the
    data dir (one already there is local state, but a restore must not follow it)."""
    cur = data_dir
    for part in PurePosixPath(dest).parts[:-1]:
        cur = cur / part
        if cur.is_symlink() or (cur.exists() and not cur.is_dir()):
            raise BackupError(f"{cur} is not a directory of the node; move it away and retry")
        cur.mkdir(exist_ok=True, mode=0o700)
    return cur


def _write(tar: tarfile.TarFile, checked: _Checked, data_dir: Path, config_file: Path) -> None:
    """Copy the data files into a staging directory first, so that an archive truncated
    half-way through the store leaves the node as it was; then move them into place."""
    created = not data_dir.exists()
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(data_dir, 0o700)
    staging = Path(tempfile.mkdtemp(prefix=".restore-", dir=data_dir))
    try:
        for i, (member, _dest) in enumerate(checked.data):
            src = tar.extractfile(member)
            if src is None:
                raise InvalidBackupError(f"cannot read {member.name} from the archive")
            fd = os.open(staging / str(i), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                shutil.copyfileobj(src, fh)
                fh.flush()
                os.fsync(fh.fileno())
        for name in (STATE_DB_FILE, f"{STATE_DB_FILE}-wal", f"{STATE_DB_FILE}-shm"):
            (data_dir / name).unlink(missing_ok=True)
        for i, (_member, dest) in enumerate(checked.data):
            os.replace(staging / str(i), _parent_inside(data_dir, dest) / PurePosixPath(dest).name)
        config_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = config_file.with_name(config_file.name + ".restore")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o640)
        with os.fdopen(fd, "wb") as fh:
            fh.write(checked.config)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o640)
        os.replace(tmp, config_file)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if created:
            shutil.rmtree(data_dir, ignore_errors=True)
        raise
    shutil.rmtree(staging, ignore_errors=True)
