"""Fleet identity: the trust anchor, member credentials, enrolment and the node's trust store.

* :mod:`.credential` - the signed credential format (``nrc1.``) and its verification;
* :mod:`.tls` - the X.509 fleet CA and member certificates for mutual TLS on leaf links;
* :mod:`.bundle` - enrolment tokens (offline, secret) and credential files (online);
* :mod:`.authority` - the fleet directory holding the root key; operator profiles (``--as``);
* :mod:`.trust` - :class:`FleetTrust`, what a node trusts (used by replication).
"""

from __future__ import annotations

from noderuntime.fleet.authority import (
    FleetAuthority,
    FleetInfo,
    load_operator,
    resolve_operator_dir,
)
from noderuntime.fleet.bundle import EnrollmentBundle, parse_bundle, read_bundle
from noderuntime.fleet.credential import (
    Credential,
    MemberRole,
    decode_credential,
    fleet_id_for,
    sign_credential,
    verify_credential,
)
from noderuntime.fleet.trust import FleetTrust, Member, install_bundle

__all__ = [
    "Credential",
    "EnrollmentBundle",
    "FleetAuthority",
    "FleetInfo",
    "FleetTrust",
    "Member",
    "MemberRole",
    "decode_credential",
    "fleet_id_for",
    "install_bundle",
    "load_operator",
    "parse_bundle",
    "read_bundle",
    "resolve_operator_dir",
    "sign_credential",
    "verify_credential",
]
