"""Fleet secrets as the reconciler uses them: which sealed box a container needs. Pure.

A secret record (``fleet.secrets[name]``, written by operators only) holds one box per target
node, sealed to that node's X25519 key (:mod:`noderuntime.identity.sealing`), never the value:

    {"v": 1, "version": 3, "sealed": {"<node>": {"epk": .., "ct": ..}}, "targets": {..},
     "sites": {"<node>": "<site>"}, "by": "operator:alice", "at": 1764763200.0, "size": 24}

(``sites``, since 2026-12-03: each target's site, for the order rotation rolls in.)

What a node runs is told apart by its container's spec-hash label, which for a workload with
secrets is ``<spec hash>+<digest>``: the digest covers every box this node would open (name,
version, ephemeral key, ciphertext), so a ``secret set`` that reseals a value for this node
replaces its container, and a set that only adds another node does not touch this one. Status
and rollout gates keep the spec hash alone (:func:`plain_hash`).

Nothing here opens a box: the executor asks a :class:`SecretFiles` (the node's tmpfs writer,
``node/secretfs.py``) to open and write them just before it creates the container.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from noderuntime.errors import SecretError
from noderuntime.runtime.base import LABEL_SPEC_HASH, ContainerSpec, VolumeMount
from noderuntime.spec.models import SECRET_ENV_DIR, SecretRef, Workload

SECRET_RECORD_VERSION = 1
DIGEST_CHARS = 12
HASH_SEPARATOR = "+"
ENV_SUBDIR = "env"
# Reads every file of SECRET_ENV_DIR into the variable of its name, then runs the command.
# The value never enters Podman's container config (kept on disk), only the process's env.
ENV_WRAPPER = (
    f'for f in {SECRET_ENV_DIR}/*; do [ -f "$f" ] && export "${{f##*/}}=$(cat "$f")"; '
    'done; exec "$@"'
)
ENV_WRAPPER_NAME = "noderuntime-secrets"


def plain_hash(label: str) -> str:
    """The spec hash of a container's spec-hash label (without its secrets digest)."""
    return label.partition(HASH_SEPARATOR)[0]


@dataclass(frozen=True)
class SecretFile:
    """One box a container needs, and where its plaintext goes (relative to its tmpfs dir)."""

    name: str
    version: int
    sealed: Mapping[str, Any]
    relpath: str


@dataclass(frozen=True)
class SecretMounts:
    """What a workload's secrets add to its container on this node."""

    digest: str
    files: tuple[SecretFile, ...]
    # Why this node cannot run it (a secret missing or not sealed for this node), or None.
    problem: str | None = None


def dir_key(workload: str, digest: str) -> str:
    """The name of a container's tmpfs directory: one per workload and digest."""
    return f"{workload}.{digest}"


def key_of_label(workload: str, label: str) -> str | None:
    """The tmpfs directory of a container with spec-hash ``label``; None if it has no secrets."""
    _, sep, digest = label.partition(HASH_SEPARATOR)
    return dir_key(workload, digest) if sep else None


def record_version(record: Mapping[str, Any]) -> int:
    version = record.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise SecretError("a secret record's version is not a positive integer")
    return version


def sealed_for(record: Mapping[str, Any], node_id: str) -> Mapping[str, Any] | None:
    sealed = record.get("sealed")
    if not isinstance(sealed, dict):
        return None
    box = sealed.get(node_id)
    return box if isinstance(box, dict) else None


def _relpath(i: int, ref: SecretRef) -> str:
    return f"{ENV_SUBDIR}/{ref.env}" if ref.env is not None else f"file{i}"


def mounts_for(
    workload: Workload, secrets: Mapping[str, Mapping[str, Any]], node_id: str
) -> SecretMounts | None:
    """The boxes ``workload`` needs on ``node_id``; None if it names no secret."""
    refs = workload.spec.secrets
    if not refs:
        return None
    files: list[SecretFile] = []
    problems: list[str] = []
    digest = hashlib.sha256()
    for i, ref in enumerate(refs):
        record = secrets.get(ref.name)
        if record is None:
            problems.append(f"secret {ref.name!r} does not exist (see `noderuntime secret ls`)")
            digest.update(f"missing:{ref.name}\x00".encode())
            continue
        box = sealed_for(record, node_id)
        try:
            version = record_version(record)
        except SecretError as exc:
            problems.append(f"secret {ref.name!r}: {exc}")
            continue
        if box is None:
            problems.append(
                f"secret {ref.name!r} is not sealed for node {node_id}: make it a target "
                f"(`noderuntime secret set {ref.name} ... --node {node_id}`)"
            )
            digest.update(f"unsealed:{ref.name}:{version}\x00".encode())
            continue
        files.append(SecretFile(ref.name, version, box, _relpath(i, ref)))
        digest.update(
            json.dumps([ref.name, version, box], sort_keys=True, separators=(",", ":")).encode()
        )
    return SecretMounts(
        digest=digest.hexdigest()[:DIGEST_CHARS],
        files=tuple(files),
        problem="; ".join(problems) or None,
    )


