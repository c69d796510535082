"""Room to start on a full disk: a small reserve file in the data dir (a "ballast" file).

SQLite must create a database's ``-wal`` and ``-shm`` files to open it in WAL mode, and on a
file system with no free block it cannot ("disk I/O error"). A node restarted on a full disk (a
container's logs filled it, then a power cut or a watchdog restarted the node) would not start
at all: no control API, no TUI for the technician who came to fix it, no sync, no restarts of
crashed containers. So the node keeps ``RESERVE_BYTES`` in ``space.reserve`` and gives them
back when it finds the disk full at start; it makes the reserve again at a later start once
there is room. A running node never touches it: its writes fail with a clear error while the
disk is full, and the reserve stays for the next start.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

RESERVE_FILE = "space.reserve"
RESERVE_BYTES = 8 * 1024 * 1024
# Below this free at start, the reserve is released (opening the databases needs ~100 KiB).
FULL_BELOW_BYTES = 1024 * 1024
# The reserve is made only with this much free, so making it never fills a disk itself.
MAKE_ABOVE_BYTES = 4 * RESERVE_BYTES


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def release_if_full(data_dir: Path) -> str | None:
    """Delete the reserve if the disk is full; returns what was done (for the log), or None."""
    path = data_dir / RESERVE_FILE
    try:
        if free_bytes(data_dir) >= FULL_BELOW_BYTES:
            return None
        size = path.stat().st_size
        path.unlink()
    except FileNotFoundError:
        return None
    return (
        f"the file system of {data_dir} was full at start: released the node's "
        f"{size // 1024 // 1024} MiB reserve ({RESERVE_FILE}) to start; free space there "
        "(writes fail until then), and the node makes the reserve again at a later start"
    )


def keep_reserve(data_dir: Path) -> bool:
    """Make the reserve if it is missing and there is room; True if it is held."""
    path = data_dir / RESERVE_FILE
    if path.exists():
        return True
    if free_bytes(data_dir) < MAKE_ABOVE_BYTES:
        return False
    tmp = path.with_name(RESERVE_FILE + ".tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            # Allocated, not sparse: the blocks must really be there to be given back.
            os.posix_fallocate(fd, 0, RESERVE_BYTES)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()
        return False
    return True


def reserve_held(data_dir: Path) -> bool:
    return (data_dir / RESERVE_FILE).exists()
