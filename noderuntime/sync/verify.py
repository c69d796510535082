"""Verify before decoding: signature and writer ACL of every update, before pycrdt sees it.

Order of checks for each update in an UPDATES message (cheapest and safest first):

1. the whole message is at most ``maxMessageBytes`` (``protocol.decode``, before parsing);
2. it parses under the strict wire format, every field bounded (``protocol.decode``);
3. the document name is valid, and the node holds (or, as a hub, may hold) the document;
4. the author is an enrolled member of the fleet (``Trust.member``);
5. the Ed25519 signature over ``signing_input(doc, data, meta)`` verifies with one of the
   author's enrolled keys (a re-keyed author's history carries its older keys' signatures);
6. the key is not revoked (``Trust.revoked``; the cut-off rule is in
   :mod:`noderuntime.fleet.revocation`), and the author may write the document
   (:func:`noderuntime.sync.acl.may_write`);
7. only then the update bytes are parsed (``crdt.clocks.parse_update``, strict and bounded),
   trial-applied on a scratch document and applied (``StateStore.ingest``), with pycrdt's
   ``PanicException`` (a ``BaseException``) caught around every apply.

Residual risk: an enrolled, authorised author whose key is stolen can sign bytes that make
pycrdt loop or allocate without bound (Yrs decoder bugs have done both). Size bounds cap the
input at ``maxUpdateBytes``, the strict parser refuses anything it cannot account for, and the
author is named in the log; a hang inside the Rust decoder cannot be interrupted from Python.
Revoking the author's enrolment is the remedy.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable, Sequence

from noderuntime.audit.chain import AuditKind
from noderuntime.audit.log import AuditSink, NullAudit
from noderuntime.crdt.envelope import signing_input, size_problem
from noderuntime.crdt.state import IngestResult, Origin, StateStore
from noderuntime.crdt.store import NewUpdate
from noderuntime.errors import UpdateRejectedError
from noderuntime.identity.keys import verify
from noderuntime.sync.acl import DocRef, MemberLike, Trust, may_write, parse_doc, relay_only
from noderuntime.sync.protocol import WireUpdate

LOG_EVERY_S = 60.0


class Cause(enum.Enum):
    """Why a message or an update was refused (wire value: the string)."""

    OVERSIZED = "oversized"
    MALFORMED = "malformed"
    VERSION = "version"
    BAD_DOC = "bad_doc"
    UNKNOWN_AUTHOR = "unknown_author"
    BAD_CREDENTIAL = "bad_credential"
    BAD_SIGNATURE = "bad_signature"
    UNAUTHORISED = "unauthorised"
    SOVEREIGN = "sovereign"
    REPLAYED = "replayed"
    STALE = "stale"
    CLONED = "cloned"
    UNANCHORED = "unanchored"
    CLIENT_CONFLICT = "client_conflict"
    CORRUPT = "corrupt"
    EXPIRED = "expired"
    REVOKED = "revoked"
    OVERLOAD = "overload"
    INTERNAL = "internal"


def check_update(
    doc: DocRef, u: WireUpdate, trust: Trust
) -> tuple[MemberLike | None, Cause | None]:
    """Steps 4-6 above for one update of ``doc``; returns (author, None) when it may apply.

    Every known key of the author is tried (newest first): a re-keyed member's history was
    signed with its older keys, and the ACL applies to what the root said of that key.
    """
    keys = keys_of(trust, u.author)
    if not keys:
        return None, Cause.UNKNOWN_AUTHOR
    signed = signing_input(doc.name, u.data, u.meta)
    member = next((m for m in keys if verify(m.public_key, u.signature, signed)), None)
    if member is None:
        return keys[0], Cause.BAD_SIGNATURE
    if trust.revoked(member):
        return member, Cause.REVOKED
    if not may_write(doc, member):
        return member, Cause.UNAUTHORISED
    return member, None


def verify_updates(
    doc: DocRef, updates: Sequence[WireUpdate], trust: Trust
) -> tuple[list[NewUpdate], list[tuple[Cause, str]]]:
    """Steps 4-6 for every update of one UPDATES message of ``doc``: the updates that may be
    applied, in order, and the (cause, author) of each refused one, in order."""
    accepted: list[NewUpdate] = []
    refused: list[tuple[Cause, str]] = []
    for u in updates:
        _, cause = check_update(doc, u, trust)
        if cause is not None:
            refused.append((cause, u.author))
        else:
            accepted.append(NewUpdate(doc.name, u.data, u.author, u.signature, u.ts, u.meta))
    return accepted, refused


def keys_of(trust: Trust, principal: str) -> list[MemberLike]:
    """The principal's known credentials, newest first."""
    return [m for m in trust.members_of(principal) if m.principal == principal]


