"""The config file of the node's own nats-server, from its settings (pure).

What it says (why each choice is made: docs/sync.md, "Transport"):

* client listener on ``127.0.0.1:<natsPort>`` only, with the node's token; monitoring on
  ``127.0.0.1`` only; ``max_payload`` 1 MiB; JetStream off;
* leaf listener (mutual TLS with the fleet CA, ``verify_and_map`` to the member name every
  fleet certificate carries, ``no_advertise``) only if ``leafPort`` is set, and one remote per
  configured peer, presenting the node's certificate and checking the peer's against the
  fleet CA and the host in its URL; a sovereign node's remotes outside its site deny its
  site's subjects both ways;
* nats-server retries remotes forever, every ``LEAF_RECONNECT_S`` plus up to as much again
  of jitter (no back-off), each dial timing out after 1 s;
* once a member is revoked, the leaf and route listeners accept only the certificates of known,
  unrevoked members (``pinned_certs``; docs/operations.md, "Revocation");
* a dead link is dropped within ``PING_INTERVAL_S`` x (``PING_MAX_OUT`` + 1): a cut cable
  sends no FIN or RST, and without this the connection outlives the cut on TCP's backed-off
  retransmit timer, so after a heal one direction stayed blocked for 5-18 s (issue 9). Once
  dropped, the link is redialled and is back within ~1 + 2 x ``LEAF_RECONNECT_S`` of the
  heal (nats-server offers no TCP_USER_TIMEOUT, and keepalives never fire while data waits).
* a site cluster (``clusterPort`` and ``clusterPeers``): a ``cluster`` block named after the
  site, one route per peer, mutual TLS with the fleet CA as on the leaf links, no advertising
  (a mesh of exactly the configured members); and JetStream with small limits, its store in
  the data dir, ``sync_interval: always`` (Jepsen lost acknowledged writes under the default
  2 min fsync: a lost lease write could re-issue a revision). A node alone in its site runs no
  JetStream (docs/architecture.md, "Site quorum").
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from noderuntime.config.peers import parse_peer_url, parse_route_url
from noderuntime.errors import NatsServerError

if TYPE_CHECKING:
    from noderuntime.config.model import NodeConfig
    from noderuntime.fleet.trust import FleetTrust

# nats-server waits this long, plus a random part as long, between attempts to dial a peer
# (its dial timeout is 1 s). A peer cut off costs one SYN per attempt; a heal is noticed
# within ~1 + 2 x this. Rendered in milliseconds.
LEAF_RECONNECT_S = 0.25
# PINGs on every connection (leaf links, and the local clients on loopback); a link with
# more than PING_MAX_OUT unanswered is closed. Cost: PING + PONG each way per second
# (~80 bytes each with TLS and TCP/IP headers). A link whose round trip exceeds ~2 s is
# dropped and redialled.
PING_INTERVAL_S = 1
PING_MAX_OUT = 2
LEAF_TLS_TIMEOUT_S = 5
# JetStream holds only the lease bucket (a few hundred bytes per slot, history 1): these limits
# are far above it and keep a misbehaving writer from filling the node's disk or memory.
JETSTREAM_MAX_FILE_BYTES = 64 * 1024 * 1024
JETSTREAM_MAX_MEMORY_BYTES = 16 * 1024 * 1024
JETSTREAM_SUBDIR = "jetstream"


@dataclass(frozen=True)
class LeafTLS:
    """Mutual-TLS material for leaf links (see :mod:`noderuntime.fleet.tls`)."""

    cert_file: Path
    key_file: Path
    ca_file: Path
    #: The certificate name every fleet member carries; the leaf listener's only user.
    member_name: str


@dataclass(frozen=True)
class NatsServerSettings:
    """What to run. Port 0 means "any free port" (chosen at first start, then kept)."""

    server_name: str
    client_port: int = 4222
    leaf_port: int | None = None
    leaf_host: str = "0.0.0.0"
    remotes: tuple[str, ...] = ()
    tls: LeafTLS | None = None
    leaf_reconnect_s: float = LEAF_RECONNECT_S
    ping_interval_s: float = PING_INTERVAL_S
    ping_max_out: int = PING_MAX_OUT
    #: Peers inside this node's own site (``sitePeers``): never filtered.
    site_remotes: tuple[str, ...] = ()
    #: Subjects the links to ``remotes`` neither export nor import (a sovereign site's
    #: documents, :func:`noderuntime.sync.protocol.sovereign_subjects`); empty: no filter.
    deny: tuple[str, ...] = ()
    #: The site cluster: cluster name (the site), route port (0: any free port), routes.
    cluster_name: str | None = None
    cluster_port: int | None = None
    cluster_host: str = "0.0.0.0"
    cluster_routes: tuple[str, ...] = ()
    #: JetStream's store; None: JetStream off (a node alone in its site needs none).
    jetstream_dir: Path | None = None
    jetstream_max_file_bytes: int = JETSTREAM_MAX_FILE_BYTES
    jetstream_max_memory_bytes: int = JETSTREAM_MAX_MEMORY_BYTES
    #: Once a member is revoked: the certificates (hex SHA-256 of their public key info) the
    #: leaf and route listeners still accept (``FleetTrust.tls_pins``); empty: any the fleet
    #: CA signed. Changed at run time by a restart on the same ports
    #: (``NatsServer.reconfigure``: nats-server 2.15 reloads no change of ``pinned_certs``).
    pinned: tuple[str, ...] = ()

    @property
    def clustered(self) -> bool:
        return self.cluster_port is not None and self.cluster_name is not None

    @property
    def all_remotes(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.remotes + self.site_remotes))


def settings_for_node(
    config: NodeConfig, trust: FleetTrust, data_dir: Path | None = None
) -> NatsServerSettings:
    """The nats-server a node runs, from its config and its fleet enrolment."""
    from noderuntime.sync.protocol import sovereign_subjects

    clustered = config.cluster_port is not None

    return NatsServerSettings(
        server_name=config.node_id,
        client_port=config.nats_port,
        leaf_port=config.leaf_port,
        leaf_host=config.leaf_host,
        remotes=tuple(config.peers),
        site_remotes=tuple(config.site_peers),
        deny=tuple(sovereign_subjects(trust.fleet_id, config.site)) if config.sovereign else (),
        tls=LeafTLS(
            cert_file=trust.cert_file,
            key_file=trust.key_file,
            ca_file=trust.ca_file,
            member_name=trust.member_san,
        ),
        cluster_name=config.site if clustered else None,
        cluster_port=config.cluster_port,
        cluster_host=config.cluster_host,
        cluster_routes=tuple(config.cluster_peers),
        pinned=trust.tls_pins(),
        jetstream_dir=(
            data_dir / JETSTREAM_SUBDIR
            if data_dir is not None and clustered and config.cluster_peers
            else None
        ),
    )


def _q(value: str | Path) -> str:
    """A double-quoted string in nats-server config syntax."""
    return json.dumps(str(value))


def _ms(seconds: float) -> int:
    """A duration in whole milliseconds, at least 1 (nats-server reads 0 as "the default")."""
    return max(1, round(seconds * 1000))


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def render_config(
    settings: NatsServerSettings,
    *,
    token: str,
    client_port: int,
    monitor_port: int,
    leaf_port: int | None,
    cluster_port: int | None = None,
) -> str:
    """The nats-server config file text (pure). Ports: -1 = any free port."""
    if (
        settings.leaf_port is not None or settings.all_remotes or settings.clustered
    ) and settings.tls is None:
        raise NatsServerError(
            "leaf links and the site cluster need the node's fleet TLS material; enrol the "
            "node first (`noderuntime init --enroll TOKEN` or `noderuntime enroll --credential "
            "FILE`)"
        )
    lines = [
        "# Generated by noderuntime at every start; edits are overwritten.",
        f"server_name: {_q(settings.server_name)}",
        f"listen: {_q(_hostport('127.0.0.1', client_port))}",
        f"http: {_q(_hostport('127.0.0.1', monitor_port))}",
        f"authorization {{ token: {_q(token)} }}",
        "max_payload: 1048576",
        f'ping_interval: "{_ms(settings.ping_interval_s)}ms"',
        f"ping_max: {int(settings.ping_max_out)}",
    ]
    tls = settings.tls
    if tls is not None and (settings.leaf_port is not None or settings.all_remotes):
        lines.append("leafnodes {")
        if leaf_port is not None:
            lines += [
                f"  listen: {_q(_hostport(settings.leaf_host, leaf_port))}",
                # Peers dial the address they were configured with: advertising our listen
                # address would let them bypass it (a relay, a NAT, a cut we must respect).
                "  no_advertise: true",
                "  tls {",
                f"    cert_file: {_q(tls.cert_file)}",
                f"    key_file: {_q(tls.key_file)}",
                f"    ca_file: {_q(tls.ca_file)}",
                "    verify_and_map: true",
                f"    timeout: {LEAF_TLS_TIMEOUT_S}",
                *_pinned_lines(settings, "    "),
                "  }",
                f"  authorization {{ users: [ {{ user: {_q(tls.member_name)} }} ] }}",
            ]
        lines.append(f'  reconnect: "{_ms(settings.leaf_reconnect_s)}ms"')
        if settings.all_remotes:
            lines.append("  remotes: [")
            for url in settings.all_remotes:
                parse_peer_url(url)
                lines += ["    {", f"      url: {_q(url)}"]
                if settings.deny and url in settings.remotes and url not in settings.site_remotes:
                    denied = ", ".join(_q(subject) for subject in settings.deny)
                    lines += [f"      deny_exports: [{denied}]", f"      deny_imports: [{denied}]"]
                lines += [
                    "      tls {",
                    f"        cert_file: {_q(tls.cert_file)}",
                    f"        key_file: {_q(tls.key_file)}",
                    f"        ca_file: {_q(tls.ca_file)}",
                    f"        timeout: {LEAF_TLS_TIMEOUT_S}",
                    "      }",
                    "    }",
                ]
            lines.append("  ]")
        lines.append("}")
    lines += _cluster_lines(settings, cluster_port)
    return "\n".join(lines) + "\n"


def _pinned_lines(settings: NatsServerSettings, indent: str) -> list[str]:
    if not settings.pinned:
        return []
    return [f"{indent}pinned_certs: [{', '.join(_q(p) for p in settings.pinned)}]"]


def _cluster_lines(settings: NatsServerSettings, cluster_port: int | None) -> list[str]:
    tls = settings.tls
    if not settings.clustered or tls is None or settings.cluster_name is None:
        return []
    port = cluster_port if cluster_port is not None else (settings.cluster_port or -1)
    lines = [
        "cluster {",
        f"  name: {_q(settings.cluster_name)}",
        f"  listen: {_q(_hostport(settings.cluster_host, port))}",
        # Exactly the configured members: gossiping addresses would let routes bypass a cut
        # (and the netns tests) the way an advertised leaf address would.
        "  no_advertise: true",
        "  tls {",
        f"    cert_file: {_q(tls.cert_file)}",
        f"    key_file: {_q(tls.key_file)}",
        f"    ca_file: {_q(tls.ca_file)}",
        "    verify: true",
        f"    timeout: {LEAF_TLS_TIMEOUT_S}",
        *_pinned_lines(settings, "    "),
        "  }",
    ]
    if settings.cluster_routes:
        for url in settings.cluster_routes:
            parse_route_url(url)
        routes = ", ".join(_q(url) for url in settings.cluster_routes)
        lines.append(f"  routes: [{routes}]")
    lines.append("}")
    if settings.jetstream_dir is not None:
        lines += [
            "jetstream {",
            f"  store_dir: {_q(settings.jetstream_dir)}",
            f"  max_memory_store: {int(settings.jetstream_max_memory_bytes)}",
            f"  max_file_store: {int(settings.jetstream_max_file_bytes)}",
            "  sync_interval: always",
            "}",
        ]
    return lines
