"""Enrolment files carried from the fleet authority to a node.

Two kinds, one JSON format (version 1)::

    {
      "kind": "noderuntime-enrollment-token" | "noderuntime-credential",
      "version": 1,
      "fleetId": "fleet-...",
      "rootPublicKey": base64url(32 bytes),   # the trust anchor
      "caCert": PEM,                          # fleet CA (for the root key)
      "credential": "nrc1....",               # this node's credential
      "nodeCert": PEM,                        # TLS certificate for this node's key
      "members": ["nrc1....", ...],           # operators and hubs known at issue time
      "nodeKey": PEM PKCS#8                   # token only: the node's PRIVATE key
    }

An **enrolment token** (offline path) carries the node's private key: it is a secret, written
0600, and should be deleted once installed. A **credential file** (online path) is issued for a
public key the node generated itself and holds no secret.

Changelog: v1 (2026-11-25) first version.
"""

from __future__ import annotations

import binascii
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from noderuntime import codec
from noderuntime.errors import CredentialError, EnrollmentError, EnrollmentFileError
from noderuntime.fleet.credential import (
    Credential,
    MemberRole,
    b64u,
    fleet_id_for,
    unb64u,
    verify_credential,
)
from noderuntime.fleet.tls import check_member_cert
from noderuntime.identity.keys import Identity

BUNDLE_VERSION = 1
TOKEN_KIND = "noderuntime-enrollment-token"
CREDENTIAL_KIND = "noderuntime-credential"
MAX_BUNDLE_BYTES = 256 * 1024
SECRET_FILE_MODE = 0o600


@dataclass(frozen=True)
class EnrollmentBundle:
    """A verified enrolment token or credential file."""

    fleet_id: str
    root_public_key: bytes
    ca_pem: bytes
    credential_blob: bytes
    credential: Credential
    node_cert_pem: bytes
    members: tuple[bytes, ...] = ()
    node_key_pem: bytes | None = field(default=None, repr=False)

    @property
    def is_token(self) -> bool:
        return self.node_key_pem is not None

    def node_identity(self) -> Identity:
        if self.node_key_pem is None:
            raise EnrollmentError("this is a credential file, not a token: it holds no key")
        return Identity(self.credential.principal, _load_private(self.node_key_pem))

    def to_json(self) -> bytes:
        data: dict[str, Any] = {
            "kind": TOKEN_KIND if self.is_token else CREDENTIAL_KIND,
            "version": BUNDLE_VERSION,
            "fleetId": self.fleet_id,
            "rootPublicKey": b64u(self.root_public_key),
            "caCert": self.ca_pem.decode(),
            "credential": self.credential_blob.decode(),
            "nodeCert": self.node_cert_pem.decode(),
            "members": [m.decode() for m in self.members],
        }
        if self.node_key_pem is not None:
            data["nodeKey"] = self.node_key_pem.decode()
        return json.dumps(data, indent=1, sort_keys=True).encode() + b"\n"


def _load_private(pem: bytes) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise EnrollmentError(f"the token's node key does not load: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise EnrollmentError("the token's node key is not an Ed25519 key")
    return key


def private_pem(identity: Identity) -> bytes:
    return identity.private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _str(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise EnrollmentError(f"enrolment file lacks {key!r} (or it is not text)")
    return value


def parse_bundle(raw: bytes, *, source: str = "enrolment file") -> EnrollmentBundle:
    """Parse and fully verify a token or credential file; raise a clear error on any defect."""
    try:
        return _parse_bundle(raw, source)
    except EnrollmentFileError:
        raise
    except EnrollmentError as exc:
        # Every defect of the file itself is invalid input (exit 2), whichever check found it.
        raise EnrollmentFileError(str(exc)) from exc


def _parse_bundle(raw: bytes, source: str) -> EnrollmentBundle:
    if len(raw) > MAX_BUNDLE_BYTES:
        raise EnrollmentFileError(f"{source} is larger than {MAX_BUNDLE_BYTES} bytes")
    try:
        data = codec.loads(raw, max_bytes=MAX_BUNDLE_BYTES)
    except codec.DecodeError as exc:
        raise EnrollmentFileError(
            f"{source} is not a noderuntime enrolment file (not JSON: {exc})"
        ) from None
    if not isinstance(data, dict) or data.get("kind") not in (TOKEN_KIND, CREDENTIAL_KIND):
        raise EnrollmentError(f"{source} is not a noderuntime enrolment token or credential file")
    if data.get("version") != BUNDLE_VERSION:
        raise EnrollmentError(
            f"{source} has version {data.get('version')!r}; this noderuntime reads "
            f"version {BUNDLE_VERSION}"
        )
    try:
        root = unb64u(_str(data, "rootPublicKey"))
    except (ValueError, binascii.Error):
        raise EnrollmentError(f"{source}: rootPublicKey is not base64url") from None
    if len(root) != 32:
        raise EnrollmentError(f"{source}: rootPublicKey is not an Ed25519 public key")
    fleet_id = _str(data, "fleetId")
    if fleet_id != fleet_id_for(root):
        raise EnrollmentError(f"{source}: fleet id {fleet_id} does not match its root key")
    blob = _str(data, "credential").encode()
    try:
        cred = verify_credential(blob, root)
    except CredentialError as exc:
        raise EnrollmentError(f"{source}: {exc}") from None
    if cred.role is MemberRole.OPERATOR:
        raise EnrollmentError(f"{source} enrols an operator, not a node")
    ca_pem = _str(data, "caCert").encode()
    cert_pem = _str(data, "nodeCert").encode()
    check_member_cert(cert_pem, ca_pem, root, cred.public_key)
    members_raw = data.get("members", [])
    if not isinstance(members_raw, list) or not all(isinstance(m, str) for m in members_raw):
        raise EnrollmentError(f"{source}: members must be a list of credentials")
    members = tuple(m.encode() for m in members_raw)
    for m in members:
        try:
            verify_credential(m, root)
        except CredentialError as exc:
            raise EnrollmentError(f"{source}: a member credential is invalid: {exc}") from None
    key_pem: bytes | None = None
    if data["kind"] == TOKEN_KIND:
        key_pem = _str(data, "nodeKey").encode()
        ident = Identity(cred.principal, _load_private(key_pem))
        if ident.public_bytes != cred.public_key:
            raise EnrollmentError(f"{source}: the node key does not match the credential")
    elif "nodeKey" in data:
        raise EnrollmentError(f"{source}: a credential file must not carry a private key")
    return EnrollmentBundle(
        fleet_id=fleet_id,
        root_public_key=root,
        ca_pem=ca_pem,
        credential_blob=blob,
        credential=cred,
        node_cert_pem=cert_pem,
        members=members,
        node_key_pem=key_pem,
    )


def read_bundle(path: Path) -> EnrollmentBundle:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise EnrollmentError(f"cannot read {path}: {exc.strerror}") from exc
    return parse_bundle(raw, source=str(path))


def write_private(path: Path, data: bytes, *, mode: int = SECRET_FILE_MODE) -> None:
    """Write a new file with ``mode`` from the first byte; refuse to overwrite."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        raise EnrollmentError(f"{path} already exists; refusing to overwrite it") from None
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def write_atomic(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Replace ``path`` atomically with ``data`` (mode set before the rename)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.chmod(tmp, mode)
    os.replace(tmp, path)
