"""Fleet events (noderuntime/sync/fleetevents.py): which transitions are sent, the wire
message, and what a hub admits into its bounded ring."""

from __future__ import annotations

import asyncio
import json

from noderuntime.identity import keys
from noderuntime.sync import protocol
from noderuntime.sync.fleetevents import (
    BUFFER_EVENTS,
    MAX_AGE_S,
    RECEIVE_BURST,
    FleetEvent,
    FleetEvents,
    SendLimit,
    classify,
    event_payload,
    parse_event,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_transitions_an_operator_watches_are_classified() -> None:
    assert classify("phase", "Running -> Failed exited with code 1") == "crash"
    assert classify("phase", "Running -> Unhealthy probe failed") == "unhealthy"
    assert classify("phase", "Failed -> Running") == "recovered"
    assert classify("phase", "Unhealthy -> Running") == "recovered"
    assert classify("health", "health is now unhealthy (3 failures)") == "unhealthy"
    assert classify("rollout", "wave 1 released") == "rollout"
    # Not transitions worth a fleet event: start-up, pulls, a healthy probe.
    assert classify("phase", "- -> Pending") is None
    assert classify("phase", "Pending -> Running") is None
    assert classify("pulled", "pulled image x") is None
    assert classify("health", "health is now healthy") is None


def test_an_event_message_round_trips_signed() -> None:
    ident = keys.generate("node:n1")
    payload = event_payload(
        node="n1", site="lab", workload="w", transition="crash", kind="phase", message="x", ts=5.0
    )
    part = protocol.event_signed_part("node:n1", 5.0, payload)
    raw = part + ident.sign(protocol.signing_bytes(part))
    msg = protocol.decode(raw)
    assert isinstance(msg, protocol.EventMsg)
    assert msg.sender == "node:n1" and msg.payload == payload
    assert keys.verify(ident.public_bytes, msg.signature, msg.signed)
    event = parse_event(json.loads(payload), node="n1", site="lab", received=6.0)
    assert event == FleetEvent(5.0, 6.0, "n1", "lab", "w", "crash", "phase", "x")


def test_a_payload_naming_another_node_is_refused() -> None:
    payload = json.loads(
        event_payload(
            node="n2", site="s", workload="w", transition="crash", kind="phase", message="", ts=1
        )
    )
    assert parse_event(payload, node="n1", site="s", received=1.0) is None


def test_the_hub_refuses_replays_stale_events_and_floods_per_sender() -> None:
    clock = Clock()
    ring = FleetEvents(clock)
    assert ring.admit(b"sig1", "node:n1", clock.now) is None
    assert ring.admit(b"sig1", "node:n1", clock.now) == "replayed"
    assert ring.admit(b"old", "node:n1", clock.now - MAX_AGE_S - 1) == "stale"
    admitted = sum(ring.admit(f"s{i}".encode(), "node:n2", clock.now) is None for i in range(200))
    assert admitted == int(RECEIVE_BURST)
    # Another sender has its own budget.
    assert ring.admit(b"other", "node:n3", clock.now) is None


def test_the_ring_is_bounded_and_followers_see_only_newer_events() -> None:
    ring = FleetEvents(Clock())
    for i in range(BUFFER_EVENTS + 10):
        ring.add(FleetEvent(float(i), float(i), "n", "s", "w", "crash", "phase", str(i)))
    assert len(ring.events) == BUFFER_EVENTS
    last = ring.last_seq

    async def follow() -> list[str]:
        waiter = asyncio.create_task(ring.wait_newer(last))
        await asyncio.sleep(0)
        assert not waiter.done()
        ring.add(FleetEvent(1.0, 1.0, "n", "s", "w", "recovered", "phase", "new"))
        await asyncio.wait_for(waiter, 5)
        return [e.message for _, e in ring.since(last)]

    assert asyncio.run(follow()) == ["new"]


def test_a_sender_drops_what_is_over_its_budget() -> None:
    limit = SendLimit(Clock())
    sent = sum(limit.allow() for _ in range(100))
    assert sent == 20 and limit.dropped == 80
