"""What a node trusts: its fleet's root key, its own credential, and the members it knows.

Files in the node's data directory::

    <data-dir>/fleet/trust.json       fleet id and root public key (the trust anchor)
    <data-dir>/fleet/ca.crt           fleet CA certificate (TLS on leaf links)
    <data-dir>/fleet/node.cred        this node's credential
    <data-dir>/fleet/node.crt         this node's TLS certificate (key: <data-dir>/identity.key)
    <data-dir>/fleet/members/*.cred   credentials of members this node has seen, one per key
    <data-dir>/fleet/revoked.json     every revocation this node has seen (sticky; see
                                      noderuntime.fleet.revocation)

The node's private key stays in ``<data-dir>/identity.key`` (0600) as before enrolment.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from noderuntime import codec
from noderuntime.errors import CredentialError, EnrollmentError, FleetError, NotEnrolledError
from noderuntime.fleet.bundle import EnrollmentBundle, write_atomic
from noderuntime.fleet.credential import (
    Credential,
    MemberRole,
    b64u,
    fleet_id_for,
    unb64u,
    verify_credential,
)
from noderuntime.fleet.rekey import parse_retired
from noderuntime.fleet.revocation import Revocation, merge, parse_revocations, spki_pin
from noderuntime.fleet.tls import check_member_cert, member_san
from noderuntime.identity import keys as identity
from noderuntime.identity.principals import node_principal

FLEET_SUBDIR = "fleet"
TRUST_FILE = "trust.json"
CA_FILE = "ca.crt"
NODE_CRED_FILE = "node.cred"
NODE_CERT_FILE = "node.crt"
MEMBERS_DIR = "members"
REVOKED_FILE = "revoked.json"
IDENTITY_FILE = "identity.key"  # same name as noderuntime.config.model.IDENTITY_FILE


@dataclass(frozen=True)
class Member:
    """A verified fleet member: a public key and what the root says it is."""

    principal: str
    role: MemberRole
    site: str | None
    public_key: bytes
    key_id: str
    credential: Credential
    blob: bytes

    @classmethod
    def from_credential(cls, cred: Credential, blob: bytes) -> Member:
        return cls(
            principal=cred.principal,
            role=cred.role,
            site=cred.site,
            public_key=cred.public_key,
            key_id=cred.key_id,
            credential=cred,
            blob=blob,
        )

    @property
    def name(self) -> str:
        """The node id or operator name (the principal without ``node:``/``operator:``)."""
        return self.credential.name

    @property
    def not_after(self) -> int | None:
        """When the credential expires (unix seconds), or None if it never does."""
        return self.credential.not_after

    @property
    def is_node(self) -> bool:
        """True for nodes and hubs (principals ``node:ID`` with a site)."""
        return self.role in (MemberRole.NODE, MemberRole.HUB)


class Keyed(Protocol):
    """Anything holding a member's key: a :class:`Member`, or sync's ``MemberLike``."""

    @property
    def principal(self) -> str: ...

    @property
    def public_key(self) -> bytes: ...


class Expiring(Protocol):
    """Anything with a credential's expiry: a :class:`Member`, or sync's ``MemberLike``."""

    @property
    def not_after(self) -> float | None: ...


def _key_file_name(key_id: str) -> str:
    return key_id.replace(":", "_") + ".cred"


class FleetTrust:
    """The node's view of its fleet. Load it with :meth:`load`; constructing it reads nothing.

    Contract (for the replication engine and the control API):

    * :meth:`verify_credential` checks a blob completely (format, canonical encoding, root
      signature, fleet id, claims, not expired) and returns a :class:`Member`; it raises
      :class:`~noderuntime.errors.CredentialError` on any defect and never changes state.
      Loading raises it too when the node's *own* credential is expired or issued in the
      future (a wrong clock): the daemon then runs local-only.
    * :meth:`add` verifies, then remembers the member (persisted, one file per key) and returns
      it; expired credentials are kept (they verify history signed while valid), so who may
      act *now* is :meth:`expired`'s call. Adding a credential already known is a cheap
      no-op. Several keys may belong to one principal (re-enrolment, key rotation): all stay
      known, so older updates still verify.
    * :meth:`member` returns the newest known credential (largest serial) of a principal,
      :meth:`member_by_key` the member holding a key id (``identity.public_key_id``), or None.
    * Lookups are in memory and cheap; the methods are thread-safe. Credentials are never
      trusted because they came from a peer: they are only ever accepted after verification.
    * :meth:`revoke` takes the fleet document's revocations and remembers them for good
      (persisted, only ever widened); :meth:`revoked` says whether a member's key is revoked
      (:mod:`noderuntime.fleet.revocation` states the cut-off rule).
    * It is the ``Trust`` of :mod:`noderuntime.sync.acl` (``node``, ``member``, ``members_of``,
      ``members``, ``add``, ``expired``, ``revoked``); mypy checks that where the daemon hands
      it to sync.
    """

    def __init__(
        self,
        data_dir: Path,
        fleet_id: str,
        root_public_key: bytes,
        node_blob: bytes,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.data_dir = data_dir
        self.dir = data_dir / FLEET_SUBDIR
        self.fleet_id = fleet_id
        self.root_public_key = root_public_key
        self.clock = clock
        self._lock = threading.Lock()
        self._by_key: dict[str, Member] = {}
        self._by_principal: dict[str, Member] = {}
        # Peers relay the same credentials over and over: known bytes skip re-verification.
        self._by_blob: dict[bytes, Member] = {}
        self._revoked: dict[str, Revocation] = {}
        # Old keys of re-keyed members: key id -> refused after (unix seconds, our clock).
        self._retired: dict[str, float] = {}
        cred = verify_credential(node_blob, root_public_key, now=clock())
        self.node = Member.from_credential(cred, node_blob)

    # --- paths (TLS material for nats-server) -----------------------------------------------

    @property
    def ca_file(self) -> Path:
        return self.dir / CA_FILE

    @property
    def cert_file(self) -> Path:
        return self.dir / NODE_CERT_FILE

    @property
    def key_file(self) -> Path:
        return self.data_dir / IDENTITY_FILE

    @property
    def member_san(self) -> str:
        """The certificate name every member carries (the leaf-node TLS user)."""
        return member_san(self.fleet_id)

    @property
    def node_blob(self) -> bytes:
        """This node's own credential, to hand to peers."""
        return self.node.blob

    # --- loading ----------------------------------------------------------------------------

    @staticmethod
    def is_enrolled(data_dir: Path) -> bool:
        return (data_dir / FLEET_SUBDIR / TRUST_FILE).is_file()

    @classmethod
    def load(cls, data_dir: Path, *, clock: Callable[[], float] = time.time) -> FleetTrust:
        """Load the node's trust store; raise NotEnrolledError or FleetError if unusable."""
        fdir = data_dir / FLEET_SUBDIR
        path = fdir / TRUST_FILE
        try:
            data = codec.loads(path.read_bytes())
            fleet_id, root = data["fleetId"], unb64u(data["rootPublicKey"])
        except FileNotFoundError:
            raise NotEnrolledError(
                f"node in {data_dir} is not enrolled in a fleet: install a token with "
                "`noderuntime init --enroll TOKENFILE` or a credential with "
                "`noderuntime enroll --credential FILE`"
            ) from None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise FleetError(f"{path} is damaged: {exc}") from exc
        if fleet_id != fleet_id_for(root):
            raise FleetError(f"{path} is inconsistent: the fleet id does not match the root key")
        try:
            node_blob = (fdir / NODE_CRED_FILE).read_bytes().strip()
        except OSError as exc:
            raise FleetError(f"cannot read {fdir / NODE_CRED_FILE}: {exc.strerror}") from exc
        trust = cls(data_dir, fleet_id, root, node_blob, clock=clock)
        trust._remember(trust.node)
        trust._load_revoked()
        members = fdir / MEMBERS_DIR
        for p in sorted(members.glob("*.cred")) if members.is_dir() else []:
            try:
                blob = p.read_bytes().strip()
                trust._remember(trust.verify_credential(blob, check_expiry=False))
            except (CredentialError, OSError):
                continue  # a damaged file is skipped, not fatal
        return trust

    # --- the API ----------------------------------------------------------------------------

    def verify_credential(self, blob: bytes | str, *, check_expiry: bool = True) -> Member:
        """Verify ``blob`` against this fleet's root; return the member or raise."""
        raw = blob.encode() if isinstance(blob, str) else bytes(blob)
        cred = verify_credential(
            raw, self.root_public_key, now=self.clock(), check_expiry=check_expiry
        )
        return Member.from_credential(cred, raw.strip())

    def add(self, blob: bytes | str) -> Member:
        """Verify and remember a member credential (persisted); return the member.

        An expired credential is remembered too: it still verifies the history its key signed
        while valid (callers judge what may be new: :meth:`expired`).
        """
        raw = (blob.encode() if isinstance(blob, str) else bytes(blob)).strip()
        with self._lock:
            seen = self._by_blob.get(raw)
        if seen is not None:
            return seen
        member = self.verify_credential(raw, check_expiry=False)
        with self._lock:
            known = self._by_key.get(member.key_id)
            if known is not None and known.credential.serial >= member.credential.serial:
                return known
        members = self.dir / MEMBERS_DIR
        members.mkdir(parents=True, exist_ok=True)
        write_atomic(members / _key_file_name(member.key_id), member.blob + b"\n")
        self._remember(member)
        return member

    def keep(self, member: Member) -> None:
        """Persist ``member`` among the known members (the node's own credential before a
        rekey replaces it: its key must go on verifying what it signed)."""
        members = self.dir / MEMBERS_DIR
        members.mkdir(parents=True, exist_ok=True)
        write_atomic(members / _key_file_name(member.key_id), member.blob + b"\n")

    def expired(self, member: Expiring) -> bool:
        """True once ``member``'s credential is past its expiry on this node's clock."""
        exp = member.not_after
        return exp is not None and self.clock() > exp

    # --- revocation (noderuntime.fleet.revocation) -------------------------------------------

    def revoke(self, entries: Mapping[str, Mapping[str, Any]]) -> list[str]:
        """Remember the fleet document's ``revocations`` entries; return the principals whose
        revocation is new or wider. A revocation is never forgotten (persisted at once)."""
        with self._lock:
            merged, changed = merge(self._revoked, parse_revocations(entries).values())
            if changed:
                self._revoked = merged
                doc = {p: r.to_dict() for p, r in sorted(merged.items())}
        if changed:
            self.dir.mkdir(parents=True, exist_ok=True)
            write_atomic(self.dir / REVOKED_FILE, json.dumps(doc, indent=2).encode() + b"\n")
        return changed

    def retire(self, entries: Mapping[str, Mapping[str, Any]]) -> list[str]:
        """Take the fleet document's retired keys (``noderuntime.fleet.rekey``): each is
        refused once its grace period is over. Returns the key ids new here."""
        found = parse_retired(entries)
        with self._lock:
            new = [k for k in found if k not in self._retired]
            for kid, (principal, after) in found.items():
                known = self._by_key.get(kid)
                if known is None or known.principal == principal:
                    self._retired[kid] = min(after, self._retired.get(kid, after))
        return new

    def revoked(self, member: Keyed) -> bool:
        """Whether ``member``'s key is revoked (or retired after a rekey and past its grace
        period): anything it signs now is refused."""
        with self._lock:
            kid = identity.public_key_id(member.public_key)
            retired = self._retired.get(kid)
            if retired is not None and self.clock() >= retired:
                return True
            rev = self._revoked.get(member.principal)
            if rev is None:
                return False
            known = self._by_key.get(kid)
        # A key we hold no credential for cannot be dated: revoked (it verifies nothing anyway).
        issued = known.credential.issued_at if known is not None else 0
        return rev.covers(member.principal, kid, issued)

    def revocation(self, principal: str) -> Revocation | None:
        with self._lock:
            return self._revoked.get(principal)

    @property
    def own_revocation(self) -> Revocation | None:
        """This node's own revocation, if its current key is revoked."""
        return self.revocation(self.node.principal) if self.revoked(self.node) else None

    def tls_pins(self) -> tuple[str, ...]:
        """The certificates this node's nats-server accepts on its leaf and route listeners:
        none pinned (any certificate the fleet CA signed) while nothing is revoked; once
        something is, every known member key that is not revoked (nats-server 2.15 has no
        certificate revocation list, only this allow-list: see docs/security.md)."""
        with self._lock:
            if not self._revoked:
                return ()
            members = list(self._by_key.values())
        return tuple(sorted({spki_pin(m.public_key) for m in members if not self.revoked(m)}))

    def _load_revoked(self) -> None:
        try:
            data = codec.loads((self.dir / REVOKED_FILE).read_bytes())
        except FileNotFoundError:
            return
        except (OSError, codec.DecodeError):
            data = None
        if not isinstance(data, dict):
            # Unreadable: refusing to start would stop the workloads; the fleet document
            # brings the revocations back at the next sync.
            return
        self._revoked = parse_revocations({k: v for k, v in data.items() if isinstance(v, dict)})

    def member(self, principal: str) -> Member | None:
        with self._lock:
            return self._by_principal.get(principal)

    def member_by_key(self, key_id: str) -> Member | None:
        with self._lock:
            return self._by_key.get(key_id)

    def members_of(self, principal: str) -> list[Member]:
        """Every known key of ``principal``, newest credential first (re-keyed authors' older
        updates verify against the key they were signed with)."""
        with self._lock:
            found = [m for m in self._by_key.values() if m.principal == principal]
        return sorted(found, key=lambda m: m.credential.serial, reverse=True)

    def members(self) -> list[Member]:
        """Every known member (newest credential per key), sorted by principal."""
        with self._lock:
            return sorted(self._by_key.values(), key=lambda m: (m.principal, m.key_id))

    def _remember(self, member: Member) -> None:
        with self._lock:
            self._by_blob[member.blob] = member
            known = self._by_key.get(member.key_id)
            if known is None or known.credential.serial < member.credential.serial:
                self._by_key[member.key_id] = member
            newest = self._by_principal.get(member.principal)
            if newest is None or newest.credential.serial < member.credential.serial:
                self._by_principal[member.principal] = member


