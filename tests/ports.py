"""Ports for the servers tests start, picked outside the kernel's ephemeral port range.

``bind(("127.0.0.1", 0))`` returns a port from the ephemeral range, the pool every outgoing
connection's local end is drawn from. A port picked at a node's ``init`` and listened on only
at its start could be taken in between by any connection on the machine (seen in CI: a
nats-server's `bind: address already in use`, the node exiting 1). Below that range only a
listener can hold a port, and it is checked free here.
"""

from __future__ import annotations

import random
import socket

LOWEST = 15000  # above the well-known services a test machine may run (registry, prometheus)
_given: set[int] = set()


def _ephemeral_start() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A TCP port nothing listens on, never handed out twice to this process."""
    top = _ephemeral_start()
    if top - LOWEST < 1000:  # an unusual range: fall back to the kernel's pick
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])
    span = top - LOWEST
    first = random.randrange(span)
    for i in range(span):
        port = LOWEST + (first + i) % span
        if port in _given:
            continue
        with socket.socket() as s:
            try:
                s.bind(("0.0.0.0", port))
            except OSError:
                continue
        _given.add(port)
        return port
    raise RuntimeError(f"no free TCP port in {LOWEST}-{top - 1}")
