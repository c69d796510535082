"""The node's side of the API seam: :class:`~noderuntime.api.services.NodeServices` over the
running parts.

The daemon builds :class:`RunningNodeServices` once every part the routes rely on is up (the
control API starts last), so nothing here is ever half-started: the optional parts are optional
because the node runs without them (no fleet, no own nats-server, no supervised Podman).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from noderuntime.api.services import NodeFacts, ReconcilerView, StoreHoldView, SyncView
from noderuntime.audit.log import Audit
from noderuntime.audit.store import WitnessAlert
from noderuntime.crdt.state import StateStore
from noderuntime.errors import NodeRuntimeError, NotEnrolledError
from noderuntime.host.network import describe, parse_change, read_network, set_network
from noderuntime.runtime.base import ContainerRuntime
from noderuntime.runtime.health import HealthMonitor
from noderuntime.runtime.service import PodmanService

if TYPE_CHECKING:
    from noderuntime.fleet.trust import FleetTrust
    from noderuntime.site.manager import SiteManager
    from noderuntime.sync.engine import SyncEngine
    from noderuntime.sync.fleetevents import FleetEvents
    from noderuntime.sync.natsserver import NatsServer


class EngineSyncView:
    """:class:`SyncView` over the sync engine."""

    def __init__(self, engine: SyncEngine) -> None:
        self._engine = engine

    def status(self) -> dict[str, Any]:
        return self._engine.status()

    def peer_views(self) -> list[dict[str, Any]]:
        return self._engine.peer_views()

    def peer_heartbeat(self, node_id: str) -> Mapping[str, Any]:
        peer = self._engine.peers.get(node_id)
        return peer.heartbeat if peer is not None else {}

    def peer_timeout_s(self) -> float:
        return self._engine.table.timeout_s

    def fleet_events(self) -> FleetEvents | None:
        return self._engine.fleet_events

    def remote_logs(self, wire: bytes, node_site: str | None) -> AsyncIterator[str]:
        return self._engine.remote_logs.request(wire, node_site)

    def resync_view(self) -> dict[str, Any] | None:
        resync = self._engine.resync
        return resync.view() if resync is not None else None

    async def anti_entropy(self) -> None:
        await self._engine.anti_entropy()


class HostNetwork:
    """:class:`NetworkView` over this host (``host/network.py``)."""

    async def read(self) -> dict[str, Any]:
        return await read_network()

    async def apply(self, params: Mapping[str, Any]) -> dict[str, Any]:
        change = parse_change(params)
        done = await set_network(change)
        return {**done, "change": describe(change)}


@dataclass(frozen=True)
class RunningNodeServices:
    """What the routes may use of a running node; every field is set when the API starts."""

    facts: NodeFacts
    state: StateStore
    store_guard: StoreHoldView
    reconciler: ReconcilerView
    runtime: ContainerRuntime
    health: HealthMonitor
    technician_auth: Callable[[str, str], str]
    podman_service: PodmanService | None = None
    sync_engine: SyncEngine | None = None
    fleet: FleetTrust | None = None
    nats: NatsServer | None = None
    # Why an enrolled node does not sync (shown in `status`).
    why_no_sync: str | None = None
    site: SiteManager | None = None
    audit: Audit | None = None

    def network(self) -> HostNetwork:
        return HostNetwork()

    def audit_log(self) -> Audit | None:
        return self.audit

    async def witness_alerts(self) -> list[WitnessAlert]:
        return await self.audit.store.alerts() if self.audit is not None else []

    def probe_results(self, workload: str) -> list[dict[str, object]]:
        return self.health.recent_results(workload)

    def podman_service_restarts(self) -> int | None:
        return self.podman_service.restarts if self.podman_service is not None else None

    def sync(self) -> SyncView | None:
        return EngineSyncView(self.sync_engine) if self.sync_engine is not None else None

    def sync_problem(self) -> str | None:
        return self.why_no_sync

    async def leaf_links(self) -> list[dict[str, Any]]:
        if self.nats is None:
            return []
        return [link.to_dict() for link in await self.nats.leaf_links()]

    def site_manager(self) -> SiteManager | None:
        return self.site

    async def nats_monitor(self, path: str) -> dict[str, Any] | None:
        if self.nats is None:
            return None
        try:
            found = await self.nats.monitor(path)
        except (NodeRuntimeError, OSError, ValueError):
            return None
        return found if isinstance(found, dict) else None

    def fleet_trust(self) -> FleetTrust:
        if self.fleet is None:
            raise NotEnrolledError(
                "this node is not enrolled in a fleet, so it cannot check an operator's "
                "signature; enrol it (`noderuntime enroll`) first"
            )
        return self.fleet

    def authenticate(self, technician: str, pin: str) -> str:
        return self.technician_auth(technician, pin)
