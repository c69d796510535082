"""Fleet identity end to end: `fleet init`, enrolment tokens and credentials, trust store."""

from __future__ import annotations

import base64
import json
import stat
import time
from pathlib import Path

import pytest

from noderuntime.cli.main import main
from noderuntime.crdt.envelope import signing_input
from noderuntime.errors import CredentialError, EnrollmentError, FleetError, NotEnrolledError
from noderuntime.fleet import (
    FleetAuthority,
    FleetTrust,
    MemberRole,
    load_operator,
    parse_bundle,
    resolve_operator_dir,
    verify_credential,
)
from noderuntime.fleet.authority import write_bundle
from noderuntime.fleet.credential import (
    SIGNING_DOMAIN_V1,
    Credential,
    b64u,
    decode_credential,
    fleet_id_for,
    sign_credential,
    unb64u,
)
from noderuntime.identity import keys as identity
from noderuntime.sync.acl import parse_doc
from noderuntime.sync.protocol import WireUpdate
from noderuntime.sync.verify import Cause, check_signed, check_update


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def fleet(tmp_path: Path) -> FleetAuthority:
    return FleetAuthority.init(tmp_path / "fleet", "alice")


def run(*argv: str) -> int:
    return main(list(argv))


# --- fleet init -----------------------------------------------------------------------------