def check_signed(
    sender: str, signature: bytes, signed: bytes, trust: Trust
) -> tuple[MemberLike | None, Cause | None]:
    """A STATE, HEARTBEAT or EVENT message: enrolled sender, valid signature, not revoked, not
    expired (these are live messages, never history)."""
    member = trust.member(sender)
    if member is None or member.principal != sender:
        return None, Cause.UNKNOWN_AUTHOR
    if not verify(member.public_key, signature, signed):
        return member, Cause.BAD_SIGNATURE
    if trust.revoked(member):
        return member, Cause.REVOKED
    if trust.expired(member):
        return member, Cause.EXPIRED
    return member, None


async def submit_signed(
    state: StateStore, trust: Trust, update: NewUpdate, *, hub: bool = False
) -> IngestResult:
    """Verify and ingest an update signed elsewhere (an operator's CLI): the peer path.

    Raises :class:`UpdateRejectedError` saying why, so the operator sees it at once.
    """
    doc = parse_doc(update.doc)
    if doc is None:
        raise UpdateRejectedError(f"{update.doc!r} is not a document name")
    problem = size_problem(update.data, update.meta)
    if problem:
        raise UpdateRejectedError(problem)
    wire = WireUpdate(update.author, update.signature, update.ts, update.meta, update.data)
    member, cause = check_update(doc, wire, trust)
    if cause is None and member is not None and trust.expired(member):
        # A submission is a new change by definition; history is what peers relay.
        raise UpdateRejectedError(
            f"the credential of {update.author} has expired; issue a new one "
            "(`noderuntime fleet add-operator`) to make changes"
        )
    if cause is Cause.REVOKED:
        raise UpdateRejectedError(
            f"the key of {update.author} is revoked; an operator must enrol it again "
            "(`noderuntime fleet enroll` / `fleet add-operator`) before it can make changes"
        )
    if cause is not None:
        raise UpdateRejectedError(
            f"update of {doc.name} signed by {update.author} was refused ({cause.value}); "
            "check that the operator is enrolled in this node's fleet"
        )
    (result,) = await state.ingest(
        [update],
        origin=Origin.SUBMITTED,
        create_docs=hub,
        relay_only=relay_only(doc, [update.author], trust),
    )
    if result in (IngestResult.APPLIED, IngestResult.DUPLICATE):
        return result
    raise UpdateRejectedError(f"update of {doc.name} was refused ({result.value})")


class Rejections:
    """Counts refusals by cause; logs the first of each cause, then at most once a minute.

    The audit log gets the same summary as the log, at the same rate: a flood of forged
    updates adds one entry per cause a minute, not one per message.
    """

    def __init__(
        self,
        log: logging.Logger,
        *,
        clock: Callable[[], float] = time.monotonic,
        every_s: float = LOG_EVERY_S,
        audit: AuditSink | None = None,
    ) -> None:
        self._log = log
        self._audit = audit or NullAudit()
        self._clock = clock
        self._every_s = every_s
        self.counts: dict[str, int] = {}
        self._last_log: dict[str, float] = {}
        self._unlogged: dict[str, int] = {}

    def reject(self, cause: Cause, detail: str = "") -> None:
        key = cause.value
        self.counts[key] = self.counts.get(key, 0) + 1
        now = self._clock()
        last = self._last_log.get(key)
        if last is not None and now - last < self._every_s:
            self._unlogged[key] = self._unlogged.get(key, 0) + 1
            return
        more = self._unlogged.pop(key, 0)
        self._last_log[key] = now
        self._log.warning(
            "sync: rejected (%s)%s%s",
            key,
            f": {detail}" if detail else "",
            f" [{more} more since last report]" if more else "",
        )
        self._audit.record(
            AuditKind.SYNC_REJECTED, "sync", cause=key, detail=detail[:300], count=more + 1
        )

    @property
    def total(self) -> int:
        return sum(self.counts.values())