def install_bundle(
    data_dir: Path,
    bundle: EnrollmentBundle,
    *,
    node_id: str,
    site: str,
    node_public_key: bytes,
    role: MemberRole | None = None,
) -> FleetTrust:
    """Install a verified token or credential file into a node's data directory.

    Refuses a bundle for another node id, site or role, or for a key that is not the node's
    (``node_public_key``: the key in ``identity.key``). The identity key itself is written
    by the caller (``noderuntime init``) before this is called.
    """
    cred = bundle.credential
    if cred.principal != node_principal(node_id):
        raise EnrollmentError(
            f"this enrolment is for {cred.principal}, not node:{node_id}; use the token made "
            f"for this node (fleet enroll {node_id} ...) or init with --node-id {cred.name}"
        )
    if cred.site != site:
        raise EnrollmentError(
            f"this enrolment is for site {cred.site}, not {site}; enrol the node again "
            "with the right --site"
        )
    if role is not None and cred.role is not role:
        raise EnrollmentError(
            f"this enrolment is for role {cred.role.value}, not {role.value}; enrol the node "
            f"again with --role {role.value}"
        )
    if cred.public_key != node_public_key:
        raise EnrollmentError(
            "the credential is not for this node's key: issue it for the key printed by "
            "`noderuntime enroll --show-public-key`"
        )
    check_member_cert(bundle.node_cert_pem, bundle.ca_pem, bundle.root_public_key, cred.public_key)
    fdir = data_dir / FLEET_SUBDIR
    if (fdir / TRUST_FILE).exists():
        old = codec.loads((fdir / TRUST_FILE).read_bytes()).get("fleetId")
        if old != bundle.fleet_id:
            raise EnrollmentError(
                f"this node is already enrolled in {old}; a node belongs to one fleet. "
                "Initialise a new data directory to move it"
            )
    fdir.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(fdir, 0o700)
    write_atomic(fdir / CA_FILE, bundle.ca_pem)
    write_atomic(fdir / NODE_CERT_FILE, bundle.node_cert_pem)
    write_atomic(fdir / NODE_CRED_FILE, bundle.credential_blob + b"\n")
    # trust.json last: its presence is what "enrolled" means.
    trust_doc = {"fleetId": bundle.fleet_id, "rootPublicKey": b64u(bundle.root_public_key)}
    write_atomic(fdir / TRUST_FILE, json.dumps(trust_doc, indent=2).encode() + b"\n")
    trust = FleetTrust.load(data_dir)
    trust.add(bundle.credential_blob)
    for blob in bundle.members:
        try:
            trust.add(blob)
        except CredentialError:
            continue
    return trust


def node_public_key(data_dir: Path) -> bytes:
    """The public key of the node's identity key (to have a credential issued for it)."""
    return identity.load_key(data_dir / IDENTITY_FILE, "node").public_bytes


def show_public_key(data_dir: Path) -> str:
    """The key as standard base64: base64url may start with '-', which the shell command
    `fleet enroll --public-key KEY` would take for an option (1 node in 64)."""
    import base64

    return base64.b64encode(node_public_key(data_dir)).decode()