def test_fleet_init_creates_root_ca_and_operator(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = tmp_path / "f"
    assert run("fleet", "init", "--dir", str(d), "--operator", "alice") == 0
    assert mode(d / "root.key") == 0o600
    assert mode(d / "operator.key") == 0o600
    assert mode(d) == 0o700
    info = json.loads((d / "fleet.json").read_text())
    assert info["fleetId"] == fleet_id_for(unb64u(info["rootPublicKey"]))
    op, blob = load_operator(d)
    assert op.name == "operator:alice"
    cred = verify_credential(blob, unb64u(info["rootPublicKey"]))
    assert cred.role is MemberRole.OPERATOR and cred.public_key == op.public_bytes
    # refuses to overwrite the root
    root_before = (d / "root.key").read_bytes()
    assert run("fleet", "init", "--dir", str(d)) == 1
    assert "refusing to overwrite" in capsys.readouterr().err
    assert (d / "root.key").read_bytes() == root_before


def test_add_operator_profile_signs_with_as(fleet: FleetAuthority, tmp_path: Path) -> None:
    out = tmp_path / "bob"
    assert run("fleet", "add-operator", "bob", "--dir", str(fleet.dir), "-o", str(out)) == 0
    assert not (out / "root.key").exists()
    assert mode(out / "operator.key") == 0o600
    op, blob = load_operator(out)
    assert op.name == "operator:bob"
    assert verify_credential(blob, fleet.info.root_public_key).principal == "operator:bob"
    with pytest.raises(FleetError, match="operator directory"):
        FleetAuthority.open(out)  # an operator can't enrol nodes


def test_operator_dir_from_flag_or_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("NODERUNTIME_AS", raising=False)
    assert resolve_operator_dir(None) is None
    monkeypatch.setenv("NODERUNTIME_AS", str(tmp_path / "env"))
    assert resolve_operator_dir(None) == tmp_path / "env"
    assert resolve_operator_dir(str(tmp_path / "flag")) == tmp_path / "flag"


def test_tampered_operator_credential_is_refused(fleet: FleetAuthority) -> None:
    path = fleet.dir / "operator.cred"
    other = FleetAuthority.init(fleet.dir.parent / "other", "alice")
    path.write_bytes((other.dir / "operator.cred").read_bytes())
    with pytest.raises(CredentialError, match="not signed by this fleet"):
        load_operator(fleet.dir)


# --- offline enrolment with a token ---------------------------------------------------------


def test_token_round_trip(fleet: FleetAuthority, tmp_path: Path) -> None:
    token = tmp_path / "n1.token"
    assert (
        run(
            "fleet",
            "enroll",
            "n1",
            "--site",
            "s1",
            "--dir",
            str(fleet.dir),
            "-o",
            str(token),
            "--address",
            "10.0.0.5",
        )
        == 0
    )
    assert mode(token) == 0o600  # it holds a private key
    data_dir = tmp_path / "node"
    bundle = parse_bundle(token.read_bytes())
    assert (
        run(
            "--data-dir",
            str(data_dir),
            "init",
            "--node-id",
            "n1",
            "--site",
            "s1",
            "--enroll",
            str(token),
            "--leaf-port",
            "7422",
            "--peer",
            "nats-leaf://hub.example:7422",
        )
        == 0
    )
    assert not token.exists()  # single use: it held the node's private key
    node_key = identity.load_key(data_dir / "identity.key", "node:n1")
    assert node_key.public_bytes == bundle.credential.public_key
    assert mode(data_dir / "identity.key") == 0o600
    trust = FleetTrust.load(data_dir)
    assert trust.fleet_id == fleet.fleet_id
    assert trust.node.principal == "node:n1" and trust.node.site == "s1"
    assert trust.node.role == "node"  # MemberRole is a str enum
    # the token brought the operator's credential along
    alice = trust.member("operator:alice")
    assert alice is not None and alice.role is MemberRole.OPERATOR
    assert trust.cert_file.is_file() and trust.ca_file.is_file()
    cfg = (data_dir / "node.yaml").read_text()
    assert "leafPort: 7422" in cfg and "nats-leaf://hub.example:7422" in cfg


@pytest.mark.parametrize(
    ("node_id", "site", "role", "message"),
    [
        ("n2", "s1", "node", "enrols node:n1, not node:n2"),
        ("n1", "s9", "node", "at site s1, not s9"),
        ("n1", "s1", "hub", "not a hub"),
    ],
)
def test_token_for_another_node_is_refused(
    fleet: FleetAuthority,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    node_id: str,
    site: str,
    role: str,
    message: str,
) -> None:
    token = tmp_path / "t"
    write_bundle(token, fleet.enroll_node("n1", "s1"))
    data_dir = tmp_path / "node"
    argv = ["--data-dir", str(data_dir), "init", "--node-id", node_id, "--site", site]
    assert run(*argv, "--role", role, "--enroll", str(token)) == 1
    assert message in capsys.readouterr().err
    assert not data_dir.exists()  # checked before anything was written


def test_hub_token_needs_role_hub(fleet: FleetAuthority, tmp_path: Path) -> None:
    token = tmp_path / "t"
    write_bundle(token, fleet.enroll_node("hub1", "dc", role=MemberRole.HUB))
    argv = ["init", "--node-id", "hub1", "--site", "dc", "--enroll", str(token)]
    assert run("--data-dir", str(tmp_path / "a"), *argv) == 1
    assert run("--data-dir", str(tmp_path / "b"), *argv, "--role", "hub") == 0
    assert FleetTrust.load(tmp_path / "b").node.role is MemberRole.HUB


def _tamper(raw: bytes, edit: object) -> bytes:
    data = json.loads(raw)
    assert callable(edit)
    edit(data)
    return json.dumps(data).encode()


def _flip_char(text: str, index: int) -> str:
    c = text[index]
    return text[:index] + ("A" if c != "A" else "B") + text[index + 1 :]


def test_tampered_tokens_are_refused(fleet: FleetAuthority, tmp_path: Path) -> None:
    raw = fleet.enroll_node("n1", "s1").to_json()
    other = FleetAuthority.init(tmp_path / "other", "mallory")
    foreign = json.loads(other.enroll_node("n1", "s1").to_json())
    another_key = identity.generate("x")
    from noderuntime.fleet.bundle import private_pem

    def set_(key: str, value: object) -> object:
        return lambda d: d.__setitem__(key, value)

    cases = {
        "credential body": lambda d: d.__setitem__("credential", _flip_char(d["credential"], 20)),
        "credential sig": lambda d: d.__setitem__("credential", _flip_char(d["credential"], -5)),
        "node key": set_("nodeKey", private_pem(another_key).decode()),
        "foreign CA": set_("caCert", foreign["caCert"]),
        "foreign node cert": set_("nodeCert", foreign["nodeCert"]),
        "foreign root": set_("rootPublicKey", foreign["rootPublicKey"]),
        "foreign root and id": lambda d: d.update(
            rootPublicKey=foreign["rootPublicKey"], fleetId=foreign["fleetId"]
        ),
        "foreign credential": set_("credential", foreign["credential"]),
        "bad member": set_("members", [foreign["credential"]]),
        "version": set_("version", 2),
        "kind": set_("kind", "something"),
    }
    for name, edit in cases.items():
        with pytest.raises(EnrollmentError):
            parse_bundle(_tamper(raw, edit))
            pytest.fail(f"tampered token accepted: {name}")
    with pytest.raises(EnrollmentError, match="not JSON"):
        parse_bundle(raw[: len(raw) // 2])
    assert parse_bundle(raw).credential.principal == "node:n1"


# --- online enrolment with a credential file ------------------------------------------------


def test_online_enrolment(
    fleet: FleetAuthority, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = tmp_path / "node"
    assert run("--data-dir", str(data_dir), "init", "--node-id", "n2", "--site", "s1") == 0
    assert not FleetTrust.is_enrolled(data_dir)
    with pytest.raises(NotEnrolledError):
        FleetTrust.load(data_dir)
    capsys.readouterr()
    assert run("--data-dir", str(data_dir), "enroll", "--show-public-key") == 0
    key = capsys.readouterr().out.strip()
    cred_file = tmp_path / "n2.cred"
    d = str(fleet.dir)
    assert run("fleet", "enroll", "n2", "--site", "s1", "--dir", d, "--public-key", key,
               "-o", str(cred_file)) == 0  # fmt: skip
    assert mode(cred_file) == 0o644  # no secret in it
    assert "nodeKey" not in json.loads(cred_file.read_text())
    # a credential for another key is refused
    wrong = tmp_path / "wrong.cred"
    other_key = b64u(identity.generate("x").public_bytes)
    assert run("fleet", "enroll", "n2", "--site", "s1", "--dir", d, "--public-key", other_key,
               "-o", str(wrong)) == 0  # fmt: skip
    assert run("--data-dir", str(data_dir), "enroll", "--credential", str(wrong)) == 1
    assert "not for this node's key" in capsys.readouterr().err
    assert not FleetTrust.is_enrolled(data_dir)
    assert run("--data-dir", str(data_dir), "enroll", "--credential", str(cred_file)) == 0
    trust = FleetTrust.load(data_dir)
    assert trust.node.public_key == identity.load_key(data_dir / "identity.key", "n").public_bytes


def test_token_cannot_be_installed_on_existing_node(fleet: FleetAuthority, tmp_path: Path) -> None:
    data_dir = tmp_path / "node"
    assert run("--data-dir", str(data_dir), "init", "--node-id", "n1", "--site", "s1") == 0
    token = tmp_path / "t"
    write_bundle(token, fleet.enroll_node("n1", "s1"))
    assert run("--data-dir", str(data_dir), "enroll", "--credential", str(token)) == 1


# --- credentials ----------------------------------------------------------------------------


def test_credential_tampering_is_detected(fleet: FleetAuthority) -> None:
    root = fleet.info.root_public_key
    blob = fleet.issue("node:n1", MemberRole.NODE, identity.generate("n").public_bytes, site="s1")
    verify_credential(blob, root)
    text = blob.decode()
    for i in range(len("nrc1."), len(text)):
        if text[i] == ".":
            continue
        with pytest.raises(CredentialError):
            verify_credential(_flip_char(text, i), root)
    cred, body, sig = decode_credential(blob)
    # widen the claims and keep the signature: refused
    forged = json.loads(body)
    forged["role"] = "hub"
    forged_body = json.dumps(forged, sort_keys=True, separators=(",", ":")).encode()
    with pytest.raises(CredentialError, match="not signed"):
        verify_credential(f"nrc1.{b64u(forged_body)}.{b64u(sig)}", root)
    # same claims, non-canonical encoding (a malleability vector): refused
    loose = json.dumps(json.loads(body), sort_keys=True).encode()
    with pytest.raises(CredentialError, match="canonical"):
        verify_credential(f"nrc1.{b64u(loose)}.{b64u(sig)}", root)
    # padded base64: refused
    padded = base64.urlsafe_b64encode(body).decode()
    if padded.endswith("="):
        with pytest.raises(CredentialError):
            verify_credential(f"nrc1.{padded}.{b64u(sig)}", root)
    # another fleet's root
    other = identity.generate("root2")
    with pytest.raises(CredentialError):
        verify_credential(blob, other.public_bytes)
    # a credential signed by another root for *this* fleet id
    fake = sign_credential(
        other, Credential(**{**cred.__dict__, "fleet_id": fleet_id_for(other.public_bytes)})
    )
    with pytest.raises(CredentialError):
        verify_credential(fake, root)
    # the signature covers the domain-separated body
    assert identity.verify(root, sig, SIGNING_DOMAIN_V1 + body)
    assert not identity.verify(root, sig, body)


def test_credential_expiry(fleet: FleetAuthority) -> None:
    blob = fleet.issue("node:n1", MemberRole.NODE, identity.generate("n").public_bytes, site="s1",
                       valid_days=1)  # fmt: skip
    root = fleet.info.root_public_key
    verify_credential(blob, root)
    with pytest.raises(CredentialError, match="expired"):
        verify_credential(blob, root, now=time.time() + 2 * 86400)
    assert verify_credential(blob, root, now=time.time() + 2 * 86400, check_expiry=False)


# --- the node's trust store -----------------------------------------------------------------


def _enrolled_node(fleet: FleetAuthority, tmp_path: Path, node_id: str = "n1") -> FleetTrust:
    token = tmp_path / f"{node_id}.token"
    write_bundle(token, fleet.enroll_node(node_id, "s1"))
    data_dir = tmp_path / node_id
    argv = ["init", "--node-id", node_id, "--site", "s1", "--enroll", str(token)]
    assert run("--data-dir", str(data_dir), *argv) == 0
    return FleetTrust.load(data_dir)


def test_fleet_trust_registry(fleet: FleetAuthority, tmp_path: Path) -> None:
    trust = _enrolled_node(fleet, tmp_path)
    n2_key = identity.generate("n2")
    blob = fleet.issue("node:n2", MemberRole.NODE, n2_key.public_bytes, site="s2")
    assert trust.member("node:n2") is None
    m = trust.add(blob)
    assert (m.principal, m.role, m.site, m.public_key) == (
        "node:n2",
        "node",
        "s2",
        n2_key.public_bytes,
    )
    assert m.key_id == n2_key.key_id and m.name == "n2" and m.is_node
    assert trust.member("node:n2") == m
    assert trust.member_by_key(n2_key.key_id) == m
    assert trust.add(blob) == m  # idempotent
    # a re-enrolment with a new key: the newest is the principal's, the old key still known
    new_key = identity.generate("n2b")
    m2 = trust.add(fleet.issue("node:n2", MemberRole.NODE, new_key.public_bytes, site="s2"))
    assert trust.member("node:n2") == m2
    assert trust.member_by_key(n2_key.key_id) == m
    # persisted
    again = FleetTrust.load(trust.data_dir)
    assert again.member("node:n2") == m2 and again.member_by_key(m.key_id) == m
    # members of another fleet are refused and not stored
    other = FleetAuthority.init(tmp_path / "other", "mallory")
    foreign = other.issue(
        "node:n3", MemberRole.NODE, identity.generate("n3").public_bytes, site="s1"
    )
    with pytest.raises(CredentialError):
        trust.add(foreign)
    assert trust.member("node:n3") is None
    with pytest.raises(CredentialError):
        trust.verify_credential(b"garbage")
    with pytest.raises(CredentialError):
        trust.verify_credential(b"x" * 5000)


def test_rekeyed_author_history_still_verifies(fleet: FleetAuthority, tmp_path: Path) -> None:
    trust = _enrolled_node(fleet, tmp_path)
    old_key, new_key = identity.generate("node:n2"), identity.generate("node:n2")
    trust.add(fleet.issue("node:n2", MemberRole.NODE, old_key.public_bytes, site="s1"))
    trust.add(fleet.issue("node:n2", MemberRole.NODE, new_key.public_bytes, site="s1"))
    doc = parse_doc("site/s1")
    assert doc is not None

    def signed_by(key: identity.Identity) -> WireUpdate:
        return WireUpdate("node:n2", key.sign(signing_input(doc.name, b"x", "{}")), 0.0, "{}", b"x")

    assert trust.member("node:n2") is not None
    assert trust.member("node:n2").public_key == new_key.public_bytes  # type: ignore[union-attr]
    for key in (old_key, new_key):
        member, cause = check_update(doc, signed_by(key), trust)
        assert cause is None and member is not None and member.public_key == key.public_bytes
    _, cause = check_update(doc, signed_by(identity.generate("node:n2")), trust)
    assert cause is Cause.BAD_SIGNATURE


def test_expired_members_verify_history_but_cannot_act_now(
    fleet: FleetAuthority, tmp_path: Path
) -> None:
    trust = _enrolled_node(fleet, tmp_path)
    key = identity.generate("node:n2")
    past = FleetAuthority.open(fleet.dir, clock=lambda: time.time() - 10 * 86400)
    blob = past.issue("node:n2", MemberRole.NODE, key.public_bytes, site="s1", valid_days=1)
    member = trust.add(blob)
    assert trust.expired(member)
    assert FleetTrust.load(trust.data_dir).member("node:n2") == member  # not dropped at load
    doc = parse_doc("site/s1")
    assert doc is not None
    sig = key.sign(signing_input(doc.name, b"x", "{}"))
    assert check_update(doc, WireUpdate("node:n2", sig, 0.0, "{}", b"x"), trust)[1] is None
    signed = b"heartbeat"
    assert check_signed("node:n2", key.sign(signed), signed, trust)[1] is Cause.EXPIRED
