"""What exactly an author signs for one CRDT update.

The document name is part of the signed bytes so an update signed for one document cannot be
replayed into another (a node document's status into the fleet document, say).
"""

from __future__ import annotations

# Signature domain. Changing it invalidates every stored signature: bump with a new version.
# v1 (2026-11-25): domain + doc name + NUL + meta JSON + NUL + update bytes.
SIGNING_DOMAIN_V1 = b"noderuntime/update/v1\x00"


def signing_input(doc_name: str, data: bytes, meta: str = "{}") -> bytes:
    return SIGNING_DOMAIN_V1 + doc_name.encode() + b"\x00" + meta.encode() + b"\x00" + data
