"""Ed25519 identities: key files on disk, signing and verification.

Every change a node makes is signed with its identity key, so the same record can later be
relayed to peers and checked there (design decision 2).
"""

from __future__ import annotations

import base64
import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from noderuntime.errors import IdentityError

KEY_FILE_MODE = 0o600


def public_key_id(raw_public_key: bytes) -> str:
    """A short, stable, printable id for a public key (used as author id in the log)."""
    digest = hashlib.sha256(raw_public_key).digest()[:15]
    return "ed25519:" + base64.b32encode(digest).decode().lower()


@dataclass(frozen=True)
class Identity:
    """A principal's key pair. ``name`` is who it is (``node:<id>``, ``operator:<name>``)."""

    name: str
    private_key: Ed25519PrivateKey

    @property
    def public_bytes(self) -> bytes:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    @property
    def key_id(self) -> str:
        return public_key_id(self.public_bytes)

    def sign(self, message: bytes) -> bytes:
        return self.private_key.sign(message)


def verify(public_key: bytes, signature: bytes, message: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


def generate(name: str) -> Identity:
    return Identity(name=name, private_key=Ed25519PrivateKey.generate())


def save_key(path: Path, identity: Identity) -> None:
    """Write the private key with mode 0600 from the first byte (never world-readable)."""
    pem = identity.private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, KEY_FILE_MODE)
    except FileExistsError:
        raise IdentityError(f"{path} already exists; refusing to overwrite a key") from None
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
        fh.flush()
        os.fsync(fh.fileno())


def load_key(path: Path, name: str) -> Identity:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise IdentityError(f"identity key {path} is missing; re-initialise the node") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise IdentityError(
            f"identity key {path} is readable by other users (mode {stat.S_IMODE(st.st_mode):o}); "
            f"fix it with `chmod 600 {path}`"
        )
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError, OSError) as exc:
        raise IdentityError(f"cannot load identity key {path}: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise IdentityError(f"identity key {path} is not an Ed25519 key")
    return Identity(name=name, private_key=key)
