"""Leaf-link changes of the local nats-server, from its monitoring port (``/leafz``), and the
slow consumers it dropped (``/varz``).

A link is its connection id within one run of the server (``server_id``), so a server restart
makes every link new. Polled on loopback every ``LINK_POLL_INTERVAL_S`` (~1 KB per link); a
poll that fails changes nothing. Without a monitoring port (an external NATS) there is no
watcher, and heartbeats alone reveal a heal.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from noderuntime.errors import NatsServerError
from noderuntime.sync.natsserver import http_get_json

LINK_POLL_INTERVAL_S = 0.5

Link = tuple[str, object]


def leaf_links(leafz: Mapping[str, Any]) -> set[Link]:
    """The links a ``/leafz`` answer lists (raises AttributeError on a malformed one)."""
    server = str(leafz.get("server_id", ""))
    return {(server, e.get("id")) for e in leafz.get("leafs") or []}


def slow_clients(varz: Mapping[str, Any]) -> tuple[str, int]:
    """(server id, client connections it dropped as slow consumers) from a ``/varz`` answer.

    The node's engine is the only client of its own server (the client port wants a token only
    the node has), so every one counted here was the engine's connection.
    """
    stats = varz.get("slow_consumer_stats")
    count = stats.get("clients") if isinstance(stats, dict) else varz.get("slow_consumers")
    return str(varz.get("server_id", "")), int(count) if isinstance(count, int) else 0


async def read_slow_clients(port: int) -> tuple[str, int] | None:
    """:func:`slow_clients` of the server monitored on ``port``; None if it does not answer."""
    try:
        varz = await http_get_json(port, "/varz", timeout_s=2.0)
        return slow_clients(varz) if isinstance(varz, dict) else None
    except (OSError, NatsServerError, ValueError, TimeoutError):
        return None


class LinkWatch:
    """Calls ``on_new(count)`` whenever links that were not there at the last poll appear."""

    def __init__(self, port: int, on_new: Callable[[int], Awaitable[None]]) -> None:
        self.port = port
        self.on_new = on_new
        self.links: set[Link] = set()

    async def run(self) -> None:
        while True:
            try:
                links = leaf_links(await http_get_json(self.port, "/leafz", timeout_s=2.0))
            except (OSError, NatsServerError, ValueError, TimeoutError, AttributeError):
                await asyncio.sleep(LINK_POLL_INTERVAL_S)
                continue
            new = links - self.links
            self.links = links
            if new:
                await self.on_new(len(new))
            await asyncio.sleep(LINK_POLL_INTERVAL_S)
