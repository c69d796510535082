"""Member credentials: who a key belongs to, in which fleet, in which role, signed by the root.

Encoding (version 1), chosen to be small, printable and canonical::

    nrc1.<base64url(body)>.<base64url(signature)>

``body`` is canonical JSON: UTF-8, keys sorted, no whitespace, integers only (no floats),
absent optional fields omitted. Its keys:

    v       1                          format version
    fleet   "fleet-..."                fleet id (derived from the root public key)
    sub     "node:ID" | "operator:N"   principal
    role    "node" | "hub" | "operator"
    site    "SITE"                     nodes and hubs only
    key     base64url(32 raw bytes)    the member's Ed25519 public key
    iat     unix seconds               issued at
    exp     unix seconds               optional: not valid after
    serial  int                        issuer's counter, larger = newer

The signature is Ed25519 by the fleet root over ``SIGNING_DOMAIN_V1 + body``. A decoder
re-encodes the body and refuses anything that is not byte-identical, so one credential has
exactly one encoding (no malleability) and ``blob`` can be used as a stable identifier.
A typical credential is ~330 bytes.

Changelog: v1 (2026-11-25) first version.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

from noderuntime import codec
from noderuntime.config.model import validate_id
from noderuntime.errors import ConfigError, CredentialError
from noderuntime.identity.keys import Identity, public_key_id, verify
from noderuntime.identity.principals import NODE, OPERATOR, parse_principal

CREDENTIAL_VERSION = 1
CREDENTIAL_PREFIX = "nrc1."
SIGNING_DOMAIN_V1 = b"noderuntime/credential/v1\x00"
MAX_CREDENTIAL_BYTES = 2048
# Appliance clocks are often behind; tolerate an issued-at this far in the future.
CLOCK_SKEW_S = 24 * 3600

# A credential body is a few hundred bytes; nothing legitimate comes near this.
MAX_BODY_BYTES = 8192
_BODY_KEYS = {"v", "fleet", "sub", "role", "site", "key", "iat", "exp", "serial"}


class MemberRole(enum.StrEnum):
    """A member's role; a ``str`` (``MemberRole.HUB == "hub"``) so plain-data code can compare."""

    NODE = "node"
    HUB = "hub"
    OPERATOR = "operator"


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64u(text: str) -> bytes:
    """Decode unpadded base64url, refusing non-canonical forms (e.g. stray trailing bits)."""
    if not isinstance(text, str) or "=" in text:
        raise ValueError("not unpadded base64url")
    raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if b64u(raw) != text:
        raise ValueError("not canonical base64url")
    return raw


def fleet_id_for(root_public_key: bytes) -> str:
    """The fleet id is derived from the root key, so it cannot be paired with another root."""
    digest = hashlib.sha256(b"noderuntime/fleet-id\x00" + root_public_key).digest()
    return "fleet-" + base64.b32encode(digest[:10]).decode().lower()


def canonical_json(data: dict[str, Any]) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True)
class Credential:
    """The decoded body of a credential (the claims, without the signature)."""

    fleet_id: str
    principal: str
    role: MemberRole
    public_key: bytes
    issued_at: int
    serial: int
    site: str | None = None
    not_after: int | None = None

    @property
    def key_id(self) -> str:
        return public_key_id(self.public_key)

    @property
    def name(self) -> str:
        """The principal without its kind: the node id or the operator name."""
        parsed = parse_principal(self.principal)
        return parsed[1] if parsed is not None else self.principal

    def to_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "v": CREDENTIAL_VERSION,
            "fleet": self.fleet_id,
            "sub": self.principal,
            "role": self.role.value,
            "key": b64u(self.public_key),
            "iat": self.issued_at,
            "serial": self.serial,
        }
        if self.site is not None:
            body["site"] = self.site
        if self.not_after is not None:
            body["exp"] = self.not_after
        return body

    def body_bytes(self) -> bytes:
        return canonical_json(self.to_body())


def check_claims(cred: Credential) -> None:
    """Raise :class:`CredentialError` unless the claims are internally consistent."""
    parsed = parse_principal(cred.principal)
    if parsed is None:
        raise CredentialError(f"principal {cred.principal!r} must be node:ID or operator:NAME")
    kind, name = parsed
    try:
        validate_id("principal name", name)
        if cred.site is not None:
            validate_id("site", cred.site)
    except ConfigError as exc:
        raise CredentialError(str(exc)) from None
    if cred.role is MemberRole.OPERATOR:
        if kind != OPERATOR or cred.site is not None:
            raise CredentialError("an operator credential needs operator:NAME and no site")
    elif kind != NODE or cred.site is None:
        raise CredentialError(f"a {cred.role.value} credential needs node:ID and a site")
    if len(cred.public_key) != 32:
        raise CredentialError("credential public key is not a 32-byte Ed25519 key")
    if cred.not_after is not None and cred.not_after <= cred.issued_at:
        raise CredentialError("credential expires before it was issued")
    if cred.serial < 0 or cred.issued_at < 0:
        raise CredentialError("credential serial and issued-at must not be negative")


