"""Revocation (issue 13 §2): the cut-off rule, the trust store's memory of it, what sync
refuses, the pinned certificates, and how status and doctor say a node is revoked."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from noderuntime.api.routes.revoke import add_member, resolve_member
from noderuntime.audit.chain import AuditKind
from noderuntime.audit.log import MemoryAudit
from noderuntime.cli.main import render_sync_alerts
from noderuntime.crdt import schema
from noderuntime.crdt.envelope import signing_input
from noderuntime.crdt.schema import REVOCATIONS, relay_problem
from noderuntime.crdt.state import StateStore
from noderuntime.crdt.store import MemoryStore
from noderuntime.errors import ApiError, CredentialError, NotFoundError
from noderuntime.fleet import FleetAuthority, FleetTrust
from noderuntime.fleet.credential import MemberRole
from noderuntime.fleet.rekey import (
    parse_request,
    pending_key_path,
    request_record,
    retirement_record,
)
from noderuntime.fleet.revocation import (
    Revocation,
    merge,
    parse_revocations,
    revocation_entry,
    spki_pin,
)
from noderuntime.fleet.trust import install_bundle
from noderuntime.host.doctor import check_fleet_credential, running_node_problems
from noderuntime.identity import keys as identity
from noderuntime.identity.principals import node_principal
from noderuntime.node.rekey import install
from noderuntime.node.revocations import RevocationWatch, narrows
from noderuntime.sync.acl import parse_doc
from noderuntime.sync.natsconfig import LeafTLS, NatsServerSettings, render_config
from noderuntime.sync.protocol import WireUpdate
from noderuntime.sync.verify import Cause, check_signed, check_update

T0 = 1_764_000_000


def test_a_revocation_covers_the_keys_it_names_and_every_credential_issued_before_it() -> None:
    rev = revocation_entry("node:n3", keys=["k1"], by="operator:alice", at=T0)
    assert rev.covers("node:n3", "k1", T0 + 999)  # a key it names, whenever issued
    assert rev.covers("node:n3", "k2", T0)  # issued before (or at) the cut-off
    assert not rev.covers("node:n3", "k2", T0 + 1)  # re-enrolled afterwards: re-admitted
    assert not rev.covers("node:n4", "k1", 0)  # another principal


def test_records_are_parsed_strictly_and_only_ever_widen() -> None:
    good = revocation_entry("node:n3", keys=["k1"], by="operator:a", at=T0).to_dict()
    parsed = parse_revocations(
        {
            "node:n3": good,
            "node:n4": {**good, "principal": "node:n3"},  # key and principal disagree
            "node:n5": {"principal": "node:n5", "at": "soon"},
            "n6": {"principal": "n6", "at": 1},  # not a principal
        }
    )
    assert list(parsed) == ["node:n3"]
    wider = Revocation("node:n3", T0 + 10, frozenset({"k2"}), "operator:b")
    known, changed = merge(parsed, [wider])
    assert changed == ["node:n3"]
    assert known["node:n3"].keys == {"k1", "k2"} and known["node:n3"].at == T0 + 10
    # An older, narrower record (a stolen operator key "lifting" it) changes nothing.
    again, changed = merge(known, [Revocation("node:n3", 0, frozenset())])
    assert changed == [] and again == known


@pytest.fixture
def fleet(tmp_path: Path) -> FleetAuthority:
    return FleetAuthority.init(tmp_path / "fleet", "alice")


def enrolled(fleet: FleetAuthority, tmp: Path, node_id: str) -> FleetTrust:
    key = identity.generate(node_principal(node_id))
    data_dir = tmp / node_id
    data_dir.mkdir()
    identity.save_key(data_dir / "identity.key", key)
    bundle = fleet.enroll_node(node_id, "s1", public_key=key.public_bytes)
    return install_bundle(
        data_dir, bundle, node_id=node_id, site="s1", node_public_key=key.public_bytes
    )


def test_the_trust_store_remembers_revocations_across_restarts(
    fleet: FleetAuthority, tmp_path: Path
) -> None:
    trust = enrolled(fleet, tmp_path, "n1")
    other = trust.add(fleet.issue("node:n2", MemberRole.NODE, b"\x01" * 32, site="s1"))
    assert trust.tls_pins() == ()  # nothing revoked: any certificate the fleet CA signed
    rev = revocation_entry("node:n2", keys=[other.key_id], by="operator:alice", at=T0 + 10**9)
    assert trust.revoke({"node:n2": rev.to_dict()}) == ["node:n2"]
    assert trust.revoke({"node:n2": rev.to_dict()}) == []
    assert trust.revoked(other) and not trust.revoked(trust.node)
    assert spki_pin(other.public_key) not in trust.tls_pins()
    assert spki_pin(trust.node.public_key) in trust.tls_pins()
    # The document losing the record (an operator's key deleting it) lifts nothing.
    reloaded = FleetTrust.load(trust.data_dir)
    assert reloaded.revoke({}) == [] and reloaded.revoked(other)
    assert reloaded.own_revocation is None


def test_a_revoked_node_says_so_in_doctor(fleet: FleetAuthority, tmp_path: Path) -> None:
    trust = enrolled(fleet, tmp_path, "n1")
    rev = revocation_entry("node:n1", keys=[], by="operator:alice", at=T0 + 10**9, reason="lost")
    trust.revoke({"node:n1": rev.to_dict()})
    check = check_fleet_credential(trust.data_dir)
    assert check is not None and check.status.value == "fail" and "revoked" in check.detail
    assert FleetTrust.load(trust.data_dir).own_revocation == rev
    problems = running_node_problems({"sync": {"revoked": rev.to_dict()}})
    assert problems and "revoked by operator:alice" in problems[0]


def test_the_pin_is_the_certificate_public_key_hash_nats_server_compares(
    fleet: FleetAuthority, tmp_path: Path
) -> None:
    trust = enrolled(fleet, tmp_path, "n1")
    cert = x509.load_pem_x509_certificate(trust.cert_file.read_bytes())
    spki = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    assert spki_pin(trust.node.public_key) == hashlib.sha256(spki).hexdigest()


def test_pinned_certificates_go_on_the_leaf_and_route_listeners() -> None:
    tls = LeafTLS(Path("/d/c"), Path("/d/k"), Path("/d/ca"), "member.f.invalid")
    s = NatsServerSettings(
        "n", leaf_port=7422, tls=tls, cluster_name="s1", cluster_port=6222, pinned=("ab", "cd")
    )
    text = render_config(s, token="t", client_port=1, monitor_port=2, leaf_port=7422)
    assert text.count('pinned_certs: ["ab", "cd"]') == 2
    unpinned = render_config(
        NatsServerSettings("n", leaf_port=7422, tls=tls),
        token="t",
        client_port=1,
        monitor_port=2,
        leaf_port=7422,
    )
    assert "pinned_certs" not in unpinned


def test_sync_refuses_whatever_a_revoked_key_signs_whatever_time_it_claims(
    fleet: FleetAuthority, tmp_path: Path
) -> None:
    trust = enrolled(fleet, tmp_path, "n1")
    key = identity.generate("node:n2")
    trust.add(fleet.issue("node:n2", MemberRole.NODE, key.public_bytes, site="s1"))
    doc = parse_doc("node/n2")
    assert doc is not None
    data = b"\x00\x00"
    update = WireUpdate("node:n2", key.sign(signing_input(doc.name, data)), 1.0, "{}", data)
    assert check_update(doc, update, trust)[1] is None
    trust.revoke({"node:n2": revocation_entry("node:n2", keys=[], by="", at=T0 * 2).to_dict()})
    member, cause = check_update(doc, update, trust)  # claims to be from 1970: no matter
    assert cause is Cause.REVOKED and member is not None and member.principal == "node:n2"
    assert check_signed("node:n2", key.sign(b"hb"), b"hb", trust)[1] is Cause.REVOKED


def test_revoke_names_a_member_as_node_or_operator() -> None:
    known = {"node:n1", "operator:alice", "node:both", "operator:both"}
    assert resolve_member("n1", known) == "node:n1"
    assert resolve_member("alice", known) == "operator:alice"
    assert resolve_member("node:gone", known) == "node:gone"  # unknown here, named fully
    with pytest.raises(ApiError, match="both"):
        resolve_member("both", known)
    with pytest.raises(NotFoundError):
        resolve_member("gone", known)
    with pytest.raises(ApiError, match="node:ID"):
        resolve_member("hub:x", known)


def test_a_hubs_own_key_can_neither_revoke_nor_lift_a_revocation() -> None:
    rec = revocation_entry("node:n3", keys=[], by="node:hub", at=T0).to_dict()
    text = json.dumps(rec)
    assert relay_problem({}, {REVOCATIONS: {"node:n3": text}}) is not None
    assert relay_problem({REVOCATIONS: {"node:n3": text}}, {}) is not None


def test_a_rekey_request_is_proven_by_the_new_key() -> None:
    new = identity.generate("node:n1")
    record = request_record("node:n1", new, ("127.0.0.1",), T0)
    req = parse_request(record, "node:n1")
    assert (
        req is not None and req.public_key == new.public_bytes and req.addresses == ("127.0.0.1",)
    )
    assert parse_request(record, "node:n2") is None  # another node's request
    other = identity.generate("node:n1")
    forged = {**record, "key": request_record("node:n1", other, (), T0)["key"]}
    assert parse_request(forged, "node:n1") is None  # the proof is not by that key


def test_a_retired_key_is_refused_after_its_grace_period(
    fleet: FleetAuthority, tmp_path: Path
) -> None:
    trust = enrolled(fleet, tmp_path, "n1")
    old = trust.add(fleet.issue("node:n2", MemberRole.NODE, b"\x02" * 32, site="s1"))
    now = [T0 * 2.0]
    trust.clock = lambda: now[0]
    assert trust.retire({old.key_id: retirement_record("node:n2", now[0] + 60)}) == [old.key_id]
    assert not trust.revoked(old)
    now[0] += 61
    assert trust.revoked(old)
    assert trust.tls_pins() == ()  # a retirement pins nothing (the key was not stolen)
    # A retirement naming another principal's key is ignored.
    mine = trust.node
    trust.retire({mine.key_id: retirement_record("node:n2", 0)})
    assert not trust.revoked(mine)


def test_a_node_installs_only_a_credential_issued_for_its_pending_key(
    fleet: FleetAuthority, tmp_path: Path
) -> None:
    trust = enrolled(fleet, tmp_path, "n1")
    pending = identity.generate("node:n1")
    identity.save_key(pending_key_path(trust.dir), pending)
    stranger = fleet.enroll_node("n1", "s1", public_key=identity.generate("x").public_bytes)
    assert not install(trust, stranger.credential_blob, stranger.node_cert_pem)
    moved = fleet.enroll_node("n1", "s2", public_key=pending.public_bytes)
    with pytest.raises(CredentialError, match="site"):
        install(trust, moved.credential_blob, moved.node_cert_pem)
    good = fleet.enroll_node("n1", "s1", public_key=pending.public_bytes)
    assert install(trust, good.credential_blob, good.node_cert_pem)
    reloaded = FleetTrust.load(trust.data_dir)
    assert reloaded.node.public_key == pending.public_bytes
    assert identity.load_key(trust.key_file, "node:n1").public_bytes == pending.public_bytes
    assert len(reloaded.members_of("node:n1")) == 2  # the old key still verifies history


async def test_the_node_takes_revocations_from_its_fleet_document_and_audits_them(
    fleet: FleetAuthority, tmp_path: Path
) -> None:
    trust = enrolled(fleet, tmp_path, "n1")
    audit = MemoryAudit()
    rev = revocation_entry("node:n9", keys=[], by="operator:alice", at=T0, reason="stolen")
    ident = identity.generate("node:n1")
    async with StateStore(MemoryStore(), ident, node_id="n1", site="s1") as state:
        await state.write(
            state.fleet_doc,
            lambda doc: schema.put_entry(doc, schema.REVOCATIONS, "node:n9", rev.to_dict()),
        )
        watch = RevocationWatch(state, trust, None, log=logging.getLogger("t"), audit=audit)
        assert watch.apply() == ["node:n9"]
        assert watch.apply() == []
    assert trust.revocation("node:n9") == rev
    (entry,) = audit.of(AuditKind.REVOKED)
    assert entry["actor"] == "operator:alice" and entry["principal"] == "node:n9"


def test_status_names_a_revoked_node() -> None:
    rev = revocation_entry("node:n1", keys=[], by="operator:alice", at=T0, reason="stolen")
    lines = render_sync_alerts({"revoked": rev.to_dict()})
    assert len(lines) == 1 and lines[0].startswith("REVOKED:")
    assert "operator:alice" in lines[0] and "(stolen)" in lines[0]
    assert render_sync_alerts({}) == []


async def test_a_node_learns_a_member_enrolled_after_a_revocation(
    fleet: FleetAuthority, tmp_path: Path
) -> None:
    trust = enrolled(fleet, tmp_path, "n1")
    trust.revoke({"node:n9": revocation_entry("node:n9", keys=[], by="", at=T0).to_dict()})
    late = fleet.enroll_node("n5", "s1", public_key=identity.generate("x").public_bytes)
    assert spki_pin(late.credential.public_key) not in trust.tls_pins()

    class Svc:
        def fleet_trust(self) -> FleetTrust:
            return trust

    r = await add_member(Svc(), {"credential": late.credential_blob.decode()})  # type: ignore[arg-type]
    assert r["principal"] == "node:n5"
    assert spki_pin(late.credential.public_key) in trust.tls_pins()
    with pytest.raises(CredentialError):
        await add_member(Svc(), {"credential": "nrc1.garbage.x"})  # type: ignore[arg-type]


def test_pins_narrow_when_they_refuse_a_certificate_the_server_accepts() -> None:
    assert narrows((), ("a", "b"))  # any CA-signed certificate -> an allow-list
    assert narrows(("a", "b"), ("a",))
    assert not narrows(("a",), ("a", "b"))  # admitting someone
    assert not narrows(("a", "b"), ())  # nothing pinned admits everyone


class PinnedServer:
    """What RevocationWatch uses of a NatsServer: its settings, and restarts with new ones."""

    def __init__(self, pinned: tuple[str, ...]) -> None:
        self.settings = NatsServerSettings(server_name="n1", pinned=pinned)
        self.restarts: list[tuple[float, tuple[str, ...]]] = []

    async def reconfigure(self, settings: NatsServerSettings) -> None:
        self.restarts.append((asyncio.get_running_loop().time(), settings.pinned))
        self.settings = settings


async def test_a_revocation_closes_links_after_a_grace_and_admitting_someone_at_once(
    fleet: FleetAuthority, tmp_path: Path
) -> None:
    """The revocation travels through the links a new pin list would close (to the revoked node
    too): they close LINK_CLOSE_GRACE_S later, not as it arrives."""
    trust = enrolled(fleet, tmp_path, "n1")
    n9 = fleet.enroll_node("n9", "s1", public_key=identity.generate("node:n9").public_bytes)
    trust.add(n9.credential_blob)
    server = PinnedServer(())
    rev = revocation_entry("node:n9", keys=[], by="operator:alice", at=int(time.time()) + 1)
    ident = identity.generate("node:n1")
    async with StateStore(MemoryStore(), ident, node_id="n1", site="s1") as state:
        watch = RevocationWatch(
            state,
            trust,
            server,
            log=logging.getLogger("t"),
            link_close_grace_s=0.3,  # type: ignore[arg-type]
        )
        async with watch:
            start = asyncio.get_running_loop().time()
            await state.write(
                state.fleet_doc,
                lambda doc: schema.put_entry(doc, schema.REVOCATIONS, "node:n9", rev.to_dict()),
            )
            for _ in range(100):
                if server.restarts:
                    break
                await asyncio.sleep(0.02)
            assert trust.revocation("node:n9") == rev  # refused at once by the engine
            ((at, pins),) = server.restarts
            assert at - start >= 0.3
            assert spki_pin(n9.credential.public_key) not in pins and pins
            # A member learnt later only widens the list: the restart is immediate.
            late = fleet.enroll_node("n5", "s1", public_key=identity.generate("x").public_bytes)
            trust.add(late.credential_blob)
            watch.wake_after(0)  # what the PIN_CHECK_S tick does
            for _ in range(20):
                if len(server.restarts) == 2:
                    break
                await asyncio.sleep(0.01)
            assert len(server.restarts) == 2
            assert spki_pin(late.credential.public_key) in server.restarts[1][1]
    # At start, pins apply at once (the node was told before it stopped).
    fresh = PinnedServer(())
    again = RevocationWatch(state, trust, fresh, log=logging.getLogger("t"))  # type: ignore[arg-type]
    await again.starting()
    assert fresh.restarts and fresh.restarts[0][1] == server.restarts[1][1]
