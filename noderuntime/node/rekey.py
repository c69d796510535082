"""The node's side of a key rotation (``noderuntime rekey``; the flow: noderuntime.fleet.rekey).

:func:`noderuntime.api.routes.rekey` makes the pending key and writes the request into the node's
own document.
:class:`RekeyWatch` waits for the issued credential: once its node document holds one for the
pending key, verified against the fleet root and CA, it installs key, credential and certificate
(``<data-dir>/identity.key``, ``fleet/node.cred``, ``fleet/node.crt``) and calls ``on_installed``:
the daemon then restarts itself in place, as the new key is in everything it signs and in the
certificate its nats-server presents. Its workloads keep running meanwhile (containers do not
depend on the daemon).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from noderuntime.crdt import schema
from noderuntime.errors import CredentialError, EnrollmentError, IdentityError
from noderuntime.fleet.bundle import write_atomic
from noderuntime.fleet.rekey import ISSUED, parse_issued, pending_key_path
from noderuntime.fleet.tls import check_member_cert
from noderuntime.fleet.trust import CA_FILE, NODE_CERT_FILE, NODE_CRED_FILE
from noderuntime.identity import keys as identity
from noderuntime.node.watch import StoreWatch

if TYPE_CHECKING:
    from noderuntime.crdt.state import StateStore
    from noderuntime.fleet.trust import FleetTrust


def install(trust: FleetTrust, credential: bytes, cert_pem: bytes) -> bool:
    """Install an issued credential for the pending key; False if it is not for it (yet).

    Raises CredentialError or EnrollmentError for one that does not verify."""
    path = pending_key_path(trust.dir)
    if not path.exists():
        return False
    new = identity.load_key(path, trust.node.principal)
    member = trust.verify_credential(credential)
    if member.public_key != new.public_bytes:
        return False
    if (member.principal, member.role, member.site) != (
        trust.node.principal,
        trust.node.role,
        trust.node.site,
    ):
        raise CredentialError("the issued credential changes the node's name, role or site")
    check_member_cert(
        cert_pem, (trust.dir / CA_FILE).read_bytes(), trust.root_public_key, new.public_bytes
    )
    trust.keep(trust.node)  # every key the node had stays known: its history still verifies
    trust.add(credential)
    write_atomic(trust.dir / NODE_CERT_FILE, cert_pem)
    write_atomic(trust.dir / NODE_CRED_FILE, credential.strip() + b"\n")
    os.replace(path, trust.key_file)  # last: the key and what vouches for it, together
    return True


class RekeyWatch(StoreWatch):
    """``async with RekeyWatch(...)``: installs an issued credential for the pending key."""

    def __init__(
        self,
        state: StateStore,
        trust: FleetTrust,
        node_id: str,
        *,
        on_installed: Callable[[], None],
        log: logging.Logger,
    ) -> None:
        super().__init__(state, name="rekey", log=log)
        self.state = state
        self.trust = trust
        self.node_id = node_id
        self.on_installed = on_installed
        self.log = log
        self._refused: bytes | None = None

    async def step(self) -> bool:
        return pending_key_path(self.trust.dir).exists() and self.check()

    def check(self) -> bool:
        """Install an issued credential if there is one for the pending key."""
        doc = schema.node_doc(self.node_id)
        records = self.state.read(doc, schema.read_rekey) if self.state.holds(doc) else {}
        issued = parse_issued(records.get(ISSUED))
        if issued is None or issued[0] == self._refused:
            return False
        try:
            done = install(self.trust, *issued)
        except (CredentialError, EnrollmentError, IdentityError, OSError) as exc:
            self._refused = issued[0]
            self.log.error("rekey: the issued credential was not installed: %s", exc)
            return False
        if done:
            self.log.warning("rekey: new key installed; restarting in place to use it")
            self.on_installed()
        return done
