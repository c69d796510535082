"""Acting on revocations: the fleet document's ``revocations`` into the trust store, and the
certificates the node's nats-server still accepts.

What a revocation means is :mod:`noderuntime.fleet.revocation`'s; this part only applies it:

* every change of the state store (a fleet update applied) hands the document's revocations to
  :meth:`FleetTrust.revoke`, which remembers them for good; from then on the sync engine refuses
  whatever the revoked keys sign (``Trust.revoked``, counted as ``revoked``);
* the nats-server's pinned certificates follow :meth:`FleetTrust.tls_pins` (a restart on the
  same ports, :meth:`NatsServer.reconfigure`: a revoked member's leaf and route links close and
  its certificate is refused from then on). A change that refuses a certificate the server
  accepts waits ``LINK_CLOSE_GRACE_S`` first: the revocation is still on its way through these
  links (to the revoked node too, so it can say it is revoked; and a restart at the node that
  wrote it would drop its broadcast), while every engine already refuses what the revoked key
  signs. Pins that only admit someone apply at once, and so do pins at start;
  Credentials learnt from peers change the pins too, so they are compared every
  ``PIN_CHECK_S`` as well as at each revocation;
* this node's own revocation is logged once (status and doctor show it); its workloads keep
  running: local-first holds, and an operator decides what becomes of the node.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import TYPE_CHECKING

from noderuntime.audit.chain import AuditKind
from noderuntime.audit.log import AuditSink, NullAudit
from noderuntime.node.watch import StoreWatch

if TYPE_CHECKING:
    from noderuntime.crdt.state import StateStore
    from noderuntime.fleet.trust import FleetTrust
    from noderuntime.sync.natsserver import NatsServer

PIN_CHECK_S = 5.0
LINK_CLOSE_GRACE_S = 5.0


def narrows(current: tuple[str, ...], pins: tuple[str, ...]) -> bool:
    """Whether ``pins`` refuse a certificate ``current`` accepts (no pins: any the CA signed)."""
    if not pins:
        return False
    return not current or not set(current) <= set(pins)


class RevocationWatch(StoreWatch):
    """``async with RevocationWatch(state, trust, nats, log=...)``: applies revocations as they
    arrive (see the module docstring). Constructing it starts nothing."""

    def __init__(
        self,
        state: StateStore,
        trust: FleetTrust,
        nats: NatsServer | None,
        *,
        log: logging.Logger,
        pin_check_s: float = PIN_CHECK_S,
        link_close_grace_s: float = LINK_CLOSE_GRACE_S,
        audit: AuditSink | None = None,
    ) -> None:
        super().__init__(state, name="revocations", log=log, tick_s=pin_check_s)
        self.state = state
        # Each revocation this node takes in is an audit entry (issue 13 §3).
        self.audit: AuditSink = audit or NullAudit()
        self.trust = trust
        self.nats = nats
        self.log = log
        self._told_own = False
        self.link_close_grace_s = link_close_grace_s
        self._close_at: float | None = None  # monotonic; when narrowed pins apply

    async def starting(self) -> None:
        self.apply()
        await self._pin(grace=False)

    async def step(self) -> bool:
        self.apply()
        await self._pin(grace=True)
        return False

    def apply(self) -> list[str]:
        """Take the fleet document's revocations in; return the principals newly (or more
        widely) revoked."""
        fleet = self.state.snapshot().fleet
        self.trust.retire(fleet.retired_keys)
        changed = self.trust.revoke(fleet.revocations)
        for principal in changed:
            rev = self.trust.revocation(principal)
            self.log.warning(
                "revocation: %s revoked by %s%s: its updates, heartbeats and requests are "
                "refused from now on",
                principal,
                rev.by if rev is not None else "an operator",
                f" ({rev.reason})" if rev is not None and rev.reason else "",
            )
            self.audit.record(
                AuditKind.REVOKED,
                rev.by if rev is not None else "operator",
                principal=principal,
                reason=rev.reason if rev is not None else None,
            )
        own = self.trust.own_revocation
        if own is not None and not self._told_own:
            self._told_own = True
            self.log.error(
                "revocation: this node's key was revoked by %s: the fleet refuses it; its "
                "workloads keep running here until an operator decides (docs/operations.md, "
                "Revocation)",
                own.by or "an operator",
            )
        return changed

    async def _pin(self, *, grace: bool) -> None:
        nats = self.nats
        if nats is None:
            return
        pins = self.trust.tls_pins()
        if pins == nats.settings.pinned:
            self._close_at = None
            return
        if grace and self.link_close_grace_s > 0 and narrows(nats.settings.pinned, pins):
            now = time.monotonic()
            if self._close_at is None:
                self._close_at = now + self.link_close_grace_s
                self.log.info(
                    "nats-server: closing revoked members' links in %.0f s (the revocation "
                    "travels through them first)",
                    self.link_close_grace_s,
                )
            if now < self._close_at:
                self.wake_after(self._close_at - now)
                return
        self._close_at = None
        self.log.info("nats-server: restarting with %d member certificate(s) pinned", len(pins))
        await nats.reconfigure(dataclasses.replace(nats.settings, pinned=pins))
