"""Revocation: which credentials the fleet no longer accepts (pure functions over plain data).

A revocation is a record in the fleet document's ``revocations`` map, keyed by principal and
written by an operator (``noderuntime revoke MEMBER --as OPERATOR``)::

    revocations: "node:n3" -> {"principal": "node:n3", "at": 1764760000,
                               "keys": ["ed25519:..."], "by": "operator:alice", "reason": "..."}

Who may revoke whom: an operator may revoke any node, hub or other operator. Nothing else may:
only operators write the fleet document's policy (the writer ACL in ``noderuntime.sync.acl``; a
hub's key is refused by ``crdt.schema.relay_problem``), so a stolen node or hub can neither
revoke its neighbours nor lift its own revocation.

What a revocation covers (the cut-off rule): every credential of the principal that the fleet
root issued at or before ``at`` (the credential's ``iat``, which the root signed), and the keys
listed. A credential the root issues later (``noderuntime fleet enroll`` again) is a
re-admission with a new key. Nothing about an update's or message's own claimed time matters:
from the moment a node holds the revocation, every new update, heartbeat, state vector or
request signed by a revoked key is refused, whatever time it says it was made (time inside an
update is the attacker's word). Updates a node had already applied stay applied, and their
signatures still verify (the key stays known), so history and ``describe`` stay explainable.

Revocations are sticky: a node remembers every one it has seen (``fleet/revoked.json``) and
merges later records into it, never removing one, so an operator's key that was stolen after
the fact cannot lift a revocation by deleting the record.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from noderuntime.identity.principals import parse_principal

REVOCATIONS = "revocations"  # the fleet document's map (same name as crdt.schema.REVOCATIONS)

# The DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410): nats-server pins certificates
# by the SHA-256 of that structure, and every member's certificate carries its Ed25519 key.
_ED25519_SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")


@dataclass(frozen=True)
class Revocation:
    """One principal's revocation as the fleet document holds it."""

    principal: str
    at: int  # unix seconds: credentials issued at or before this are revoked
    keys: frozenset[str] = frozenset()
    by: str = ""
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "principal": self.principal,
            "at": self.at,
            "keys": sorted(self.keys),
            "by": self.by,
            "reason": self.reason,
        }

    def covers(self, principal: str, key_id: str, issued_at: int) -> bool:
        """Whether a credential of ``principal`` for ``key_id``, issued at ``issued_at``, is
        revoked by this record."""
        return principal == self.principal and (key_id in self.keys or issued_at <= self.at)

    def merged(self, other: Revocation) -> Revocation:
        """Both records at once: the later cut-off and every key either names (a revocation
        only ever widens; see the module docstring)."""
        return Revocation(
            self.principal,
            max(self.at, other.at),
            self.keys | other.keys,
            other.by if other.at > self.at else self.by,
            other.reason if other.at > self.at else self.reason,
        )


def parse_revocation(key: str, value: Mapping[str, Any]) -> Revocation | None:
    """The record stored under ``key``, or None if it is not a well-formed revocation."""
    principal, at, keys = value.get("principal"), value.get("at"), value.get("keys", [])
    if principal != key or parse_principal(key) is None:
        return None
    if isinstance(at, bool) or not isinstance(at, int | float) or at < 0:
        return None
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        return None
    by, reason = value.get("by", ""), value.get("reason", "")
    return Revocation(
        principal,
        int(at),
        frozenset(keys),
        by if isinstance(by, str) else "",
        reason if isinstance(reason, str) else "",
    )


def parse_revocations(entries: Mapping[str, Mapping[str, Any]]) -> dict[str, Revocation]:
    """Every well-formed record of the fleet document's ``revocations`` map, by principal."""
    out: dict[str, Revocation] = {}
    for key, value in entries.items():
        rev = parse_revocation(key, value)
        if rev is not None:
            out[key] = rev
    return out


def merge(
    known: Mapping[str, Revocation], seen: Iterable[Revocation]
) -> tuple[dict[str, Revocation], list[str]]:
    """``known`` widened by ``seen``; returns (the result, principals whose revocation is new
    or wider). Nothing is ever removed."""
    out = dict(known)
    changed: list[str] = []
    for rev in seen:
        old = out.get(rev.principal)
        new = rev if old is None else old.merged(rev)
        if new != old:
            out[rev.principal] = new
            changed.append(rev.principal)
    return out, changed


def revocation_entry(
    principal: str, *, keys: Iterable[str], by: str, at: float, reason: str = ""
) -> Revocation:
    """The record ``noderuntime revoke`` writes."""
    return Revocation(principal, int(at), frozenset(keys), by, reason)


def may_revoke(revoker_role: str) -> bool:
    """Only an operator revokes (any member, operators included; see the module docstring)."""
    return revoker_role == "operator"


def spki_pin(public_key: bytes) -> str:
    """The nats-server ``pinned_certs`` entry for a member certificate carrying ``public_key``
    (hex SHA-256 of its DER SubjectPublicKeyInfo)."""
    return hashlib.sha256(_ED25519_SPKI_PREFIX + public_key).hexdigest()
