"""Who may write and who may read each document: pure functions over plain data.

Writer ACL (checked by every receiver, for every update, before pycrdt sees it):

    fleet          operators; hubs as relays only. Hubs run rollouts (design decision 7) that
                   operators signed: a hub's own key may add rollout facts and, when a
                   rollout completes, make the operator-signed candidate the stable spec,
                   nothing else (no workload, lock, window, revision or rollout record of its
                   own; issue 13 §6). That is content, checked at ingest on a copy of the
                   document (:func:`relay_only`, ``crdt.schema.relay_problem``), since this
                   update-level check cannot see inside the update. A plain node never writes.
    site/<s>       operators, and nodes (or hubs) enrolled at site <s>. A technician's change
                   is signed by the node they stand at, attributed in the signed meta
                   (``onBehalf``), so the node's rights apply.
    node/<n>       node <n> itself, and operators (node overrides live in the node document,
                   see ``crdt/schema.py``, and an operator may set them remotely).

Reader ACL (checked before answering a peer's state vector): a member may receive the documents
it holds; a sovereign site's ``site/<s>`` and ``node/<n>`` (n at s) documents go only to members
enrolled at <s>, never to hubs or nodes elsewhere.

The trust store is the fleet helper's ``FleetTrust``; sync uses it only through the
:class:`Trust` protocol below, so mypy checks every call across that seam.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from noderuntime.identity.principals import node_id_of

_ID_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,61}[a-z0-9])?\Z")

ROLE_OPERATOR = "operator"
ROLE_NODE = "node"
ROLE_HUB = "hub"


class MemberLike(Protocol):
    """An enrolled principal, as the fleet trust anchor vouches for it."""

    @property
    def principal(self) -> str: ...  # "node:<id>" or "operator:<name>"

    @property
    def role(self) -> str: ...  # "operator", "node" or "hub"

    @property
    def site(self) -> str | None: ...

    @property
    def public_key(self) -> bytes: ...  # raw Ed25519, 32 bytes

    @property
    def blob(self) -> bytes | None:
        """The credential as the root signed it, relayed to peers that lack it (None: this
        store holds nothing it could relay)."""
        ...

    @property
    def not_after(self) -> float | None: ...  # expiry, unix seconds; None: never


class Trust(Protocol):
    """What the sync engine and the verifier need of the fleet's trust store.

    Implemented by ``noderuntime.fleet.trust.FleetTrust`` (its docstring states the contract)
    and by the tests' ``FakeTrust``. Lookups are cheap and in memory; only :meth:`add` may
    touch the disk.
    """

    @property
    def node(self) -> MemberLike | None:
        """This node's own credential (None: a store not bound to one node, as in tests)."""
        ...

    def member(self, principal: str) -> MemberLike | None:
        """The newest known credential of ``principal``."""
        ...

    def members_of(self, principal: str) -> Sequence[MemberLike]:
        """Every known key of ``principal``, newest credential first."""
        ...

    def members(self) -> Sequence[MemberLike]:
        """Every known member (one entry per key)."""
        ...

    def add(self, blob: bytes) -> MemberLike:
        """Verify a credential against the fleet root and remember it; a no-op when known.

        Raises :class:`~noderuntime.errors.CredentialError` for a blob that does not verify.
        """
        ...

    def expired(self, member: MemberLike) -> bool:
        """Whether ``member``'s credential is past its expiry now (it may still verify
        history it signed while valid, but not new changes or live messages)."""
        ...

    def revoked(self, member: MemberLike) -> bool:
        """Whether ``member``'s key is revoked (``noderuntime.fleet.revocation``): whatever it
        signs now is refused, whatever time it claims; what was applied before stays."""
        ...


class DocKind(enum.Enum):
    FLEET = "fleet"
    SITE = "site"
    NODE = "node"


@dataclass(frozen=True)
class DocRef:
    kind: DocKind
    ident: str = ""  # site id or node id

    @property
    def name(self) -> str:
        return "fleet" if self.kind is DocKind.FLEET else f"{self.kind.value}/{self.ident}"


def parse_doc(name: str) -> DocRef | None:
    """The document a name refers to, or None if it is not a valid document name."""
    if name == "fleet":
        return DocRef(DocKind.FLEET)
    kind, sep, ident = name.partition("/")
    if not sep or not _ID_RE.match(ident):
        return None
    if kind == "site":
        return DocRef(DocKind.SITE, ident)
    if kind == "node":
        return DocRef(DocKind.NODE, ident)
    return None


def is_member_principal(principal: str) -> bool:
    """Whether ``principal`` could name an enrolled member (``node:ID`` or ``operator:NAME``).

    Anyone can put any string where an author goes; only names a credential could carry are
    worth asking the fleet about.
    """
    kind, sep, name = principal.partition(":")
    return bool(sep) and kind in ("node", "operator") and _ID_RE.match(name) is not None


def may_write(doc: DocRef, member: MemberLike) -> bool:
    role = member.role
    if role == ROLE_OPERATOR:
        return True
    if role not in (ROLE_NODE, ROLE_HUB):
        return False
    if doc.kind is DocKind.FLEET:
        return role == ROLE_HUB
    if doc.kind is DocKind.SITE:
        return member.site == doc.ident
    return node_id_of(member.principal) == doc.ident


def relay_only(doc: DocRef, authors: Iterable[str], trust: Trust) -> set[str]:
    """The authors among ``authors`` whose updates of ``doc`` must be content-checked as a
    hub's relay (see the writer ACL above): hubs, on the fleet document."""
    if doc.kind is not DocKind.FLEET:
        return set()
    return {a for a in set(authors) if any(m.role == ROLE_HUB for m in trust.members_of(a))}


def doc_site(doc: DocRef, site_of_node: str | None) -> str | None:
    """The site a document belongs to (None for the fleet document)."""
    if doc.kind is DocKind.SITE:
        return doc.ident
    if doc.kind is DocKind.NODE:
        return site_of_node
    return None


def may_read(doc: DocRef, reader: MemberLike, *, site_of_doc: str | None, sovereign: bool) -> bool:
    """May ``reader`` be sent ``doc``? ``sovereign``: the doc's site keeps its docs inside."""
    if doc.kind is DocKind.FLEET:
        return True
    if sovereign:
        return reader.site is not None and reader.site == site_of_doc
    return True


def holds(doc: DocRef, *, role: str, site: str, node_id: str, site_of_doc: str | None) -> bool:
    """Does a member with this role/site hold ``doc``? (its scopes; a hub holds everything)."""
    if role == ROLE_HUB or doc.kind is DocKind.FLEET:
        return True
    if doc.kind is DocKind.SITE:
        return doc.ident == site
    return doc.ident == node_id
