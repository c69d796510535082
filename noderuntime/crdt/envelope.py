"""What exactly an author signs for one CRDT update.

The document name is part of the signed bytes so an update signed for one document cannot be
replayed into another (a node document's status into the fleet document, say).
"""

from __future__ import annotations

# Signature domain. Changing it invalidates every stored signature: bump with a new version.
# v1 (2026-11-25): domain + doc name + NUL + meta JSON + NUL + update bytes.
SIGNING_DOMAIN_V1 = b"noderuntime/update/v1\x00"

# The largest update and meta that sync carries (receivers refuse a message holding a larger
# one whole): local writes are bounded to them, so every stored update can replicate.
MAX_UPDATE_BYTES = 256 * 1024
MAX_META_BYTES = 64 * 1024


def size_problem(data: bytes, meta: str) -> str | None:
    """Why an update of ``data`` and ``meta`` is too large to replicate, or None."""
    if len(data) > MAX_UPDATE_BYTES:
        return (
            f"this change is {len(data)} bytes; one change may be at most {MAX_UPDATE_BYTES} "
            f"bytes ({MAX_UPDATE_BYTES // 1024} KiB, what sync carries): split it or keep large "
            "data out of the spec"
        )
    if len(meta.encode()) > MAX_META_BYTES:
        return f"the change's description is over {MAX_META_BYTES} bytes"
    return None


def signing_input(doc_name: str, data: bytes, meta: str = "{}") -> bytes:
    return SIGNING_DOMAIN_V1 + doc_name.encode() + b"\x00" + meta.encode() + b"\x00" + data
