"""The engine's counters, as ``status`` reports them (field order is the JSON order)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Counters:
    messages_in: int = 0
    bytes_in: int = 0
    messages_out: int = 0
    bytes_out: int = 0
    updates_broadcast: int = 0
    updates_applied: int = 0
    duplicates: int = 0
    repairs_sent: int = 0
    state_sent: int = 0
    state_received: int = 0
    heartbeats_sent: int = 0
    heartbeats_received: int = 0
    broadcast_dropped: int = 0
    connects: int = 0
    disconnects: int = 0
    # Heartbeats/state vectors from a member whose credential has not reached us yet: normal
    # for a few seconds after a node joins, so not counted as rejections (updates still are).
    awaiting_credentials: int = 0
    credentials_requested: int = 0
    updates_undeliverable: int = 0
    # Messages dropped because the inbound queue was full, or nats-py's pending limit was
    # reached (also counted as `overload`).
    inbound_dropped: int = 0
    inbound_dropped_bytes: int = 0
    # Times the local server dropped our connection as a slow consumer (a burst larger than it
    # buffers for a client; also counted as `overload`): what it held for us was lost.
    slow_consumer_drops: int = 0
    # Leaf links of the local server seen coming up (0 without a monitoring port).
    link_ups: int = 0
    # Entries forgotten by a full bounded table (unknown authors, rate limits, replay memory):
    # what peers made us remember beyond the bounds (noderuntime.sync.bounded).
    table_evictions: int = 0
    # Answers not sent because a per-peer limit was reached (repairs, credential requests).
    rate_limited: int = 0
    # Stored updates a repair left out because they wait here for a predecessor too.
    repairs_held: int = 0