def with_secrets(
    spec: ContainerSpec, workload: Workload, mounts: SecretMounts, host_dir: str
) -> ContainerSpec:
    """``spec`` with its secrets bind-mounted read-only from ``host_dir`` (a tmpfs) and, for
    env secrets, its command wrapped to export them; the label carries the digest."""
    refs = workload.spec.secrets or []
    volumes = list(spec.volumes)
    has_env = False
    for i, ref in enumerate(refs):
        if ref.path is not None:
            volumes.append(
                VolumeMount(
                    target=ref.path,
                    source=f"{host_dir}/{_relpath(i, ref)}",
                    kind="bind",
                    read_only=True,
                )
            )
        else:
            has_env = True
    if has_env:
        volumes.append(
            VolumeMount(
                target=SECRET_ENV_DIR,
                source=f"{host_dir}/{ENV_SUBDIR}",
                kind="bind",
                read_only=True,
            )
        )
    labels = tuple(
        (k, f"{v}{HASH_SEPARATOR}{mounts.digest}" if k == LABEL_SPEC_HASH else v)
        for k, v in spec.labels
    )
    out = replace(spec, volumes=tuple(sorted(volumes, key=lambda v: v.target)), labels=labels)
    if has_env:
        out = replace(
            out,
            command=("/bin/sh", "-c", ENV_WRAPPER, ENV_WRAPPER_NAME),
            args=(*spec.command, *spec.args),
        )
    return out


class SecretFiles(Protocol):
    """Where a node writes the plaintext of its containers' secrets: a tmpfs, never a disk."""

    def host_dir(self, key: str) -> str:
        """The directory holding the files of one container (:func:`dir_key`)."""
        ...

    def write(self, key: str, files: Sequence[SecretFile], owner: str | None) -> None:
        """Open every box with this node's key and write its plaintext (mode 0400, owned by
        the container's numeric ``owner`` uid if it has one) under :meth:`host_dir`. Raises
        :class:`SecretError` if a box is not this node's or no tmpfs is available."""
        ...

    def present(self, key: str) -> bool:
        """Whether the files of ``key`` are there (a tmpfs is empty after a restart)."""
        ...

    def sweep(self, keep: set[str]) -> None:
        """Remove the directories of every key not in ``keep`` (their containers are gone)."""
        ...


# --- setting a secret: pure parts of `secret set` (the CLI seals, the node checks and stores) ---

# A secret's value; its record holds one box per target, and a fleet update is at most 256 KiB.
MAX_SECRET_BYTES = 4096
MAX_RECORD_BYTES = 160 * 1024


@dataclass(frozen=True)
class Target:
    node_id: str
    site: str
    seal_key: str | None  # the node's published X25519 key (base64url), None if it has none


def match_targets(
    nodes: Sequence[tuple[str, Mapping[str, Any]]],
    *,
    node_ids: Sequence[str] = (),
    sites: Sequence[str] = (),
    labels: Mapping[str, str] | None = None,
) -> list[Target]:
    """The held nodes (id, node info) that ``secret set`` targets: named by ``--node``, at a
    ``--site``, or carrying every ``-l`` label (each flag adds nodes)."""
    out: list[Target] = []
    for node_id, info in sorted(nodes):
        site = str(info.get("site", ""))
        node_labels = info.get("labels")
        have = node_labels if isinstance(node_labels, dict) else {}
        by_label = bool(labels) and all(have.get(k) == v for k, v in (labels or {}).items())
        if node_id in node_ids or site in sites or by_label:
            key = info.get("sealKey")
            out.append(Target(node_id, site, key if isinstance(key, str) else None))
    return out


def current_version(secrets: Mapping[str, Mapping[str, Any]], name: str) -> int:
    record = secrets.get(name)
    if record is None:
        return 0
    try:
        return record_version(record)
    except SecretError:
        return 0


