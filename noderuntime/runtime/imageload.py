"""Loading images from a file on the node (a USB stick, a mounted path): verify, then apply.

Three steps, each one a function, so a signed update bundle can later take the same path
(docs/architecture.md, "Offline loads"):

1. :func:`open_source` opens the file once. Everything after reads that one open file, so what
   is verified is what is applied even if the stick is swapped or the file rewritten meanwhile.
2. A verifier turns the source into a :class:`VerifiedLoad`, or raises; it changes nothing.
   :func:`verify_image_archive` checks a plain archive's index (the technician's PIN is what
   vouches for its content). A bundle verifier will check the operator's signature over the
   bundle's manifest (image digests and signed state updates) first.
3. :func:`apply_load` hands the verified images to the runtime and reports progress. Nothing
   is applied from a load that did not verify.
"""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Protocol

from noderuntime.errors import ImageArchiveError
from noderuntime.runtime.base import ContainerRuntime
from noderuntime.runtime.images import ArchiveFacts, archive_path, inspect_archive

LOAD_CHUNK_BYTES = 1024 * 1024
# Where a technician's archives are: removable media and mounts (FHS).
ARCHIVE_ROOTS: tuple[Path, ...] = (Path("/media"), Path("/mnt"))
ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".oci", ".docker")
ARCHIVE_SEARCH_DEPTH = 3
MAX_ARCHIVES_LISTED = 200

TRUST_TECHNICIAN = "technician"  # a plain archive, loaded on a technician's PIN


@dataclass
class OpenedSource:
    """The file a load reads, opened once."""

    path: Path
    fh: BinaryIO
    size_bytes: int

    def close(self) -> None:
        self.fh.close()


@dataclass(frozen=True)
class VerifiedLoad:
    """What a verifier vouches for: all that :func:`apply_load` may use."""

    source: OpenedSource
    archive: ArchiveFacts
    trust: str  # who vouches: TRUST_TECHNICIAN, or (later) the operator who signed a bundle


class Verifier(Protocol):
    def __call__(self, source: OpenedSource) -> VerifiedLoad: ...


@dataclass
class LoadProgress:
    """How far a load is; read by whoever reports it while the load runs."""

    total_bytes: int
    sent_bytes: int = 0
    names: list[str] = field(default_factory=list)


def open_source(raw: str) -> OpenedSource:
    """Open the named archive: a regular file, by full path."""
    path = archive_path(raw)
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed by OpenedSource.close
    except OSError as exc:
        raise ImageArchiveError(f"cannot open {path}: {exc.strerror}") from None
    st = os.fstat(fh.fileno())
    if not stat.S_ISREG(st.st_mode):
        fh.close()
        raise ImageArchiveError(f"{path} is not a regular file")
    return OpenedSource(path, fh, st.st_size)


def verify_image_archive(source: OpenedSource) -> VerifiedLoad:
    """A plain docker or OCI archive: its index must say what it holds."""
    facts = inspect_archive(source.fh, source.size_bytes, str(source.path))
    return VerifiedLoad(source, facts, TRUST_TECHNICIAN)


async def _chunks(source: OpenedSource, progress: LoadProgress) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    source.fh.seek(0)
    while True:
        # A USB stick can be slow: never block the node's loop on a read.
        chunk = await loop.run_in_executor(None, source.fh.read, LOAD_CHUNK_BYTES)
        if not chunk:
            return
        progress.sent_bytes += len(chunk)
        yield chunk


async def apply_load(
    runtime: ContainerRuntime, verified: VerifiedLoad, progress: LoadProgress
) -> list[str]:
    """Load the verified images; returns the names the runtime added."""
    names = await runtime.load_image(_chunks(verified.source, progress), verified.source.size_bytes)
    progress.names = names or list(verified.archive.names)
    return progress.names


def find_archives(
    roots: Iterable[Path] = ARCHIVE_ROOTS,
    *,
    depth: int = ARCHIVE_SEARCH_DEPTH,
    limit: int = MAX_ARCHIVES_LISTED,
    is_archive: Callable[[str], bool] = lambda n: n.endswith(ARCHIVE_SUFFIXES),
) -> list[dict[str, object]]:
    """Archive files under ``roots`` (a few levels deep), for a technician to pick from."""
    found: list[dict[str, object]] = []
    for root in roots:
        if not root.is_dir():
            continue
        base = len(root.parts)
        for dirpath, dirnames, filenames in os.walk(root, onerror=lambda _e: None):
            here = Path(dirpath)
            if len(here.parts) - base >= depth:
                dirnames.clear()
            dirnames.sort()
            for name in sorted(filenames):
                if not is_archive(name):
                    continue
                path = here / name
                try:
                    st = path.stat()
                except OSError:
                    continue
                if stat.S_ISREG(st.st_mode):
                    found.append({"path": str(path), "size_bytes": st.st_size})
                if len(found) >= limit:
                    return found
    return found
