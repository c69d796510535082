"""The fleet authority: the directory that holds the root key, and operator profiles.

A fleet directory (``noderuntime fleet init --dir FLEETDIR``)::

    FLEETDIR/fleet.json       fleet id and root public key (public)
    FLEETDIR/root.key         the fleet ROOT private key (0600) - keep it offline
    FLEETDIR/ca.crt           fleet CA certificate (self-signed by the root key)
    FLEETDIR/serial           last credential serial issued
    FLEETDIR/operator.key     the initialising operator's private key (0600)
    FLEETDIR/operator.cred    ... and their credential
    FLEETDIR/issued/          every credential issued (an audit trail, public)

An operator directory (``noderuntime fleet add-operator NAME``) has the same layout minus
``root.key``/``serial``/``issued``: it can sign changes (``--as DIR``) but not enrol anyone.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from noderuntime import codec
from noderuntime.config.model import validate_id
from noderuntime.errors import ConfigError, CredentialError, FleetError
from noderuntime.fleet.bundle import (
    EnrollmentBundle,
    private_pem,
    write_atomic,
    write_private,
)
from noderuntime.fleet.credential import (
    Credential,
    MemberRole,
    b64u,
    decode_credential,
    fleet_id_for,
    sign_credential,
    unb64u,
    verify_credential,
)
from noderuntime.fleet.tls import issue_member_cert, make_ca
from noderuntime.identity import keys as identity
from noderuntime.identity.keys import Identity
from noderuntime.identity.principals import node_principal, operator_principal

FLEET_FILE = "fleet.json"
ROOT_KEY_FILE = "root.key"
CA_FILE = "ca.crt"
SERIAL_FILE = "serial"
OPERATOR_KEY_FILE = "operator.key"
OPERATOR_CRED_FILE = "operator.cred"
ISSUED_DIR = "issued"
OPERATORS_DIR = "operators"
AS_ENV = "NODERUNTIME_AS"


def _validate(kind: str, value: str) -> str:
    try:
        return validate_id(kind, value)
    except ConfigError as exc:
        raise FleetError(str(exc)) from None


@dataclass(frozen=True)
class FleetInfo:
    """What ``fleet.json`` says: public facts about a fleet."""

    fleet_id: str
    root_public_key: bytes

    @classmethod
    def read(cls, fleet_dir: Path) -> FleetInfo:
        path = fleet_dir / FLEET_FILE
        try:
            data = codec.loads(path.read_bytes())
            info = cls(data["fleetId"], unb64u(data["rootPublicKey"]))
        except FileNotFoundError:
            raise FleetError(
                f"{fleet_dir} is not a fleet or operator directory (no {FLEET_FILE}); "
                "create one with `noderuntime fleet init --dir DIR`"
            ) from None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise FleetError(f"{path} is damaged: {exc}") from exc
        if info.fleet_id != fleet_id_for(info.root_public_key):
            raise FleetError(f"{path} is inconsistent: the fleet id does not match the root key")
        return info

    def write(self, fleet_dir: Path, **extra: Any) -> None:
        data = {"fleetId": self.fleet_id, "rootPublicKey": b64u(self.root_public_key), **extra}
        write_atomic(fleet_dir / FLEET_FILE, json.dumps(data, indent=2).encode() + b"\n")


def parse_public_key(value: str) -> bytes:
    """A public key given as base64url/base64 of the 32 raw bytes, or a file holding it or PEM."""
    text = value.strip()
    path = Path(text).expanduser()
    if path.is_file():
        text = path.read_text().strip()
    if text.startswith("-----BEGIN PUBLIC KEY-----"):
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        try:
            key = serialization.load_pem_public_key(text.encode())
        except ValueError as exc:
            raise FleetError(f"public key does not load: {exc}") from None
        if not isinstance(key, Ed25519PublicKey):
            raise FleetError("public key is not an Ed25519 key")
        return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    if "PRIVATE KEY" in text:
        raise FleetError("that is a PRIVATE key; give the node's public key instead")
    try:
        raw = unb64u(text.replace("+", "-").replace("/", "_").rstrip("="))
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise FleetError(
            "public key must be the base64 of a 32-byte Ed25519 key (as printed by "
            "`noderuntime enroll --show-public-key`), a file holding it, or a PEM public key"
        )
    return raw


class FleetAuthority:
    """The holder of the fleet root key: issues credentials, tokens and certificates."""

    def __init__(
        self,
        fleet_dir: Path,
        info: FleetInfo,
        root: Identity,
        ca_pem: bytes,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.dir = fleet_dir
        self.info = info
        self.root = root
        self.ca_pem = ca_pem
        self.clock = clock

    @property
    def fleet_id(self) -> str:
        return self.info.fleet_id

    # --- creation and loading ---------------------------------------------------------------

    @classmethod
    def init(
        cls,
        fleet_dir: Path,
        operator_name: str,
        *,
        clock: Callable[[], float] = time.time,
    ) -> FleetAuthority:
        """Create a new fleet in ``fleet_dir``; refuse if it already holds one."""
        _validate("operator name", operator_name)
        if (fleet_dir / ROOT_KEY_FILE).exists() or (fleet_dir / FLEET_FILE).exists():
            raise FleetError(
                f"{fleet_dir} already holds a fleet; refusing to overwrite its root key"
            )
        fleet_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(fleet_dir, 0o700)
        root = identity.generate("fleet-root")
        identity.save_key(fleet_dir / ROOT_KEY_FILE, root)
        info = FleetInfo(fleet_id_for(root.public_bytes), root.public_bytes)
        ca_pem = make_ca(root, info.fleet_id)
        write_atomic(fleet_dir / CA_FILE, ca_pem)
        (fleet_dir / ISSUED_DIR).mkdir(exist_ok=True)
        info.write(fleet_dir, createdAt=int(clock()), operator=operator_name)
        auth = cls(fleet_dir, info, root, ca_pem, clock=clock)
        auth._write_operator_profile(fleet_dir, operator_name, include_fleet=False)
        return auth

    @classmethod
    def open(cls, fleet_dir: Path, *, clock: Callable[[], float] = time.time) -> FleetAuthority:
        info = FleetInfo.read(fleet_dir)
        if not (fleet_dir / ROOT_KEY_FILE).exists():
            raise FleetError(
                f"{fleet_dir} holds no fleet root key ({ROOT_KEY_FILE}): it is an operator "
                "directory, which can sign changes but not enrol members"
            )
        root = identity.load_key(fleet_dir / ROOT_KEY_FILE, "fleet-root")
        if root.public_bytes != info.root_public_key:
            raise FleetError(f"{fleet_dir / ROOT_KEY_FILE} does not match {FLEET_FILE}")
        try:
            ca_pem = (fleet_dir / CA_FILE).read_bytes()
        except OSError as exc:
            raise FleetError(f"cannot read {fleet_dir / CA_FILE}: {exc.strerror}") from exc
        return cls(fleet_dir, info, root, ca_pem, clock=clock)

    # --- issuing ----------------------------------------------------------------------------

    def _next_serial(self) -> int:
        path = self.dir / SERIAL_FILE
        try:
            last = int(path.read_text().strip() or "0")
        except FileNotFoundError:
            last = 0
        except ValueError as exc:
            raise FleetError(f"{path} is damaged: {exc}") from exc
        write_atomic(path, f"{last + 1}\n".encode())
        return last + 1

    def issue(
        self,
        principal: str,
        role: MemberRole,
        public_key: bytes,
        *,
        site: str | None = None,
        valid_days: float | None = None,
    ) -> bytes:
        """Sign a credential and record it under ``issued/``; returns the blob."""
        now = int(self.clock())
        cred = Credential(
            fleet_id=self.fleet_id,
            principal=principal,
            role=role,
            public_key=public_key,
            issued_at=now,
            serial=self._next_serial(),
            site=site,
            not_after=now + int(valid_days * 86400) if valid_days else None,
        )
        blob = sign_credential(self.root, cred)
        issued = self.dir / ISSUED_DIR
        issued.mkdir(exist_ok=True)
        name = principal.replace(":", "_")
        write_atomic(issued / f"{name}.{cred.serial}.cred", blob + b"\n")
        return blob

    def known_members(self) -> list[bytes]:
        """The newest issued credential of every operator and hub (shipped in tokens)."""
        newest: dict[str, tuple[int, bytes]] = {}
        issued = self.dir / ISSUED_DIR
        for path in sorted(issued.glob("*.cred")) if issued.is_dir() else []:
            blob = path.read_bytes().strip()
            try:
                cred = verify_credential(blob, self.info.root_public_key)
            except CredentialError:
                continue
            if cred.role is MemberRole.NODE:
                continue
            if cred.principal not in newest or newest[cred.principal][0] < cred.serial:
                newest[cred.principal] = (cred.serial, blob)
        return [blob for _, blob in sorted(newest.values())]

    def enroll_node(
        self,
        node_id: str,
        site: str,
        *,
        role: MemberRole = MemberRole.NODE,
        public_key: bytes | None = None,
        addresses: tuple[str, ...] = (),
        valid_days: float | None = None,
    ) -> EnrollmentBundle:
        """Enrol a node or hub.

        Without ``public_key`` a key is generated here and the result is a *token* that carries
        it (offline path, a secret). With ``public_key`` the result is a credential file for
        the node's own key (online path, no secret).
        """
        _validate("node id", node_id)
        _validate("site", site)
        if role is MemberRole.OPERATOR:
            raise FleetError("use `fleet add-operator` to enrol an operator")
        node_key = identity.generate(node_principal(node_id)) if public_key is None else None
        key = node_key.public_bytes if node_key else public_key
        assert key is not None
        blob = self.issue(node_principal(node_id), role, key, site=site, valid_days=valid_days)
        cred, _, _ = decode_credential(blob)
        cert = issue_member_cert(self.root, self.ca_pem, cred, addresses)
        return EnrollmentBundle(
            fleet_id=self.fleet_id,
            root_public_key=self.info.root_public_key,
            ca_pem=self.ca_pem,
            credential_blob=blob,
            credential=cred,
            node_cert_pem=cert,
            members=tuple(m for m in self.known_members() if m != blob),
            node_key_pem=private_pem(node_key) if node_key else None,
        )

    def add_operator(
        self, name: str, out_dir: Path | None = None, *, public_key: bytes | None = None
    ) -> tuple[Path | None, bytes]:
        """Enrol an operator. Without ``public_key``, create an operator directory holding a
        new key (``--as`` accepts it); with one, only issue the credential. Returns
        (directory or None, credential blob)."""
        _validate("operator name", name)
        if public_key is not None:
            return None, self.issue(operator_principal(name), MemberRole.OPERATOR, public_key)
        target = out_dir or self.dir / OPERATORS_DIR / name
        blob = self._write_operator_profile(target, name, include_fleet=True)
        return target, blob

    def _write_operator_profile(self, target: Path, name: str, *, include_fleet: bool) -> bytes:
        if (target / OPERATOR_KEY_FILE).exists():
            raise FleetError(f"{target} already holds an operator key; refusing to overwrite it")
        target.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(target, 0o700)
        op = identity.generate(operator_principal(name))
        identity.save_key(target / OPERATOR_KEY_FILE, op)
        blob = self.issue(operator_principal(name), MemberRole.OPERATOR, op.public_bytes)
        write_atomic(target / OPERATOR_CRED_FILE, blob + b"\n")
        if include_fleet:
            self.info.write(target, operator=name)
            write_atomic(target / CA_FILE, self.ca_pem)
        return blob


# --- operator signing -------------------------------------------------------------------------


def resolve_operator_dir(cli_value: str | os.PathLike[str] | None) -> Path | None:
    """``--as DIR`` if given, else ``$NODERUNTIME_AS`` (read at call time), else None."""
    value = cli_value or os.environ.get(AS_ENV)
    return Path(value).expanduser().absolute() if value else None


def load_operator(operator_dir: Path) -> tuple[Identity, bytes]:
    """The operator identity and credential blob held in a fleet or operator directory.

    The credential is verified against the directory's fleet root and must be for this key;
    any defect raises :class:`FleetError` (or :class:`CredentialError`).
    """
    info = FleetInfo.read(operator_dir)
    cred_path = operator_dir / OPERATOR_CRED_FILE
    try:
        blob = cred_path.read_bytes().strip()
    except FileNotFoundError:
        raise FleetError(
            f"{operator_dir} holds no operator credential ({OPERATOR_CRED_FILE}); "
            "create one with `noderuntime fleet add-operator NAME --dir FLEETDIR`"
        ) from None
    cred = verify_credential(blob, info.root_public_key)
    if cred.role is not MemberRole.OPERATOR:
        raise FleetError(f"{cred_path} is a {cred.role.value} credential, not an operator's")
    ident = identity.load_key(operator_dir / OPERATOR_KEY_FILE, cred.principal)
    if ident.public_bytes != cred.public_key:
        raise FleetError(f"{cred_path} is not for the key in {operator_dir / OPERATOR_KEY_FILE}")
    return ident, blob


def write_bundle(path: Path, bundle: EnrollmentBundle) -> None:
    """Write a token (0600, it is a secret) or a credential file (0644); never overwrite."""
    write_private(path, bundle.to_json(), mode=0o600 if bundle.is_token else 0o644)
