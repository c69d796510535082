"""The transport the sync engine needs, as a Protocol, and an in-memory implementation.

A :class:`Channel` carries opaque messages on NATS-style subjects. The engine is its
:class:`ChannelListener`: it hears of messages and of the connection coming and going, and
publishes only while connected. ``nats_channel.NatsChannel`` is the real one (nats-py to the
node's local nats-server); :class:`MemoryHub` gives tests any number of channels on one
in-process bus, the way pycrdt tests its sync over an in-memory channel.

Contract of a channel:

- ``open(subjects, listener)`` connects, retrying until it succeeds or is cancelled, subscribes
  to ``subjects`` and then awaits ``listener.on_connected(again=False)``. Later losses and
  recoveries of the connection are reported with ``on_disconnected()`` and
  ``on_connected(again=True)``; subscriptions survive them.
- ``on_message(subject, data)`` is awaited once per matching subscription (NATS semantics,
  a publisher hears its own messages too); the listener must not block in it.
- ``on_dropped(subject)`` is awaited for a message the transport received but dropped before
  handing it over (nats-py's pending limit: a slow consumer), so the listener counts it.
- ``publish`` raises :class:`~noderuntime.errors.ChannelError` when the message could not be
  handed to the transport; it does not report whether anyone received it.
- ``address`` names the transport for logs and status, without secrets.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from noderuntime.errors import ChannelError


class ChannelListener(Protocol):
    async def on_connected(self, *, again: bool) -> None: ...

    async def on_disconnected(self) -> None: ...

    async def on_message(self, subject: str, data: bytes) -> None: ...

    async def on_dropped(self, subject: str) -> None: ...


class Channel(Protocol):
    @property
    def address(self) -> str: ...

    async def open(self, subjects: Sequence[str], listener: ChannelListener) -> None: ...

    async def publish(self, subject: str, data: bytes) -> None: ...

    async def close(self) -> None: ...


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: ``*`` matches one token, a final ``>`` one or more."""
    want, got = pattern.split("."), subject.split(".")
    for i, token in enumerate(want):
        if token == ">":
            return len(got) > i
        if i >= len(got) or (token != "*" and token != got[i]):
            return False
    return len(want) == len(got)


class MemoryHub:
    """One in-process message bus: a message published on any open, connected channel reaches
    every connected channel with a matching subscription, in order, before ``publish``
    returns."""

    def __init__(self) -> None:
        self.channels: list[MemoryChannel] = []

    def channel(self, name: str) -> MemoryChannel:
        return MemoryChannel(self, name)

    async def deliver(self, subject: str, data: bytes) -> None:
        for channel in list(self.channels):
            await channel.deliver(subject, data)


class MemoryChannel:
    """A :class:`Channel` on a :class:`MemoryHub`; :meth:`cut` and :meth:`heal` stand in for
    the connection to the local server going down and coming back."""

    def __init__(self, hub: MemoryHub, name: str) -> None:
        self.hub = hub
        self.name = name
        self.connected = False
        self.published = 0
        self._subjects: list[str] = []
        self._listener: ChannelListener | None = None

    @property
    def address(self) -> str:
        return f"memory://{self.name}"

    async def open(self, subjects: Sequence[str], listener: ChannelListener) -> None:
        self._subjects = list(subjects)
        self._listener = listener
        self.connected = True
        self.hub.channels.append(self)
        await listener.on_connected(again=False)

    async def publish(self, subject: str, data: bytes) -> None:
        if not self.connected:
            raise ChannelError(f"{self.address} is not connected")
        self.published += 1
        await self.hub.deliver(subject, data)

    async def deliver(self, subject: str, data: bytes) -> None:
        if not self.connected or self._listener is None:
            return
        for pattern in self._subjects:
            if subject_matches(pattern, subject):
                await self._listener.on_message(subject, data)

    async def cut(self) -> None:
        """The connection drops: nothing is sent or received until :meth:`heal`."""
        self.connected = False
        if self._listener is not None:
            await self._listener.on_disconnected()

    async def heal(self) -> None:
        self.connected = True
        if self._listener is not None:
            await self._listener.on_connected(again=True)

    async def close(self) -> None:
        self.connected = False
        if self in self.hub.channels:
            self.hub.channels.remove(self)
