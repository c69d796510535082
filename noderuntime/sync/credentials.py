"""Credential relay: which member credentials to push, request and answer, and how often.

No I/O: the engine publishes what these methods return. The rules:

- **Push.** Our own credential and every operator's and hub's we know go out with every
  anti-entropy round, and at most every ``CREDENTIAL_PUSH_INTERVAL_S`` when we meet a member
  that may not know us (a message from an unknown sender, a credential new to us). Other
  nodes' credentials are relayed on request only, so the push stays small however large the
  fleet.
- **Request.** An update refused as ``unknown_author`` (or a node's live message from an
  unknown sender) makes us ask everyone for that principal's credential, each principal at
  most every ``CREDENTIAL_PUSH_INTERVAL_S`` and at most ``protocol.MAX_REQUESTED`` at once:
  its author may be offline or gone, but every member that verified its updates holds it.
- **Answer.** Every member that knows a requested credential answers (so a requester is served
  while any of them is reachable), each principal at most every ``CREDENTIAL_PUSH_INTERVAL_S``
  (bounding the cost of a node that keeps asking).
- **Learn.** Received credentials are verified by the trust store (``Trust.add``); learning an
  author whose updates we refused calls for a repair round, which brings them again.
- **Bounds.** Anyone on the bus can name authors and ask for principals, with no key, so every
  table here is bounded (:mod:`.bounded`; what is forgotten is counted): at most
  ``MAX_MISSING_AUTHORS`` missing authors and ``MAX_RATE_KEYS`` rate-limited principals. Only
  names a credential could carry (:func:`~noderuntime.sync.acl.is_member_principal`) are asked
  for, and at most ``REQUEST_BUDGET`` principals every ``CREDENTIAL_PUSH_INTERVAL_S`` in all:
  2 million made-up author names cost a receiver neither memory nor a flood of requests to the
  fleet (the rest are asked for when their updates come again, at the next repair round).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from noderuntime.sync import protocol
from noderuntime.sync.acl import Trust, is_member_principal
from noderuntime.sync.bounded import Budget, LruTable, RateLimit
from noderuntime.sync.verify import keys_of

CREDENTIAL_PUSH_INTERVAL_S = 2.0
MAX_MISSING_AUTHORS = 1024
MAX_RATE_KEYS = 4096
# Principals asked for per CREDENTIAL_PUSH_INTERVAL_S, all requests together: a rebuilt hub
# learning a fleet of 1,000 nodes asks for all of them within ~16 s.
REQUEST_BUDGET = 2 * protocol.MAX_REQUESTED


@dataclass(frozen=True)
class Learnt:
    """What a CREDENTIALS message taught us."""

    new_member: bool  # a member new to us: push ours, they may lack it
    repair: bool  # an author whose updates we refused: run a repair round
    refused: tuple[str, ...] = ()  # why each refused credential was refused


class CredentialRelay:
    def __init__(
        self,
        trust: Trust,
        clock: Callable[[], float],
        on_evict: Callable[[], None] | None = None,
    ) -> None:
        self.trust = trust
        self.clock = clock
        # Authors whose credential we lack (updates refused as unknown_author): asked for,
        # and a repair round follows once any of them is learnt.
        self.missing_authors: LruTable[str, None] = LruTable(MAX_MISSING_AUTHORS, on_evict)
        self._last_push = -CREDENTIAL_PUSH_INTERVAL_S
        self._requests: RateLimit[str] = RateLimit(
            CREDENTIAL_PUSH_INTERVAL_S, clock, cap=MAX_RATE_KEYS, on_evict=on_evict
        )
        self._answers: RateLimit[str] = RateLimit(
            CREDENTIAL_PUSH_INTERVAL_S, clock, cap=MAX_RATE_KEYS, on_evict=on_evict
        )
        self._budget = Budget(REQUEST_BUDGET / CREDENTIAL_PUSH_INTERVAL_S, REQUEST_BUDGET, clock)
        # Principals not asked for now because the budget was spent (the rest wait).
        self.requests_deferred = 0

    def known(self) -> list[bytes]:
        """Our own credential and every operator's and hub's we know (the periodic push)."""
        blobs: list[bytes] = []
        own = self.trust.node
        if own is not None and own.blob is not None:
            blobs.append(own.blob)
        for m in self.trust.members():
            if m.blob is not None and m.role in ("operator", "hub") and m.blob not in blobs:
                blobs.append(m.blob)
        return blobs

    def push_due(self) -> bool:
        """Whether an extra push may go out now (then it counts as sent)."""
        now = self.clock()
        if now - self._last_push < CREDENTIAL_PUSH_INTERVAL_S:
            return False
        self._last_push = now
        return True

    def to_request(self, principals: Iterable[str]) -> list[str]:
        """Remember ``principals`` as missing; return those due to be asked for now."""
        wanted = sorted({p for p in principals if is_member_principal(p)})
        for p in wanted:
            self.missing_authors[p] = None
        due: list[str] = []
        for p in wanted:
            if len(due) >= protocol.MAX_REQUESTED or not self._requests.ready(p):
                continue
            if not self._budget.take():
                self.requests_deferred += 1
                continue
            self._requests.mark(p)
            due.append(p)
        return due

    def answer(self, principals: Sequence[str]) -> list[bytes]:
        """The credentials to send in answer to a request for ``principals``."""
        blobs: list[bytes] = []
        for principal in principals:
            if not self._answers.ready(principal):
                continue
            found = [m.blob for m in keys_of(self.trust, principal) if m.blob is not None]
            if found:
                self._answers.mark(principal)
                blobs += found
        return blobs

    def learn(self, blobs: Sequence[bytes]) -> Learnt:
        """Verify and remember received credentials (``Trust.add``: a no-op when known)."""
        before = len(self.trust.members())
        learnt: set[str] = set()
        refused: list[str] = []
        for blob in blobs:
            try:
                member = self.trust.add(blob)
            except Exception as exc:  # CredentialError, or the disk: a peer's bytes never crash us
                refused.append(str(exc))
                continue
            learnt.add(member.principal)
        found = {p for p in learnt if p in self.missing_authors}
        for p in found:
            self.missing_authors.pop(p)
        return Learnt(
            new_member=len(self.trust.members()) > before,
            repair=bool(found),
            refused=tuple(refused),
        )
