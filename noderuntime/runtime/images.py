"""Images on the node: which workloads use each, and what an image archive holds.

Pure functions over plain data, plus :func:`inspect_archive`, which reads only a tar file's
index (never its layers), so checking a multi-GB archive on a USB stick costs a few reads.
"""

from __future__ import annotations

import json
import tarfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from noderuntime.errors import ImageArchiveError
from noderuntime.runtime.base import ImageInfo

DEFAULT_REGISTRY = "docker.io"
DEFAULT_TAG = "latest"
FORMAT_DOCKER = "docker-archive"
FORMAT_OCI = "oci-archive"
# OCI index annotations that name an image (Podman and containerd write one of them).
_OCI_NAME_KEYS = ("io.containerd.image.name", "org.opencontainers.image.ref.name")
# An index file larger than this is not an image archive's (a few KB in practice).
MAX_INDEX_BYTES = 4 * 1024 * 1024


def normalise(ref: str) -> str:
    """``busybox`` -> ``docker.io/library/busybox:latest``; a digest reference is kept."""
    name, at, digest = ref.partition("@")
    first, slash, _rest = name.partition("/")
    if not slash or ("." not in first and ":" not in first and first != "localhost"):
        name = f"{DEFAULT_REGISTRY}/{name}" if slash else f"{DEFAULT_REGISTRY}/library/{name}"
    if not at and ":" not in name.rsplit("/", 1)[-1]:
        name = f"{name}:{DEFAULT_TAG}"
    return f"{name}{at}{digest}"


def _has_registry(ref: str) -> bool:
    first, slash, _ = ref.partition("/")
    return bool(slash) and ("." in first or ":" in first or first == "localhost")


def image_matches(wanted: str, name: str) -> bool:
    """Whether the engine's image ``name`` satisfies a workload's ``wanted`` reference.

    A short name (no registry) is also met by a local image of that path: Podman resolves
    ``busybox:1`` to ``localhost/busybox:1`` when only that one is present.
    """
    if normalise(wanted) == normalise(name):
        return True
    if _has_registry(wanted):
        return False
    short = wanted if ":" in wanted.rsplit("/", 1)[-1] else f"{wanted}:{DEFAULT_TAG}"
    return normalise(name).endswith("/" + short)


def parse_images(data: Iterable[Mapping[str, Any]]) -> list[ImageInfo]:
    """Podman's ``/images/json`` answer as :class:`ImageInfo`, newest first."""
    out = []
    for item in data:
        names = item.get("Names") or item.get("RepoTags") or ()
        created = item.get("Created")
        out.append(
            ImageInfo(
                id=str(item.get("Id", "")),
                names=tuple(str(n) for n in names if n and "<none>" not in str(n)),
                size_bytes=int(item.get("Size") or 0),
                created=float(created) if isinstance(created, int | float) else None,
            )
        )
    out.sort(key=lambda i: (-(i.created or 0), i.id))
    return out


def images_view(
    images: Iterable[ImageInfo], wanted: Mapping[str, str], running: Mapping[str, str]
) -> list[dict[str, Any]]:
    """Each image with the workloads that use it, then each image a workload wants that the
    node lacks (``present`` false). ``wanted``: workload -> image reference; ``running``:
    workload -> image of its current container."""
    out: list[dict[str, Any]] = []
    claimed: set[str] = set()
    for img in images:
        users = sorted(
            w
            for w, ref in {**wanted, **running}.items()
            if any(image_matches(ref, n) for n in img.names)
        )
        claimed.update(w for w in users if w in wanted)
        out.append(
            {
                "id": img.id[:12],
                "names": list(img.names),
                "size_bytes": img.size_bytes,
                "created": img.created,
                "present": True,
                "workloads": users,
            }
        )
    missing: dict[str, list[str]] = {}
    for w, ref in sorted(wanted.items()):
        if w not in claimed:
            missing.setdefault(ref, []).append(w)
    for ref, users in sorted(missing.items()):
        out.append(
            {
                "id": "",
                "names": [ref],
                "size_bytes": 0,
                "created": None,
                "present": False,
                "workloads": users,
            }
        )
    return out


def waiting_for(loaded: Iterable[str], wanted: Mapping[str, str]) -> list[str]:
    """The workloads (of ``wanted``: workload -> image) that one of ``loaded`` satisfies."""
    names = list(loaded)
    return sorted(w for w, ref in wanted.items() if any(image_matches(ref, n) for n in names))


# --- archives ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ArchiveFacts:
    """What an image archive says it holds, read from its index."""

    format: str  # FORMAT_DOCKER | FORMAT_OCI
    names: tuple[str, ...]  # the tags it will add (may be empty: loaded untagged)
    size_bytes: int


def _read_json(tar: tarfile.TarFile, member: tarfile.TarInfo) -> Any:
    if member.size > MAX_INDEX_BYTES:
        raise ImageArchiveError(f"{member.name} in the archive is too large for an index")
    fh: IO[bytes] | None = tar.extractfile(member)
    if fh is None:
        raise ImageArchiveError(f"{member.name} in the archive is not a file")
    try:
        return json.loads(fh.read())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ImageArchiveError(f"{member.name} in the archive is not JSON: {exc}") from None


def inspect_archive(fh: IO[bytes], size_bytes: int, source: str) -> ArchiveFacts:
    """Read a docker or OCI image archive's index from ``fh`` (left at its start); raise
    ImageArchiveError, saying what the file is not, if it is neither."""
    try:
        tar = tarfile.open(fileobj=fh, mode="r:*")  # noqa: SIM115 - closed in the finally below
    except (tarfile.TarError, OSError, EOFError):
        raise ImageArchiveError(
            f"{source} is not an image archive (not a tar file); make one with "
            "`podman save -o FILE IMAGE` or `docker save -o FILE IMAGE`"
        ) from None
    try:
        members = {m.name.lstrip("./"): m for m in tar.getmembers()}
        if "manifest.json" in members:
            manifest = _read_json(tar, members["manifest.json"])
            if not isinstance(manifest, list):
                raise ImageArchiveError(f"{source}: manifest.json is not a list of images")
            tags = [
                str(t) for m in manifest if isinstance(m, dict) for t in m.get("RepoTags") or ()
            ]
            return ArchiveFacts(FORMAT_DOCKER, tuple(tags), size_bytes)
        if "index.json" in members and "oci-layout" in members:
            index = _read_json(tar, members["index.json"])
            manifests = index.get("manifests") if isinstance(index, dict) else None
            if not isinstance(manifests, list):
                raise ImageArchiveError(f"{source}: index.json lists no manifests")
            names = []
            for m in manifests:
                notes = m.get("annotations") if isinstance(m, dict) else None
                for key in _OCI_NAME_KEYS:
                    if isinstance(notes, dict) and isinstance(notes.get(key), str):
                        names.append(notes[key])
                        break
            return ArchiveFacts(FORMAT_OCI, tuple(names), size_bytes)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ImageArchiveError(f"{source} is a damaged archive: {exc}") from None
    finally:
        tar.close()
        fh.seek(0)
    raise ImageArchiveError(
        f"{source} is a tar file but not an image archive (no manifest.json, and no "
        "index.json with oci-layout); make one with `podman save -o FILE IMAGE`"
    )


def archive_path(raw: str) -> Path:
    """The file a technician named, as an absolute path (the daemon's working dir is not
    theirs)."""
    path = Path(raw)
    if not path.is_absolute():
        raise ImageArchiveError(f"{raw!r}: give the archive's full path (e.g. /media/usb/x.tar)")
    return path
