"""The sync engine's pure parts: peer table, scopes and anti-entropy planning, credential relay,
inbox policy, subject matching."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from noderuntime.sync import protocol
from noderuntime.sync.antientropy import (
    Announcement,
    StateReplies,
    batch_deliverable,
    plan_round,
)
from noderuntime.sync.channel import subject_matches
from noderuntime.sync.credentials import CREDENTIAL_PUSH_INTERVAL_S, CredentialRelay
from noderuntime.sync.inbox import Inbox
from noderuntime.sync.peers import PeerStats, PeerTable
from noderuntime.sync.protocol import WireUpdate
from noderuntime.sync.scopes import Scopes
from noderuntime.sync.settings import SyncSettings
from tests.sync.natsfixtures import FakeTrust, Member

NOW = 1_000_000.0


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def heartbeat(
    table: PeerTable, node: str, site: str, role: str = "node", **payload: object
) -> bool:
    changes = table.heard_heartbeat(
        table.peer(node), site=site, role=role, ts=NOW, payload=dict(payload), size=10, now=NOW
    )
    return any(t.up for t in changes)


def test_a_peer_is_up_from_its_first_heartbeat_until_the_timeout() -> None:
    table = PeerTable(timeout_s=6.0)
    assert heartbeat(table, "n2", "s1") is True  # came up
    assert heartbeat(table, "n2", "s1") is False  # already up
    peer = table.peers["n2"]
    assert (peer.up_since, peer.messages_in, peer.bytes_in) == (NOW, 2, 20)
    assert [p.node_id for p in table.up(NOW + 6.0)] == ["n2"]
    assert table.up(NOW + 6.1) == []
    (view,) = table.views(NOW + 7)
    assert (view["node"], view["site"], view["up"]) == ("n2", "s1", False)


def scopes_for(*, node: str = "n1", site: str = "s1", role: str = "node") -> Scopes:
    trust = FakeTrust()
    for n, s, r in (("n1", "s1", "node"), ("n2", "s1", "node"), ("n3", "s2", "node")):
        trust.enroll(f"node:{n}", r, s)
    trust.enroll("node:hub", "hub", "hq")
    settings = SyncSettings(fleet="f1", node_id=node, site=site, role=role)
    return Scopes(settings, trust, PeerTable(timeout_s=6.0))


def first(pool: Sequence[PeerStats]) -> PeerStats:
    return pool[0]


DOCS = ["fleet", "site/s1", "site/s2", "node/n1", "node/n3"]


def test_with_no_peer_up_a_round_announces_every_held_doc_on_its_state_subject() -> None:
    scopes = scopes_for()
    plan = plan_round(DOCS, scopes, NOW, choose=first)
    assert plan == [Announcement("fleet"), Announcement("site/s1"), Announcement("node/n1")]
    assert scopes.state_subject("node/n1") == "nr.f1.sv.node.s1.n1"


def test_a_round_sends_each_doc_to_one_live_holder_preferring_healed_peers() -> None:
    scopes = scopes_for()
    heartbeat(scopes.table, "n2", "s1")
    heartbeat(scopes.table, "hub", "hq", role="hub")
    plan = {a.doc: a for a in plan_round(DOCS, scopes, NOW, choose=first)}
    assert plan["site/s1"].target is not None and plan["site/s1"].target.node_id == "n2"
    assert plan["site/s1"].inbox == "nr.f1.in.s1.n2"
    assert plan["node/n1"].inbox == "nr.f1.in.hq.hub"  # only the hub holds n1's document
    healed = plan_round(DOCS, scopes, NOW, prefer={"hub"}, choose=first)
    assert {a.doc: a.inbox for a in healed}["site/s1"] == "nr.f1.in.hq.hub"


def test_after_a_link_heal_docs_no_healed_peer_holds_go_to_the_state_subject() -> None:
    scopes = scopes_for()
    heartbeat(scopes.table, "n2", "s1")
    plan = plan_round(DOCS, scopes, NOW, prefer=set(), link_healed=True, choose=first)
    assert all(a.target is None for a in plan)


def test_a_sovereign_sites_docs_stay_with_its_members() -> None:
    scopes = scopes_for(node="hub", site="hq", role="hub")
    heartbeat(scopes.table, "n3", "s2", sovereign=True)
    scopes.learn_sovereign(scopes.table.peers["n3"])
    assert scopes.is_sovereign("s2")
    held = [a.doc for a in plan_round(DOCS, scopes, NOW, choose=first)]
    assert "site/s2" not in held and "node/n3" not in held and "site/s1" in held


def test_state_replies_are_rate_limited_per_peer_and_doc() -> None:
    clock = Clock()
    replies = StateReplies(clock)
    replies.sent("n2", "fleet")  # our own announcement counts
    assert not replies.due("n2", "fleet")
    assert replies.due("n2", "site/s1")
    clock.now += 0.5
    assert replies.due("n2", "fleet") and not replies.due("n2", "fleet")


def test_undeliverable_updates_are_left_out_and_counted() -> None:
    small = WireUpdate("node:n1", bytes(64), 1.0, "{}", b"x" * 100)
    huge = WireUpdate("node:n1", bytes(64), 1.0, "{}", b"x" * 5000)
    messages, left_out = batch_deliverable("n1", "fleet", [small, huge, small], 2000, 4000)
    assert left_out == 1
    decoded = [protocol.decode(m, max_bytes=2000, max_update_bytes=4000) for m in messages]
    assert sum(len(m.updates) for m in decoded if isinstance(m, protocol.UpdatesMsg)) == 2


def relay_with(*members: Member, node: Member | None = None) -> tuple[CredentialRelay, Clock]:
    trust = FakeTrust()
    trust.by_principal = {m.principal: m for m in members}
    trust.node = node
    clock = Clock()
    return CredentialRelay(trust, clock), clock


def member(principal: str, role: str, site: str | None = None) -> Member:
    return Member(principal, role, site, bytes(32), principal, blob=f"cred:{principal}".encode())


def test_the_push_is_our_own_credential_and_operators_and_hubs() -> None:
    me = member("node:n1", "node", "s1")
    others = [
        member("node:n2", "node", "s1"),
        member("operator:ann", "operator"),
        member("node:hub", "hub", "hq"),
    ]
    relay, clock = relay_with(me, *others, node=me)
    assert relay.known() == [b"cred:node:n1", b"cred:node:hub", b"cred:operator:ann"]
    assert relay.push_due() and not relay.push_due()
    clock.now += CREDENTIAL_PUSH_INTERVAL_S
    assert relay.push_due()


def test_requests_are_rate_limited_per_principal_and_bounded() -> None:
    relay, clock = relay_with()
    assert relay.to_request({"node:a", "node:b"}) == ["node:a", "node:b"]
    assert relay.to_request({"node:a", "node:c"}) == ["node:c"]
    assert set(relay.missing_authors) == {"node:a", "node:b", "node:c"}
    clock.now += CREDENTIAL_PUSH_INTERVAL_S
    many = {f"node:x{i:03}" for i in range(200)}
    assert len(relay.to_request(many)) == protocol.MAX_REQUESTED


def test_answers_carry_known_credentials_at_most_every_interval() -> None:
    relay, clock = relay_with(member("node:n3", "node", "s1"))
    assert relay.answer(["node:n3", "node:unknown"]) == [b"cred:node:n3"]
    assert relay.answer(["node:n3"]) == []
    clock.now += CREDENTIAL_PUSH_INTERVAL_S
    assert relay.answer(["node:n3"]) == [b"cred:node:n3"]


def test_a_refused_credential_is_reported_not_raised() -> None:
    relay, _ = relay_with()
    learnt = relay.learn([b"junk"])
    assert not learnt.new_member and not learnt.repair and len(learnt.refused) == 1


async def test_the_inbox_is_bounded_by_bytes_including_the_message_in_hand() -> None:
    inbox = Inbox(max_bytes=250, max_messages=3)
    assert inbox.offer("a", bytes(100)) and inbox.offer("b", bytes(100))
    assert not inbox.offer("c", bytes(100))  # 300 bytes > 250
    assert inbox.offer("c", bytes(50))
    assert not inbox.offer("d", b"")  # three messages queued
    subject, data = await asyncio.wait_for(inbox.get(), 1)
    assert subject == "a" and inbox.bytes == 250  # taken, not yet done
    inbox.done(data)
    assert inbox.bytes == 150 and inbox.offer("d", bytes(100))


def test_subjects_match_as_nats_matches_them() -> None:
    assert subject_matches("nr.f1.u.>", "nr.f1.u.node.s1.n1")
    assert not subject_matches("nr.f1.u.>", "nr.f1.u")
    assert subject_matches("nr.f1.hb.*.n1", "nr.f1.hb.s1.n1")
    assert not subject_matches("nr.f1.hb.*", "nr.f1.hb.s1.n1")
    assert subject_matches("nr.f1.cred", "nr.f1.cred")
    assert not subject_matches("nr.f1.cred", "nr.f1.credx")
