"""Peer and leaf-link up/down transitions, with the times they happened (issue 9 side fixes)."""

from __future__ import annotations

from noderuntime.sync.liveness import LinkState, PeerLiveness, Transition, observe_links

TIMEOUT = 6.0


def test_a_peer_comes_up_when_first_heard_and_stays_up_while_heard() -> None:
    live = PeerLiveness(TIMEOUT)
    assert live.heard("a", 100.0) == [Transition("a", True, 100.0)]
    assert live.heard("a", 102.0) == []
    assert live.due(108.0) == []  # heard 6 s ago: not yet silent for longer than the timeout
    assert live.is_up("a")


def test_a_silent_peer_goes_down_at_last_heard_plus_timeout_however_late_it_is_noticed() -> None:
    live = PeerLiveness(TIMEOUT)
    live.heard("a", 100.0)
    live.heard("a", 102.0)
    # Noticed 30 s late: the transition still says when it happened.
    assert live.due(140.0) == [Transition("a", False, 108.0, up_since=100.0)]
    assert not live.is_up("a")
    assert live.due(150.0) == []  # reported once


def test_a_heartbeat_after_an_unnoticed_silence_reports_down_then_up() -> None:
    live = PeerLiveness(TIMEOUT)
    live.heard("a", 100.0)
    assert live.heard("a", 120.0) == [
        Transition("a", False, 106.0, up_since=100.0),
        Transition("a", True, 120.0),
    ]
    assert live.due(121.0) == []


def test_peers_go_down_independently() -> None:
    live = PeerLiveness(TIMEOUT)
    live.heard("a", 100.0)
    live.heard("b", 100.0)
    live.heard("b", 105.0)
    assert live.due(107.0) == [Transition("a", False, 106.0, up_since=100.0)]
    assert live.is_up("b")


def test_links_record_when_they_changed_not_when_asked() -> None:
    table, changes = observe_links({}, {"out": (False, None)}, 10.0)
    assert table == {"out": LinkState(False, 10.0)} and changes == []  # known down at start
    table, changes = observe_links(table, {"out": (True, 7)}, 11.0)
    assert changes == [Transition("out", True, 11.0)]
    table, changes = observe_links(table, {"out": (True, 7)}, 50.0)
    assert changes == [] and table["out"].since == 11.0
    table, changes = observe_links(table, {"out": (False, None)}, 60.0)
    assert changes == [Transition("out", False, 60.0, up_since=11.0)]
    assert table["out"] == LinkState(False, 60.0)


def test_a_redial_between_two_polls_is_a_new_link() -> None:
    table = {"out": LinkState(True, 11.0, 7)}
    table, changes = observe_links(table, {"out": (True, 8)}, 20.0)
    assert changes == [
        Transition("out", False, 20.0, up_since=11.0),
        Transition("out", True, 20.0),
    ]
    assert table["out"] == LinkState(True, 20.0, 8)


def test_an_inbound_link_that_closed_goes_down_once_and_is_forgotten() -> None:
    table, changes = observe_links({}, {"site-node": (True, 3)}, 5.0)
    assert changes == [Transition("site-node", True, 5.0)]
    table, changes = observe_links(table, {}, 9.0)
    assert changes == [Transition("site-node", False, 9.0, up_since=5.0)] and table == {}
    assert observe_links(table, {}, 10.0) == ({}, [])
