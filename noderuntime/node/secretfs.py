"""The node's tmpfs for secrets: where a container's secrets are opened and written, never a disk.

``<data dir>/secrets.tmpfs`` is a tmpfs the node mounts when it first opens a secret (mode
0700, nosuid, nodev, noexec; a node that runs no secret mounts nothing) and detaches when it
stops. Each container with secrets gets one directory there (``<workload>.<digest>``, 0700)
holding one file per secret (0400), bind-mounted read-only into the container. A file is
written only if the directory really is on a tmpfs (checked before every write): where no
tmpfs can be mounted (not root), workloads with secrets stay Pending, and the mount is tried
again at their next attempt.

Detaching at stop takes the files out of the host's view; running containers keep their own
mounts. A container started again afterwards (a crash after the node restarted, a reboot) has
its files written again first (:meth:`SecretFS.present`).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from noderuntime.errors import SecretError
from noderuntime.identity.sealing import Sealed, open_sealed
from noderuntime.reconcile.secrets import SecretFile

SECRETS_TMPFS_DIR = "secrets.tmpfs"
TMPFS_OPTIONS = "mode=0700,size=16m,nosuid,nodev,noexec"
MOUNT_TIMEOUT_S = 10.0
FILE_MODE = 0o400
DIR_MODE = 0o700

log = logging.getLogger(__name__)


def is_tmpfs(path: Path) -> bool:
    """Whether ``path`` is the mount point of a tmpfs (read from /proc/self/mountinfo)."""
    target = str(path.resolve())
    found = False
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return False
    for line in lines:
        left, _, right = line.partition(" - ")
        fields = left.split()
        if len(fields) > 4 and _unescape(fields[4]) == target:
            found = right.split(" ", 1)[0] == "tmpfs"  # the last mount on a path wins
    return found


def _unescape(text: str) -> str:
    return text.replace("\\040", " ").replace("\\011", "\t").replace("\\134", "\\")


def _owner(user: str | None) -> int | None:
    """The numeric uid of a spec's ``user`` ("1000" or "1000:1000"); None for a name."""
    if not user:
        return None
    uid = user.partition(":")[0]
    return int(uid) if uid.isdigit() else None


class SecretFS:
    """:class:`noderuntime.reconcile.secrets.SecretFiles` on a tmpfs under the data dir."""

    def __init__(self, data_dir: Path, key: X25519PrivateKey, node_id: str) -> None:
        self.root = data_dir / SECRETS_TMPFS_DIR
        self._key = key
        self._node_id = node_id
        # Why no tmpfs could be had at the last try; workloads with secrets show it.
        self.problem: str | None = None
        self._mounted = False

    def setup(self) -> None:
        """At start: a tmpfs left mounted by a node that was killed is emptied and reused."""
        if self.root.is_dir() and is_tmpfs(self.root):
            self._clear()
            self._mounted = True

    def _mount(self) -> None:
        self.problem = None
        self.root.mkdir(mode=DIR_MODE, exist_ok=True)
        os.chmod(self.root, DIR_MODE)
        try:
            subprocess.run(
                ["mount", "-t", "tmpfs", "-o", TMPFS_OPTIONS, "tmpfs", str(self.root)],
                check=True,
                capture_output=True,
                timeout=MOUNT_TIMEOUT_S,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            detail = exc.stderr if isinstance(exc, subprocess.CalledProcessError) else b""
            self.problem = (
                f"could not mount a tmpfs at {self.root} for secrets: "
                f"{(detail or b'').decode(errors='replace').strip() or exc}"
            )
            log.warning("%s; workloads with secrets stay Pending", self.problem)
            return
        self._mounted = is_tmpfs(self.root)
        log.info("mounted a tmpfs for secrets at %s", self.root)

    def teardown(self) -> None:
        if not self._mounted:
            return
        try:
            subprocess.run(
                ["umount", "-l", str(self.root)],
                check=True,
                capture_output=True,
                timeout=MOUNT_TIMEOUT_S,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            log.warning("could not detach the secrets tmpfs %s: %s", self.root, exc)
        self._mounted = False

    def _clear(self) -> None:
        for child in self.root.iterdir():
            shutil.rmtree(child, ignore_errors=True)

    def host_dir(self, key: str) -> str:
        return str(self.root / key)

    def present(self, key: str) -> bool:
        return self._mounted and (self.root / key).is_dir()

    def write(self, key: str, files: Sequence[SecretFile], owner: str | None) -> None:
        if not self._mounted:
            self._mount()
        if self.problem is not None:
            raise SecretError(self.problem)
        if not is_tmpfs(self.root):
            raise SecretError(f"{self.root} is not a tmpfs any more; not writing a secret there")
        plain = [
            (
                f.relpath,
                open_sealed(
                    Sealed.from_wire(dict(f.sealed)),
                    self._key,
                    name=f.name,
                    node_id=self._node_id,
                    version=f.version,
                ),
            )
            for f in files
        ]
        target = self.root / key
        partial = self.root / f".{key}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(mode=DIR_MODE)
        uid = _owner(owner)
        for relpath, value in plain:
            path = partial / relpath
            path.parent.mkdir(mode=DIR_MODE, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
            with os.fdopen(fd, "wb") as fh:
                fh.write(value)
            if uid is not None:
                os.chown(path, uid, -1)
        if uid is not None:
            for d in [partial, *(p for p in partial.rglob("*") if p.is_dir())]:
                os.chown(d, uid, -1)
        shutil.rmtree(target, ignore_errors=True)
        partial.rename(target)

    def sweep(self, keep: set[str]) -> None:
        if not self._mounted:
            return
        for child in self.root.iterdir():
            if child.name not in keep:
                shutil.rmtree(child, ignore_errors=True)
