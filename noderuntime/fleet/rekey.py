"""Key rotation through the fleet (``noderuntime rekey``): records and checks (pure).

The flow (docs/operations.md, "Rotating a node's key"):

1. On the node, ``noderuntime rekey`` makes a new key (``fleet/pending.key``, 0600) and writes a
   *request* into its own node document (``rekey`` map, key ``request``): the new public key, a
   proof that the new key's holder asked (its signature over :func:`proof_input`) and the
   addresses its certificate must carry. The update is signed by the node's current key, and
   only that node or an operator may write its document (the writer ACL), so the request is the
   node's own.
2. The fleet authority issues the credential and certificate: ``noderuntime rekey --issue NODE
   --as FLEETDIR`` run by an operator who holds the fleet directory (its root key signs
   credentials; it never leaves that directory: not a hub, not a node). It checks the proof,
   keeps the node's role and site, and writes, signed as the operator, the *issued* record into
   the node's document and a *retirement* of the old key into the fleet document.
3. The node sees the issued record for its pending key, checks it against the fleet root and CA,
   installs key, credential and certificate, and restarts itself in place (the same process id,
   ``exec``): its workloads keep running. Peers learn the new credential as they learn any
   (credential relay) and verify older updates with the older keys, which they keep.
4. The old key is retired after a grace period (``--grace``, default 24 h): from then on, every
   node refuses what it signs (as ``revoked``), whatever time it claims. Unlike a revocation a
   retirement does not pin certificates (the key was not stolen; its certificate is simply no
   longer presented by the node).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509

from noderuntime.identity.keys import Identity, public_key_id, verify

REKEY = "rekey"  # the node document's map
REQUEST = "request"
ISSUED = "issued"
RETIRED_KEYS = "retiredKeys"  # the fleet document's map: key id -> {"principal", "after"}
PENDING_KEY_FILE = "pending.key"  # in <data-dir>/fleet/
DEFAULT_GRACE_S = 24 * 3600.0
PROOF_DOMAIN = b"noderuntime/rekey-request/v1\x00"
MAX_ADDRESSES = 16


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: Any) -> bytes | None:
    if not isinstance(text, str):
        return None
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None


def pending_key_path(fleet_dir: Path) -> Path:
    """Where the node keeps its new key until the fleet issues it (``<data-dir>/fleet``)."""
    return fleet_dir / PENDING_KEY_FILE


def cert_addresses(cert_pem: bytes) -> tuple[str, ...]:
    """The host names and addresses a member certificate carries (a new one keeps them)."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    names = [str(n) for n in san.get_values_for_type(x509.DNSName)]
    names += [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    return tuple(n for n in names if not n.startswith("member."))


def proof_input(principal: str, new_key: bytes) -> bytes:
    return PROOF_DOMAIN + principal.encode() + b"\x00" + new_key


@dataclass(frozen=True)
class RekeyRequest:
    principal: str
    public_key: bytes
    addresses: tuple[str, ...]
    at: float

    @property
    def key_id(self) -> str:
        return public_key_id(self.public_key)


def request_record(
    principal: str, new_key: Identity, addresses: tuple[str, ...], at: float
) -> dict[str, Any]:
    """What the node writes: its new public key, proven by a signature of that key."""
    return {
        "principal": principal,
        "key": _b64(new_key.public_bytes),
        "proof": _b64(new_key.sign(proof_input(principal, new_key.public_bytes))),
        "addresses": list(addresses[:MAX_ADDRESSES]),
        "at": at,
    }


def parse_request(value: Mapping[str, Any] | None, principal: str) -> RekeyRequest | None:
    """The node's request, if well-formed, for ``principal`` and proven by the new key."""
    if value is None or value.get("principal") != principal:
        return None
    key, proof = _unb64(value.get("key")), _unb64(value.get("proof"))
    addresses, at = value.get("addresses", []), value.get("at")
    if key is None or len(key) != 32 or proof is None:
        return None
    if not isinstance(addresses, list) or not all(isinstance(a, str) for a in addresses):
        return None
    if isinstance(at, bool) or not isinstance(at, int | float):
        return None
    if not verify(key, proof, proof_input(principal, key)):
        return None
    return RekeyRequest(principal, key, tuple(addresses[:MAX_ADDRESSES]), float(at))


def issued_record(credential: bytes, cert_pem: bytes, retire_after: float) -> dict[str, Any]:
    return {
        "credential": credential.decode(),
        "cert": cert_pem.decode(),
        "retireAfter": retire_after,
    }


def parse_issued(value: Mapping[str, Any] | None) -> tuple[bytes, bytes] | None:
    """(credential blob, certificate PEM) of an issued record; checked by the installer."""
    if value is None:
        return None
    cred, cert = value.get("credential"), value.get("cert")
    if not isinstance(cred, str) or not isinstance(cert, str):
        return None
    return cred.encode(), cert.encode()


def retirement_record(principal: str, after: float) -> dict[str, Any]:
    return {"principal": principal, "after": after}


def parse_retired(entries: Mapping[str, Mapping[str, Any]]) -> dict[str, tuple[str, float]]:
    """The fleet document's retired keys: key id -> (principal, retired after)."""
    out: dict[str, tuple[str, float]] = {}
    for key_id, value in entries.items():
        principal, after = value.get("principal"), value.get("after")
        if isinstance(principal, str) and isinstance(after, int | float) and after >= 0:
            out[key_id] = (principal, float(after))
    return out
