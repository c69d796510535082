"""A real site cluster: N nats-servers routed together with mutual TLS and JetStream."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from noderuntime.fleet import FleetAuthority
from noderuntime.sync.natsconfig import NatsServerSettings
from noderuntime.sync.natsserver import NatsServer
from tests.ports import free_port
from tests.sync.test_natsserver import member


def cluster_settings(
    names: list[str], fleet: FleetAuthority, base: Path, max_file_bytes: int | None = None
) -> list[tuple[NatsServerSettings, Path]]:
    """Settings for one member per name, every one routed to every other (a mesh)."""
    ports = {n: free_port() for n in names}
    out = []
    for n in names:
        data_dir, tls = member(fleet, n, base)
        routes = tuple(f"nats-route://127.0.0.1:{ports[m]}" for m in names if m != n)
        out.append(
            (
                NatsServerSettings(
                    n,
                    client_port=0,
                    tls=tls,
                    cluster_name="s1",
                    cluster_port=ports[n],
                    cluster_host="127.0.0.1",
                    cluster_routes=routes,
                    jetstream_dir=data_dir / "jetstream",
                    **({"jetstream_max_file_bytes": max_file_bytes} if max_file_bytes else {}),
                ),
                data_dir,
            )
        )
    return out


@contextlib.asynccontextmanager
async def site_cluster(
    names: list[str], fleet: FleetAuthority, base: Path, max_file_bytes: int | None = None
) -> AsyncIterator[list[NatsServer]]:
    async with contextlib.AsyncExitStack() as stack:
        servers = []
        for settings, data_dir in cluster_settings(names, fleet, base, max_file_bytes):
            servers.append(await stack.enter_async_context(NatsServer(settings, data_dir / "nats")))
        yield servers
