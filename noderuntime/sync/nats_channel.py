"""The sync :class:`~noderuntime.sync.channel.Channel` over nats-py: the node's local server.

Connects until it succeeds (capped back-off), then lets nats-py reconnect forever: the local
server may come and go. Subscriptions are nats-py's and survive reconnects. nats-py's own
errors are logged at debug level; a failed publish becomes a ``ChannelError``.

Pending limits are set deliberately: each subscription holds at most ``pending_msgs`` messages
and ``pending_bytes`` bytes the engine has not taken yet (nats-py's defaults are 512 Ki
messages and 128 MiB, more than the engine's own inbox); past them nats-py drops the message
and reports a slow consumer, which the listener hears as ``on_dropped`` and counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from urllib.parse import urlsplit, urlunsplit

import nats
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.errors import SlowConsumerError

from noderuntime.aio import raise_if_cancelled
from noderuntime.errors import ChannelError
from noderuntime.sync.channel import ChannelListener

CONNECT_BACKOFF_MAX_S = 5.0
CLOSE_TIMEOUT_S = 5.0
PENDING_BYTES = 16 * 1024 * 1024


async def close_bounded(nc: NatsClient, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
    """Close a nats-py client, giving up after ``timeout_s``.

    nats-py's close waits for its transport to close, and on a connection that is reconnecting
    to a server that just died that wait can last until the OS gives up on the socket
    (nats-io/nats.py#671): a node shutting down, or a test tearing a site down, must not hang
    on it. What is left is garbage-collected with the client.
    """
    # Closing a broken client may also raise anything nats-py has: it is gone either way.
    with contextlib.suppress(Exception):
        async with asyncio.timeout(timeout_s):
            await nc.close()


class NatsChannel:
    def __init__(
        self,
        url: str,
        *,
        name: str,
        token: str | None = None,
        log: logging.Logger,
        pending_msgs: int = 10_000,
        pending_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        self.url = url
        self.name = name
        self._token = token
        self.log = log
        self.pending_msgs = pending_msgs
        self.pending_bytes = pending_bytes
        self._nc: NatsClient | None = None
        self._listener: ChannelListener | None = None

    @property
    def address(self) -> str:
        return redact_url(self.url)

    async def open(self, subjects: Sequence[str], listener: ChannelListener) -> None:
        self._listener = listener
        backoff = 0.1
        while True:
            try:
                nc = await nats.connect(
                    self.url,
                    name=self.name,
                    allow_reconnect=True,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=0.5,
                    connect_timeout=2,
                    disconnected_cb=self._on_disconnected,
                    reconnected_cb=self._on_reconnected,
                    error_cb=self._on_error,
                    pending_size=PENDING_BYTES,
                    token=self._token,
                )
            except Exception as exc:
                self.log.debug("cannot reach local NATS at %s: %s", self.address, exc)
                raise_if_cancelled()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, CONNECT_BACKOFF_MAX_S)
                continue
            self._nc = nc
            for subject in subjects:
                await nc.subscribe(
                    subject,
                    cb=self._on_msg,
                    pending_msgs_limit=self.pending_msgs,
                    pending_bytes_limit=self.pending_bytes,
                )
            await nc.flush()
            await listener.on_connected(again=False)
            return

    async def publish(self, subject: str, data: bytes) -> None:
        nc = self._nc
        if nc is None:
            raise ChannelError(f"not connected to {self.address}")
        try:
            await nc.publish(subject, data)
        except Exception as exc:
            raise ChannelError(str(exc)) from exc

    async def close(self) -> None:
        nc, self._nc = self._nc, None
        if nc is not None:
            await close_bounded(nc)

    async def _on_msg(self, msg: Msg) -> None:
        if self._listener is not None:
            await self._listener.on_message(msg.subject, msg.data)

    async def _on_disconnected(self) -> None:
        if self._listener is not None:
            await self._listener.on_disconnected()

    async def _on_reconnected(self) -> None:
        if self._listener is not None:
            await self._listener.on_connected(again=True)

    async def _on_error(self, exc: Exception) -> None:
        if isinstance(exc, SlowConsumerError):
            if self._listener is not None:
                await self._listener.on_dropped(exc.subject)
            return
        self.log.debug("nats: %s", exc)


def redact_url(url: str) -> str:
    """``url`` without its credentials (the local server's token is a secret)."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, f"***@{host}", parts.path, parts.query, parts.fragment))
