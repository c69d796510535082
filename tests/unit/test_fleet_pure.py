"""Pure parts of fleet identity and the nats-server config: no processes, no files."""

from __future__ import annotations

from pathlib import Path

import pytest

from noderuntime.config.model import NodeConfig
from noderuntime.config.peers import parse_peer_url
from noderuntime.errors import ConfigError, CredentialError, NatsServerError
from noderuntime.fleet.credential import (
    Credential,
    MemberRole,
    check_claims,
    decode_credential,
    fleet_id_for,
    sign_credential,
    verify_credential,
)
from noderuntime.identity import keys as identity
from noderuntime.sync.natsconfig import LeafTLS, NatsServerSettings, render_config

TLS = LeafTLS(Path("/d/node.crt"), Path("/d/identity.key"), Path("/d/ca.crt"), "member.f.invalid")


def cred(**over: object) -> Credential:
    root = identity.generate("root")
    base: dict[str, object] = {
        "fleet_id": fleet_id_for(root.public_bytes),
        "principal": "node:n1",
        "role": MemberRole.NODE,
        "public_key": identity.generate("n").public_bytes,
        "issued_at": 1_700_000_000,
        "serial": 7,
        "site": "s1",
    }
    base.update(over)
    return Credential(**base)  # type: ignore[arg-type]


def test_credential_encoding_is_canonical_and_small() -> None:
    root = identity.generate("root")
    c = cred(fleet_id=fleet_id_for(root.public_bytes))
    blob = sign_credential(root, c)
    assert blob.startswith(b"nrc1.") and len(blob) < 400
    assert blob == sign_credential(root, c)  # deterministic (Ed25519 and sorted keys)
    decoded, body, _ = decode_credential(blob)
    assert decoded == c
    assert body == c.body_bytes() and b" " not in body
    assert verify_credential(blob, root.public_bytes, now=1_700_000_000) == c


def test_fleet_id_is_bound_to_the_root_key() -> None:
    a, b = identity.generate("a").public_bytes, identity.generate("b").public_bytes
    assert fleet_id_for(a) == fleet_id_for(a) != fleet_id_for(b)
    assert fleet_id_for(a).startswith("fleet-")
    root = identity.generate("root")
    with pytest.raises(CredentialError, match="does not belong"):
        sign_credential(root, cred(fleet_id=fleet_id_for(a)))


@pytest.mark.parametrize(
    "over",
    [
        {"principal": "n1"},
        {"principal": "node:N1"},
        {"principal": "operator:alice"},  # role node with an operator principal
        {"site": None},
        {"role": MemberRole.OPERATOR},  # operator with a site
        {"public_key": b"short"},
        {"not_after": 1_600_000_000},
        {"serial": -1},
    ],
)
def test_inconsistent_claims_are_refused(over: dict[str, object]) -> None:
    with pytest.raises(CredentialError):
        check_claims(cred(**over))


def test_operator_and_hub_claims() -> None:
    check_claims(cred(principal="operator:alice", role=MemberRole.OPERATOR, site=None))
    check_claims(cred(role=MemberRole.HUB))
    assert MemberRole.HUB == "hub"


@pytest.mark.parametrize(
    "blob",
    [
        b"",
        b"nrc2.a.b",
        b"nrc1.abc",
        b"nrc1.!!.??",
        b"nrc1.e30.AA",
        "nrc1.\u00e9.x".encode(),
        b"x" * 4096,
    ],
)
def test_garbage_credentials_raise_credential_error(blob: bytes) -> None:
    with pytest.raises(CredentialError):
        decode_credential(blob)


def test_peer_urls() -> None:
    assert parse_peer_url("nats-leaf://hub.example:7422") == ("hub.example", 7422)
    assert parse_peer_url("nats-leaf://[::1]:7422") == ("::1", 7422)
    for bad in (
        "http://h:1",
        "nats-leaf://h",
        "nats-leaf://user:pw@h:1",
        "nats-leaf://h:1/path",
        "nats-leaf://h:99999",
    ):
        with pytest.raises(ValueError):
            parse_peer_url(bad)
    with pytest.raises(ConfigError):
        NodeConfig(node_id="n1", site="s1", peers=["http://x:1"])
    cfg = NodeConfig.model_validate(
        {"nodeId": "n1", "site": "s1", "peers": ["nats-leaf://h:7422"], "leafPort": 7422}
    )
    assert cfg.peers == ["nats-leaf://h:7422"] and cfg.nats_port == 4222 and not cfg.sovereign


def test_config_client_on_loopback_with_token_and_no_leafs_by_default() -> None:
    text = render_config(
        NatsServerSettings("n1", tls=TLS), token="tok", client_port=4222, monitor_port=-1,
        leaf_port=None,
    )  # fmt: skip
    assert 'listen: "127.0.0.1:4222"' in text
    assert 'http: "127.0.0.1:-1"' in text
    assert 'authorization { token: "tok" }' in text
    assert "leafnodes" not in text and "jetstream" not in text
    # A silent dead link is dropped in ~3 s, not left on TCP's retransmit back-off (issue 9).
    assert 'ping_interval: "1000ms"' in text and "ping_max: 2" in text


def test_config_leaf_listener_requires_fleet_certificates() -> None:
    s = NatsServerSettings("hub", leaf_port=7422, remotes=("nats-leaf://up.example:7422",), tls=TLS)
    text = render_config(s, token="t", client_port=1, monitor_port=2, leaf_port=7422)
    assert 'listen: "0.0.0.0:7422"' in text
    assert "verify_and_map: true" in text
    assert '{ user: "member.f.invalid" }' in text
    assert text.count('ca_file: "/d/ca.crt"') == 2  # listener and remote
    assert 'url: "nats-leaf://up.example:7422"' in text
    assert 'reconnect: "250ms"' in text
    for settings in (
        NatsServerSettings("n", leaf_port=7422),
        NatsServerSettings("n", remotes=("nats-leaf://h:1",)),
    ):
        with pytest.raises(NatsServerError, match="enrol"):
            render_config(settings, token="t", client_port=1, monitor_port=2, leaf_port=7422)


def test_config_quotes_strings() -> None:
    text = render_config(
        NatsServerSettings('we"ird', tls=TLS), token='a"b', client_port=1, monitor_port=2,
        leaf_port=None,
    )  # fmt: skip
    assert 'server_name: "we\\"ird"' in text and 'token: "a\\"b"' in text


def test_daemon_finds_enrolment_without_importing_the_fleet_package() -> None:
    from noderuntime.fleet.trust import FLEET_SUBDIR, TRUST_FILE
    from noderuntime.node.daemon import FLEET_TRUST_FILE

    assert str(FLEET_TRUST_FILE) == f"{FLEET_SUBDIR}/{TRUST_FILE}"
