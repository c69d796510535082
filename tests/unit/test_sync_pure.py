"""Pure sync logic: update clock parsing, state vectors and gaps, wire format, ACLs."""

from __future__ import annotations

import contextlib
import random
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycrdt import Array, Doc, Map, Text

from noderuntime.crdt.clocks import (
    UpdateFormatError,
    decode_state_vector,
    encode_state_vector,
    gap,
    parse_update,
    units_behind,
)
from noderuntime.sync import protocol
from noderuntime.sync.acl import DocKind, DocRef, holds, may_read, may_write, parse_doc
from noderuntime.sync.protocol import ProtocolError, WireUpdate


def _random_ops(seed: int, n: int) -> None:
    rnd = random.Random(seed)
    d: Doc = Doc()
    m = d.get("m", type=Map)
    a = d.get("a", type=Array)
    t = d.get("t", type=Text)
    for _ in range(n):
        before = d.get_state()
        sv0 = decode_state_vector(before)
        k = rnd.random()
        with d.transaction():
            if k < 0.3:
                m[f"k{rnd.randint(0, 9)}"] = rnd.choice(
                    ["x", 1, 2.5, None, True, {"a": [1]}, "é😀"]
                )
            elif k < 0.45 and len(m):
                del m[rnd.choice(list(m.keys()))]
            elif k < 0.6:
                a.append(rnd.choice([1, "s", [1, 2]]))
            elif k < 0.7 and len(a):
                del a[0]
            elif k < 0.9:
                t.insert(rnd.randint(0, len(t)), rnd.choice(["ab", "xy", "é"]))
            else:
                m["sub"] = Map({"x": 1})
        update = d.get_update(before)
        sv1 = decode_state_vector(d.get_state())
        expected = {c: (sv0.get(c, 0), e) for c, e in sv1.items() if e != sv0.get(c, 0)}
        assert dict(parse_update(update).ranges) == expected
    # A full-state update carries every client from clock 0.
    full = parse_update(d.get_update())
    assert {c: end for c, (_, end) in full.ranges.items()} == decode_state_vector(d.get_state())


@pytest.mark.parametrize("seed", range(5))
def test_parse_update_matches_state_vector_deltas(seed: int) -> None:
    _random_ops(seed, 300)


def test_delete_only_update_is_unanchored() -> None:
    d: Doc = Doc()
    m = d.get("m", type=Map)
    m["a"] = "1"
    before = d.get_state()
    del m["a"]
    clocks = parse_update(d.get_update(before))
    assert not clocks.anchored and clocks.deletes == 1


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_parse_update_never_raises_anything_else(data: bytes) -> None:
    with contextlib.suppress(UpdateFormatError):
        parse_update(data)


def test_state_vector_round_trip_and_gap() -> None:
    sv = {1: 5, 2**40: 7, 3: 0}
    assert decode_state_vector(encode_state_vector(sv)) == sv
    d: Doc = Doc()
    d.get("m", type=Map)["x"] = "y"
    assert decode_state_vector(d.get_state()) == {d.client_id: 1}
    assert gap({1: 5, 2: 3}, {1: 5, 2: 1}) == {2: 1}
    assert gap({1: 5}, {}) == {1: 0}
    assert gap({1: 5}, {1: 9, 4: 2}) == {}
    assert units_behind({1: 5, 2: 3}, {2: 1}) == 7


def test_updates_envelope_round_trip_and_overhead() -> None:
    u = WireUpdate("operator:ann", b"s" * 64, 1.5, '{"summary":"apply web"}', b"\x01" * 30)
    raw = protocol.encode_updates("n1", "fleet", [u])
    msg = protocol.decode(raw)
    assert isinstance(msg, protocol.UpdatesMsg)
    assert msg.updates == (u,) and msg.doc == "fleet" and msg.sender == "n1"
    overhead = len(raw) - len(u.data)
    assert overhead <= 200, overhead


def test_batches_respect_max_bytes() -> None:
    us = [WireUpdate("node:a", b"s" * 64, 1.0, "{}", bytes(100)) for _ in range(100)]
    msgs = protocol.batch_updates("a", "fleet", us, 2000)
    assert all(len(m) <= 2000 for m in msgs)
    total = 0
    for m in msgs:
        decoded = protocol.decode(m)
        assert isinstance(decoded, protocol.UpdatesMsg)
        total += len(decoded.updates)
    assert total == 100


def test_signed_messages_round_trip() -> None:
    part = protocol.state_signed_part("node:a", "fleet", "b", 2.0, b"\x00")
    msg = protocol.decode(part + b"S" * 64)
    assert isinstance(msg, protocol.StateMsg)
    assert msg.signed == protocol.SIGNED_DOMAIN + part and msg.target == "b"
    part = protocol.heartbeat_signed_part("node:a", 3.0, b"{}")
    hb = protocol.decode(part + b"S" * 64)
    assert isinstance(hb, protocol.HeartbeatMsg) and hb.payload == b"{}"


