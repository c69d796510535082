"""X.509 material for mutual TLS on leaf-node links, derived from the fleet root.

The fleet CA is a self-signed Ed25519 certificate *for the root key itself*: no second secret to
keep, and a node can check that the CA in its token belongs to the root it trusts. Each enrolled
node (or hub) gets a certificate for its own identity key, so nats-server uses the node's
``identity.key`` as its TLS key.

Subject alternative names of a member certificate:

* ``DNS:member.<fleet-id>.noderuntime.invalid`` - every member has it; nats-server maps it to
  the leaf-node user (``verify_and_map``) so a certificate from this CA is the only credential;
* ``URI:noderuntime://<fleet-id>/node/<node-id>`` - who it is;
* ``DNS:localhost``, ``IP:127.0.0.1``, ``IP:::1`` and every ``--address`` given at enrolment -
  the names peers may dial: nats-server checks the listener's certificate against the host
  in the peer URL, so a node that others link to needs its address (IP or DNS name) here.
"""

from __future__ import annotations

import datetime
import ipaddress

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from noderuntime.errors import EnrollmentError
from noderuntime.fleet.credential import Credential
from noderuntime.identity.keys import Identity

CA_VALIDITY_DAYS = 20 * 365
MEMBER_CERT_VALIDITY_DAYS = 10 * 365
# Appliance clocks are often behind at first boot: backdate not-before by a day.
BACKDATE = datetime.timedelta(days=1)
DEFAULT_ADDRESSES = ("localhost", "127.0.0.1", "::1")


def member_san(fleet_id: str) -> str:
    """The DNS name every member certificate carries; nats-server maps it to the leaf user."""
    return f"member.{fleet_id}.noderuntime.invalid"


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _name_for(address: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(address))
    except ValueError:
        pass
    if not address or len(address) > 253 or any(c in address for c in " /:@"):
        raise EnrollmentError(f"address {address!r} is neither an IP address nor a DNS name")
    return x509.DNSName(address)


def make_ca(root: Identity, fleet_id: str, *, now: datetime.datetime | None = None) -> bytes:
    """A self-signed CA certificate (PEM) for the fleet root key."""
    t = now or datetime.datetime.now(datetime.UTC)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "noderuntime"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"noderuntime fleet {fleet_id}"),
        ]
    )
    pub = root.private_key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(pub)
        .serial_number(x509.random_serial_number())
        .not_valid_before(t - BACKDATE)
        .not_valid_after(t + datetime.timedelta(days=CA_VALIDITY_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(pub), critical=False)
        .sign(root.private_key, None)
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def issue_member_cert(
    root: Identity,
    ca_pem: bytes,
    cred: Credential,
    addresses: tuple[str, ...] = (),
    *,
    now: datetime.datetime | None = None,
) -> bytes:
    """A TLS client+server certificate (PEM) for the credential's key, signed by the fleet CA."""
    ca = load_cert(ca_pem, "fleet CA")
    t = now or datetime.datetime.now(datetime.UTC)
    not_after = t + datetime.timedelta(days=MEMBER_CERT_VALIDITY_DAYS)
    if cred.not_after is not None:
        not_after = min(not_after, datetime.datetime.fromtimestamp(cred.not_after, datetime.UTC))
    names: list[x509.GeneralName] = [
        x509.DNSName(member_san(cred.fleet_id)),
        x509.UniformResourceIdentifier(f"noderuntime://{cred.fleet_id}/node/{cred.name}"),
    ]
    for address in (*DEFAULT_ADDRESSES, *addresses):
        gn = _name_for(address)
        if gn not in names:
            names.append(gn)
    pub = Ed25519PublicKey.from_public_bytes(cred.public_key)
    cert = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, cred.fleet_id),
                    x509.NameAttribute(NameOID.COMMON_NAME, cred.principal),
                ]
            )
        )
        .issuer_name(ca.subject)
        .public_key(pub)
        .serial_number(x509.random_serial_number())
        .not_valid_before(t - BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(root.private_key, None)
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def load_cert(pem: bytes, what: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError as exc:
        raise EnrollmentError(f"{what} is not a PEM X.509 certificate: {exc}") from None


def check_ca(ca_pem: bytes, root_public_key: bytes) -> x509.Certificate:
    """The CA must be self-signed by, and for, the fleet root key."""
    ca = load_cert(ca_pem, "fleet CA certificate")
    pub = ca.public_key()
    if not isinstance(pub, Ed25519PublicKey) or _raw_public(pub) != root_public_key:
        raise EnrollmentError("the fleet CA certificate is not for this fleet's root key")
    try:
        pub.verify(ca.signature, ca.tbs_certificate_bytes)
    except InvalidSignature:
        raise EnrollmentError("the fleet CA certificate's self-signature is invalid") from None
    return ca


def check_member_cert(cert_pem: bytes, ca_pem: bytes, root_public_key: bytes, key: bytes) -> None:
    """The member certificate must be signed by the fleet CA and be for ``key``."""
    ca = check_ca(ca_pem, root_public_key)
    cert = load_cert(cert_pem, "node certificate")
    pub = cert.public_key()
    if not isinstance(pub, Ed25519PublicKey) or _raw_public(pub) != key:
        raise EnrollmentError("the node certificate is not for the enrolled node key")
    if cert.issuer != ca.subject:
        raise EnrollmentError("the node certificate was not issued by this fleet's CA")
    try:
        Ed25519PublicKey.from_public_bytes(root_public_key).verify(
            cert.signature, cert.tbs_certificate_bytes
        )
    except InvalidSignature:
        raise EnrollmentError("the node certificate is not signed by this fleet's CA") from None
