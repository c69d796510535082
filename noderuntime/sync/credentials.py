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
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from noderuntime.sync import protocol
from noderuntime.sync.acl import Trust
from noderuntime.sync.verify import keys_of

CREDENTIAL_PUSH_INTERVAL_S = 2.0
_NEVER = -1e9


@dataclass(frozen=True)
class Learnt:
    """What a CREDENTIALS message taught us."""

    new_member: bool  # a member new to us: push ours, they may lack it
    repair: bool  # an author whose updates we refused: run a repair round
    refused: tuple[str, ...] = ()  # why each refused credential was refused


class CredentialRelay:
    def __init__(self, trust: Trust, clock: Callable[[], float]) -> None:
        self.trust = trust
        self.clock = clock
        # Authors whose credential we lack (updates refused as unknown_author): asked for,
        # and a repair round follows once any of them is learnt.
        self.missing_authors: set[str] = set()
        self._last_push = -CREDENTIAL_PUSH_INTERVAL_S
        self._last_request: dict[str, float] = {}
        self._last_answer: dict[str, float] = {}

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
        wanted = set(principals)
        self.missing_authors |= wanted
        now = self.clock()
        due = sorted(
            p
            for p in wanted
            if now - self._last_request.get(p, _NEVER) >= CREDENTIAL_PUSH_INTERVAL_S
        )[: protocol.MAX_REQUESTED]
        for p in due:
            self._last_request[p] = now
        return due

    def answer(self, principals: Sequence[str]) -> list[bytes]:
        """The credentials to send in answer to a request for ``principals``."""
        now = self.clock()
        blobs: list[bytes] = []
        for principal in principals:
            if now - self._last_answer.get(principal, _NEVER) < CREDENTIAL_PUSH_INTERVAL_S:
                continue
            found = [m.blob for m in keys_of(self.trust, principal) if m.blob is not None]
            if found:
                self._last_answer[principal] = now
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
        found = learnt & self.missing_authors
        self.missing_authors -= found
        return Learnt(
            new_member=len(self.trust.members()) > before,
            repair=bool(found),
            refused=tuple(refused),
        )
