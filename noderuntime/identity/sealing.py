"""Sealing secrets to one node: an ECIES/HPKE-style box over ``cryptography``'s primitives.

A value is sealed to a node's X25519 public key with a fresh ephemeral key per seal:

    shared = X25519(ephemeral private, node public)
    key ‖ nonce = HKDF-SHA256(shared, salt = ephemeral public ‖ node public, info = DOMAIN, 44)
    ct = ChaCha20-Poly1305(key).encrypt(nonce, value, aad)
    aad = DOMAIN ‖ secret name ‖ 0 ‖ target node id ‖ 0 ‖ version (decimal)

Every key is used once (the ephemeral key is new per seal), so a nonce derived with the key is
safe. The associated data binds the box to one secret, one node and one version: a box copied
under another name, to another node or replayed as another version fails to open.

The X25519 key is a separate key, not derived from the node's Ed25519 identity key:
``cryptography`` has no Ed25519 -> X25519 conversion, and one key used for two algorithms is
the kind of reuse that needs a proof we do not want to depend on (docs/architecture.md,
"Secrets"). It lives beside the identity key (``<data dir>/seal.key``, 0600), made on first
start; its public half is published in the node's own, node-signed ``info`` record.

Wire values (version 1, 2026-12-03): ``epk`` and ``ct`` as unpadded base64url.
"""

from __future__ import annotations

import base64
import binascii
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from noderuntime.errors import IdentityError, SecretError

SEAL_DOMAIN_V1 = b"noderuntime/secret/v1\x00"
SEAL_KEY_FILE = "seal.key"
KEY_FILE_MODE = 0o600
_KEY_BYTES = 32
_NONCE_BYTES = 12


def _b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64u(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise SecretError(f"a sealed value is not base64url: {exc}") from None


@dataclass(frozen=True)
class Sealed:
    """One value sealed to one node: the ephemeral public key and the ciphertext."""

    epk: bytes
    ct: bytes

    def to_wire(self) -> dict[str, str]:
        return {"epk": _b64u(self.epk), "ct": _b64u(self.ct)}

    @classmethod
    def from_wire(cls, value: object) -> Sealed:
        if not isinstance(value, dict):
            raise SecretError("a sealed value is a JSON object with epk and ct")
        epk, ct = value.get("epk"), value.get("ct")
        if not isinstance(epk, str) or not isinstance(ct, str):
            raise SecretError("a sealed value needs epk and ct as text")
        out = cls(_unb64u(epk), _unb64u(ct))
        if len(out.epk) != _KEY_BYTES:
            raise SecretError("a sealed value's ephemeral key is not 32 bytes")
        return out


def associated_data(name: str, node_id: str, version: int) -> bytes:
    return SEAL_DOMAIN_V1 + f"{name}\x00{node_id}\x00{version}".encode()


def _key_and_nonce(shared: bytes, epk: bytes, recipient: bytes) -> tuple[bytes, bytes]:
    okm = HKDF(
        algorithm=hashes.SHA256(),
        length=_KEY_BYTES + _NONCE_BYTES,
        salt=epk + recipient,
        info=SEAL_DOMAIN_V1,
    ).derive(shared)
    return okm[:_KEY_BYTES], okm[_KEY_BYTES:]


def public_raw(key: X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def seal(value: bytes, recipient: bytes, *, name: str, node_id: str, version: int) -> Sealed:
    """Seal ``value`` so that only the holder of ``recipient``'s private key opens it."""
    try:
        peer = X25519PublicKey.from_public_bytes(recipient)
    except ValueError as exc:
        raise SecretError(f"node {node_id}'s sealing key is not an X25519 key: {exc}") from None
    ephemeral = X25519PrivateKey.generate()
    epk = public_raw(ephemeral)
    key, nonce = _key_and_nonce(ephemeral.exchange(peer), epk, recipient)
    ct = ChaCha20Poly1305(key).encrypt(nonce, value, associated_data(name, node_id, version))
    return Sealed(epk, ct)


def open_sealed(
    sealed: Sealed, key: X25519PrivateKey, *, name: str, node_id: str, version: int
) -> bytes:
    """The plaintext of ``sealed``; raises :class:`SecretError` if this key cannot open it
    (another node's box, another name or version, or tampered)."""
    try:
        peer = X25519PublicKey.from_public_bytes(sealed.epk)
        shared = key.exchange(peer)
    except ValueError as exc:
        raise SecretError(f"secret {name!r} cannot be opened here: {exc}") from None
    aead_key, nonce = _key_and_nonce(shared, sealed.epk, public_raw(key))
    try:
        return ChaCha20Poly1305(aead_key).decrypt(
            nonce, sealed.ct, associated_data(name, node_id, version)
        )
    except InvalidTag:
        raise SecretError(
            f"secret {name!r} (version {version}) is not sealed to this node's key"
        ) from None


def public_key_text(raw: bytes) -> str:
    return _b64u(raw)


def public_key_from_text(text: object) -> bytes | None:
    """A node's published sealing key, or None if it publishes none (or a broken one)."""
    if not isinstance(text, str):
        return None
    try:
        raw = _unb64u(text)
    except SecretError:
        return None
    return raw if len(raw) == _KEY_BYTES else None


def load_or_create_key(path: Path) -> X25519PrivateKey:
    """The node's X25519 key at ``path``, made (0600 from the first byte) if missing."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        key = X25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, KEY_FILE_MODE)
        except FileExistsError:
            return load_or_create_key(path)  # another process made it meanwhile
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
            fh.flush()
            os.fsync(fh.fileno())
        return key
    try:
        loaded = serialization.load_pem_private_key(raw, password=None)
    except ValueError as exc:
        raise IdentityError(f"{path} is not a readable key: {exc}") from None
    if not isinstance(loaded, X25519PrivateKey):
        raise IdentityError(f"{path} does not hold an X25519 key")
    return loaded