def test_oversized_is_refused_before_parsing() -> None:
    with pytest.raises(ProtocolError) as err:
        protocol.decode(b"\xff" * 101, max_bytes=100)
    assert err.value.cause == "oversized"
    big = WireUpdate("node:a", b"s" * 64, 1.0, "{}", bytes(5000))
    with pytest.raises(ProtocolError) as err:
        protocol.decode(protocol.encode_updates("a", "fleet", [big]), max_update_bytes=4096)
    assert err.value.cause == "oversized"


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=300))
def test_decode_random_bytes_only_raises_protocol_error(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        protocol.decode(data)


@dataclass(frozen=True)
class M:
    principal: str
    role: str
    site: str | None
    public_key: bytes = b""


OP = M("operator:ann", "operator", None)
HUB = M("node:h", "hub", "hq")
N1 = M("node:n1", "node", "s1")
N2 = M("node:n2", "node", "s2")


def test_parse_doc() -> None:
    assert parse_doc("fleet") == DocRef(DocKind.FLEET)
    assert parse_doc("site/s1") == DocRef(DocKind.SITE, "s1")
    assert parse_doc("node/n1") == DocRef(DocKind.NODE, "n1")
    for bad in ("", "site/", "site/A B", "x/y", "node/../x", "fleet/x"):
        assert parse_doc(bad) is None


def test_writer_acl() -> None:
    fleet, site1, node1 = DocRef(DocKind.FLEET), DocRef(DocKind.SITE, "s1"), parse_doc("node/n1")
    assert node1 is not None
    assert may_write(fleet, OP) and may_write(fleet, HUB)
    assert not may_write(fleet, N1)
    assert may_write(site1, OP) and may_write(site1, N1)
    assert not may_write(site1, N2) and not may_write(site1, HUB)
    assert may_write(node1, N1) and may_write(node1, OP)
    assert not may_write(node1, N2) and not may_write(node1, HUB)
    assert not may_write(fleet, M("x:y", "technician", "s1"))


def test_reader_acl_and_scopes() -> None:
    site1 = DocRef(DocKind.SITE, "s1")
    assert may_read(site1, N2, site_of_doc="s1", sovereign=False)
    assert not may_read(site1, N2, site_of_doc="s1", sovereign=True)
    assert not may_read(site1, HUB, site_of_doc="s1", sovereign=True)
    assert may_read(site1, N1, site_of_doc="s1", sovereign=True)
    assert may_read(DocRef(DocKind.FLEET), N2, site_of_doc=None, sovereign=True)
    assert holds(site1, role="hub", site="hq", node_id="h", site_of_doc="s1")
    assert holds(site1, role="node", site="s1", node_id="n1", site_of_doc="s1")
    assert not holds(site1, role="node", site="s2", node_id="n2", site_of_doc="s1")


def test_subjects() -> None:
    subs = protocol.subscriptions("f", role="node", site="s1", node_id="n1")
    assert "nr.f.u.site.s1" in subs and "nr.f.u.node.s1.n1" in subs and "nr.f.hb.>" in subs
    assert "nr.f.u.>" in protocol.subscriptions("f", role="hub", site="hq", node_id="h")
    with pytest.raises(ValueError):
        protocol.check_token("a.b")


def test_credentials_are_batched_and_requests_round_trip() -> None:
    blobs = [bytes([65 + i % 26]) * 330 for i in range(600)]
    messages = protocol.batch_credentials(blobs, 64 * 1024)
    got: list[bytes] = []
    for m in messages:
        assert len(m) <= 64 * 1024
        msg = protocol.decode(m)
        assert isinstance(msg, protocol.CredentialsMsg)
        assert len(msg.credentials) <= protocol.MAX_CREDENTIALS
        got += msg.credentials
    assert got == blobs
    req = protocol.decode(protocol.encode_credential_request(["node:a", "operator:b"]))
    assert req == protocol.CredentialRequestMsg(("node:a", "operator:b"))


def test_batches_are_accepted_whole_by_receivers() -> None:
    limit = protocol.DEFAULT_MAX_UPDATE_BYTES

    def u(n: int) -> WireUpdate:
        return WireUpdate("node:a", b"s" * 64, 1.0, "{}", bytes(n))

    us = [u(10), u(limit), u(limit - 1), u(limit + 1), u(limit), u(limit), u(10), u(900_000)]
    msgs = protocol.batch_updates("a", "fleet", us, protocol.DEFAULT_MAX_MESSAGE_BYTES)
    sent = []
    for m in msgs:
        decoded = protocol.decode(m)  # default receiver limits: no message refused whole
        assert isinstance(decoded, protocol.UpdatesMsg)
        sent += decoded.updates
    assert sent == [x for x in us if len(x.data) <= limit]
    assert [protocol.deliverable(x, protocol.DEFAULT_MAX_MESSAGE_BYTES) for x in us[2:4]] == [
        True,
        False,
    ]
    # An update near a message's size goes alone.
    big = u(2000)
    msgs = protocol.batch_updates("a", "fleet", [u(10), big, u(10)], 2150, 4000)
    assert len(msgs) == 3 and all(len(m) <= 2150 for m in msgs)
