"""What the control API's routes need from the node: a few small, typed seams.

Routes see the node only through :class:`NodeServices`. The daemon implements it
(``noderuntime/node/services.py``); tests implement it in memory, so a route runs without a
node, Podman or NATS. The parts that always run while the API serves (state store, reconciler,
container runtime) are plain properties; the optional ones say so in their type (``sync()`` is
None on a node that does not sync) or raise a :class:`~noderuntime.errors.NodeRuntimeError`
naming what is missing (``fleet_trust()`` on a node that is not enrolled).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from noderuntime.audit.log import Audit
from noderuntime.audit.store import WitnessAlert
from noderuntime.crdt.mark import Hold
from noderuntime.crdt.schema import StatusRecord
from noderuntime.crdt.state import StateStore
from noderuntime.reconcile.desired import DesiredState
from noderuntime.reconcile.outcomes import Event
from noderuntime.reconcile.plan import Plan
from noderuntime.runtime.base import ContainerRuntime, ObservedContainer

if TYPE_CHECKING:
    # Only named in types: a node that is not enrolled never loads the fleet's crypto code.
    from noderuntime.fleet.trust import FleetTrust
    from noderuntime.site.manager import SiteManager
    from noderuntime.sync.fleetevents import FleetEvents

ROLE_HUB = "hub"


@dataclass(frozen=True)
class NodeFacts:
    """What the node is and where it lives; fixed for the life of the process."""

    node_id: str
    site: str
    role: str  # "node" or "hub"
    started_at: float
    data_dir: Path
    api_socket: Path
    podman_socket: Path
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def is_hub(self) -> bool:
        return self.role == ROLE_HUB


class ReconcilerView(Protocol):
    """The reconciler as routes see it: what it wants, what it saw, and the few things a person
    may ask of it (restart a container, note an event)."""

    @property
    def desired(self) -> DesiredState | None: ...  # as the durable documents hold it now

    @property
    def observed(self) -> list[ObservedContainer]: ...

    @property
    def live_status(self) -> Mapping[str, StatusRecord]:
        """What the last pass observed of each workload, stored or not."""
        ...

    @property
    def observed_once(self) -> bool: ...  # a pass has listed the runtime's containers

    @property
    def status_write_error(self) -> str | None: ...  # why the last status write failed

    @property
    def converged(self) -> bool: ...

    @property
    def events(self) -> Iterable[Event]: ...  # oldest first

    @property
    def runtime_error(self) -> str | None: ...

    @property
    def runtime_ok_since(self) -> float | None: ...

    @property
    def passes(self) -> int: ...

    @property
    def last_pass_at(self) -> float | None: ...

    @property
    def last_plan(self) -> Plan | None: ...

    def trigger(self, reason: str = "") -> None: ...

    async def restart_container(self, workload: str, container_id: str) -> None: ...

    def set_health(self, workload: str, health: str | None) -> None: ...

    def note(self, workload: str, kind: str, message: str) -> None: ...

    def image_arrived(self, names: Iterable[str]) -> list[str]:
        """Images were loaded by hand: workloads waiting for one retry now; returns them."""
        ...


class StoreHoldView(Protocol):
    """The store guard: whether the node holds its containers because the store lost what it
    had (``crdt/guard.py``), and the way out."""

    @property
    def hold(self) -> Hold | None: ...  # None: the node reconciles normally

    @property
    def released(self) -> str | None: ...  # how the last hold of this run ended

    def view(self) -> dict[str, Any] | None: ...  # None: not held

    async def release(self, why: str) -> Hold | None:
        """End the hold, taking the store as it is; returns the hold that ended."""
        ...


class SyncView(Protocol):
    """The sync engine as routes see it: its status and its peers, as JSON-ready objects."""

    def status(self) -> dict[str, Any]: ...

    def peer_views(self) -> list[dict[str, Any]]: ...

    def peer_heartbeat(self, node_id: str) -> Mapping[str, Any]:
        """The last heartbeat payload heard from ``node_id`` (health, workloads)."""
        ...

    def peer_timeout_s(self) -> float:
        """How long a peer may be silent before it counts as down."""
        ...

    def fleet_events(self) -> FleetEvents | None:
        """The hub's ring of fleet events; None on a node that is not a hub."""
        ...

    def remote_logs(self, wire: bytes, node_site: str | None) -> AsyncIterator[str]:
        """Forward an operator's signed log request to its node; yield the lines it sends."""
        ...

    def resync_view(self) -> dict[str, Any] | None:
        """How a resync of a held store goes; None where the engine watches for none."""
        ...

    async def anti_entropy(self) -> None:
        """Announce this node's state vectors to peers now (they answer with what we lack)."""
        ...


class NetworkView(Protocol):
    """The host's network (``host/network.py``): read anywhere, set through its manager."""

    async def read(self) -> dict[str, Any]: ...

    async def apply(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Set one link (``name``, ``mode`` dhcp|static, ``address``, ``gateway``, ``dns``);
        raises InvalidInputError for a bad request, NetworkConfigError where it cannot."""
        ...


class NodeServices(Protocol):
    @property
    def facts(self) -> NodeFacts: ...

    @property
    def state(self) -> StateStore: ...

    @property
    def store_guard(self) -> StoreHoldView: ...

    @property
    def reconciler(self) -> ReconcilerView: ...

    @property
    def runtime(self) -> ContainerRuntime: ...

    def probe_results(self, workload: str) -> list[dict[str, object]]:
        """The workload's recent health-probe results, oldest first."""
        ...

    def podman_service_restarts(self) -> int | None:
        """How often the node restarted its own Podman service; None if it runs none."""
        ...

    def sync(self) -> SyncView | None:
        """The sync engine; None on a node that does not sync (not enrolled, or it cannot)."""
        ...

    def sync_problem(self) -> str | None:
        """Why an enrolled node does not sync, if it does not."""
        ...

    async def leaf_links(self) -> list[dict[str, Any]]:
        """This node's nats-server leaf links; empty without a nats-server of its own."""
        ...

    def site_manager(self) -> SiteManager | None:
        """Site quorum (leases, placement slots); None until it runs, or where it does not."""
        ...

    async def nats_monitor(self, path: str) -> dict[str, Any] | None:
        """A monitoring endpoint of this node's own nats-server (``/routez``...), or None."""
        ...

    def fleet_trust(self) -> FleetTrust:
        """The fleet's trust anchor; raises NotEnrolledError on a node that is not enrolled."""
        ...

    def authenticate(self, technician: str, pin: str) -> str:
        """The technician's principal, or raise PermissionDeniedError."""
        ...

    def network(self) -> NetworkView:
        """The host's network: addresses, gateway, DNS, link state, and setting them."""
        ...

    def audit_log(self) -> Audit | None:
        """The node's audit log; None where the node runs without one (tests)."""
        ...

    async def witness_alerts(self) -> list[WitnessAlert]:
        """At a hub: nodes whose audit logs were found cut or rewritten, newest last."""
        ...