def check_record(record: Mapping[str, Any], *, previous: int) -> None:
    """Refuse a record a node should not store: not sealed boxes only, stale, or too big."""
    version = record_version(record)
    if version <= previous:
        raise SecretError(
            f"the secret changed meanwhile (now version {previous}); run `secret set` again"
        )
    sealed = record.get("sealed")
    if not isinstance(sealed, dict) or not sealed:
        raise SecretError("a secret must be sealed for at least one node")
    for node_id, box in sealed.items():
        if not isinstance(box, dict) or set(box) != {"epk", "ct"}:
            raise SecretError(f"the box for node {node_id!r} must hold epk and ct only")
        if not all(isinstance(v, str) for v in box.values()):
            raise SecretError(f"the box for node {node_id!r} must hold text only")
    allowed = {"v", "version", "sealed", "sites", "targets", "by", "at", "size"}
    extra = set(record) - allowed
    if extra:
        raise SecretError(f"a secret record has unknown fields {sorted(extra)}")
    size = len(json.dumps(record, separators=(",", ":")))
    if size > MAX_RECORD_BYTES:
        raise SecretError(
            f"the sealed secret is {size} bytes for {len(sealed)} nodes (at most "
            f"{MAX_RECORD_BYTES}); use a smaller value or fewer targets per secret"
        )


def listing(secrets: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """`secret ls`: names, versions, targets, who and when; never a box."""
    rows = []
    for name, record in sorted(secrets.items()):
        sealed = record.get("sealed")
        rows.append(
            {
                "name": name,
                "version": record.get("version"),
                "nodes": sorted(sealed) if isinstance(sealed, dict) else [],
                "targets": record.get("targets") or {},
                "by": record.get("by"),
                "at": record.get("at"),
                "size": record.get("size"),
            }
        )
    return rows


# --- rolling rotation (docs/security.md, "Rotation rolls per node") ---------------------------

# A site's nodes replace their containers for a new secret version one slot apart, in node id
# order: long enough for a container to stop and start, short enough that a site of ten has
# rolled in under two minutes. Nothing waits on another node: an offline one only skips its slot.
ROTATION_SLOT_S = 10.0


@dataclass(frozen=True)
class Deferred:
    """A running container kept for now although its secrets changed: its label is planned
    instead of the new one until ``wait_s`` has passed."""

    keep_hash: str
    wait_s: float


def rotation_place(record: Mapping[str, Any], node_id: str, site: str) -> int:
    """How many of the secret's targets in ``node_id``'s site sort before it by node id (all its
    targets if the record names no sites: one written before it did)."""
    sealed = record.get("sealed")
    if not isinstance(sealed, dict):
        return 0
    sites = record.get("sites")
    return sum(
        1
        for n in sealed
        if n < node_id and (not isinstance(sites, dict) or sites.get(n, site) == site)
    )


def note_versions(
    first_seen: Mapping[tuple[str, int], float],
    secrets: Mapping[str, Mapping[str, Any]],
    now: float,
) -> dict[tuple[str, int], float]:
    """When this node first saw each current (secret, version); versions gone are forgotten."""
    out: dict[tuple[str, int], float] = {}
    for name, record in secrets.items():
        version = _version_or_zero(record)
        out[(name, version)] = first_seen.get((name, version), now)
    return out


def rotations_to_defer(
    planned: Mapping[str, str],
    needs: Mapping[str, SecretMounts],
    running: Mapping[str, str],
    secrets: Mapping[str, Mapping[str, Any]],
    first_seen: Mapping[tuple[str, int], float],
    *,
    node_id: str,
    site: str,
    now: float,
    slot_s: float = ROTATION_SLOT_S,
) -> dict[str, Deferred]:
    """Which running containers wait for this node's slot before their secrets are replaced.

    ``planned``: workload -> the spec-hash label it should run; ``running``: workload -> the
    label of its running container. Only a container whose spec is unchanged and whose secrets
    differ waits (a spec change or a container that is not running is replaced at once), and
    only until ``place * slot_s`` after this node first saw the newest of its secrets'
    versions: the wait is bounded whatever other nodes do.
    """
    out: dict[str, Deferred] = {}
    for name, want in planned.items():
        have, mounts = running.get(name), needs.get(name)
        if have is None or mounts is None or have == want or HASH_SEPARATOR not in have:
            continue
        if plain_hash(have) != plain_hash(want) or mounts.problem is not None:
            continue
        due = now
        for f in mounts.files:
            record = secrets.get(f.name)
            if record is None:
                continue
            seen = first_seen.get((f.name, f.version), now)
            due = max(due, seen + rotation_place(record, node_id, site) * slot_s)
        if due > now:
            out[name] = Deferred(have, due - now)
    return out


def _version_or_zero(record: Mapping[str, Any]) -> int:
    try:
        return record_version(record)
    except SecretError:
        return 0
