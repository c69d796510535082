"""The test harness's port picker stays out of the ephemeral range (a CI flake, see ports.py)."""

from __future__ import annotations

import socket

import pytest

from tests import ports
from tests.ports import LOWEST, _ephemeral_start, free_port


def test_ports_are_below_the_ephemeral_range_free_and_never_repeated() -> None:
    ports = [free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)
    assert all(LOWEST <= p < _ephemeral_start() for p in ports)
    with socket.socket() as s:
        s.bind(("127.0.0.1", ports[0]))  # nothing listens there


def test_a_port_something_listens_on_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as held:
        for port in range(LOWEST + 1, _ephemeral_start() - 1):
            try:
                held.bind(("127.0.0.1", port))
                break
            except OSError:
                continue
        held.listen()
        taken = held.getsockname()[1]
        # The scan starts exactly at the port something listens on.
        monkeypatch.setattr(ports.random, "randrange", lambda _n: taken - LOWEST)
        got = free_port()
        assert got != taken and LOWEST <= got < _ephemeral_start()
