"""Peer URLs as node.yaml and `init --peer` take them."""

from __future__ import annotations

from urllib.parse import urlsplit

PEER_SCHEMES = ("nats-leaf", "tls", "nats")


def parse_peer_url(url: str) -> tuple[str, int]:
    """(host, port) of a peer URL ``nats-leaf://HOST:PORT``; raise ValueError if invalid."""
    parts = urlsplit(url)
    if parts.scheme not in PEER_SCHEMES:
        raise ValueError(f"peer URL {url!r} must start with nats-leaf:// (or tls://)")
    if parts.username or parts.password:
        raise ValueError(f"peer URL {url!r} must not carry credentials (mutual TLS is used)")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"peer URL {url!r} has an invalid port") from None
    if not parts.hostname or port is None:
        raise ValueError(f"peer URL {url!r} needs a host and a port, e.g. nats-leaf://HOST:7422")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"peer URL {url!r} must be just scheme://HOST:PORT")
    return parts.hostname, port


ROUTE_SCHEMES = ("nats-route",)


def parse_route_url(url: str) -> tuple[str, int]:
    """(host, port) of a site-cluster peer ``nats-route://HOST:PORT``; raise ValueError if not."""
    parts = urlsplit(url)
    if parts.scheme not in ROUTE_SCHEMES:
        raise ValueError(f"cluster peer URL {url!r} must start with nats-route://")
    if parts.username or parts.password:
        raise ValueError(
            f"cluster peer URL {url!r} must not carry credentials (mutual TLS is used)"
        )
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"cluster peer URL {url!r} has an invalid port") from None
    if not parts.hostname or port is None:
        raise ValueError(
            f"cluster peer URL {url!r} needs a host and a port, e.g. nats-route://HOST:6222"
        )
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"cluster peer URL {url!r} must be just nats-route://HOST:PORT")
    return parts.hostname, port