def sign_credential(root: Identity, cred: Credential) -> bytes:
    """Encode and sign ``cred`` with the fleet root; returns the credential blob (ASCII)."""
    check_claims(cred)
    if cred.fleet_id != fleet_id_for(root.public_bytes):
        raise CredentialError("the credential's fleet id does not belong to this root key")
    body = cred.body_bytes()
    sig = root.sign(SIGNING_DOMAIN_V1 + body)
    return (CREDENTIAL_PREFIX + b64u(body) + "." + b64u(sig)).encode()


def _as_text(blob: bytes | str) -> str:
    if isinstance(blob, bytes):
        if len(blob) > MAX_CREDENTIAL_BYTES:
            raise CredentialError(f"credential is larger than {MAX_CREDENTIAL_BYTES} bytes")
        try:
            return blob.decode("ascii").strip()
        except UnicodeDecodeError:
            raise CredentialError("credential is not ASCII text") from None
    if len(blob) > MAX_CREDENTIAL_BYTES:
        raise CredentialError(f"credential is larger than {MAX_CREDENTIAL_BYTES} bytes")
    return blob.strip()


def _int(body: dict[str, Any], key: str) -> int:
    value = body[key]
    if not isinstance(value, int) or isinstance(value, bool):
        raise CredentialError(f"credential field {key!r} must be an integer")
    return value


def decode_credential(blob: bytes | str) -> tuple[Credential, bytes, bytes]:
    """Parse a blob into (claims, signed body bytes, signature) WITHOUT checking the signature.

    Use :func:`verify_credential` for anything you will trust.
    """
    text = _as_text(blob)
    if not text.startswith(CREDENTIAL_PREFIX):
        raise CredentialError("not a noderuntime credential (expected it to start with 'nrc1.')")
    parts = text[len(CREDENTIAL_PREFIX) :].split(".")
    if len(parts) != 2:
        raise CredentialError("credential must have exactly a body and a signature")
    try:
        body_bytes, sig = unb64u(parts[0]), unb64u(parts[1])
    except (ValueError, binascii.Error):
        raise CredentialError("credential is not valid base64url") from None
    try:
        body = codec.loads(body_bytes, max_bytes=MAX_BODY_BYTES)
    except codec.DecodeError:
        raise CredentialError("credential body is not JSON") from None
    if not isinstance(body, dict):
        raise CredentialError("credential body is not a JSON object")
    if body.get("v") != CREDENTIAL_VERSION:
        raise CredentialError(
            f"credential version {body.get('v')!r} is not supported (this noderuntime reads "
            f"version {CREDENTIAL_VERSION}); upgrade noderuntime or re-enrol"
        )
    unknown = set(body) - _BODY_KEYS
    if unknown:
        raise CredentialError(f"credential has unknown fields {sorted(unknown)}")
    try:
        for key in ("fleet", "sub", "role", "key"):
            if not isinstance(body[key], str):
                raise CredentialError(f"credential field {key!r} must be a string")
        site = body.get("site")
        if site is not None and not isinstance(site, str):
            raise CredentialError("credential field 'site' must be a string")
        cred = Credential(
            fleet_id=body["fleet"],
            principal=body["sub"],
            role=MemberRole(body["role"]),
            public_key=unb64u(body["key"]),
            issued_at=_int(body, "iat"),
            serial=_int(body, "serial"),
            site=site,
            not_after=_int(body, "exp") if "exp" in body else None,
        )
    except KeyError as exc:
        raise CredentialError(f"credential lacks field {exc.args[0]!r}") from None
    except (ValueError, binascii.Error) as exc:
        raise CredentialError(f"credential field is invalid: {exc}") from None
    if cred.body_bytes() != body_bytes:
        raise CredentialError("credential body is not in canonical form")
    check_claims(cred)
    return cred, body_bytes, sig


def verify_credential(
    blob: bytes | str,
    root_public_key: bytes,
    *,
    now: float | None = None,
    check_expiry: bool = True,
) -> Credential:
    """Decode ``blob`` and check it completely against the fleet root; raise on any defect.

    Checks: format and canonical encoding, signature by ``root_public_key``, fleet id equal to
    the one derived from that root, consistent claims, issued-at not far in the future and (if
    ``check_expiry``) not expired at ``now``.
    """
    cred, body, sig = decode_credential(blob)
    if not verify(root_public_key, sig, SIGNING_DOMAIN_V1 + body):
        raise CredentialError(
            f"credential of {cred.principal} is not signed by this fleet's root key "
            "(tampered, or issued by another fleet)"
        )
    if cred.fleet_id != fleet_id_for(root_public_key):
        raise CredentialError(f"credential belongs to {cred.fleet_id}, not to this fleet")
    t = time.time() if now is None else now
    if cred.issued_at > t + CLOCK_SKEW_S:
        raise CredentialError(
            f"credential of {cred.principal} was issued in the future; check this host's clock"
        )
    if check_expiry and cred.not_after is not None and t > cred.not_after:
        raise CredentialError(f"credential of {cred.principal} expired; enrol it again")
    return cred
