"""`noderuntime run`: compose the node's parts and run until told to stop.

Parts are async context managers started in dependency order and stopped in reverse:
state store -> nats-server (if enrolled) -> Podman service (if we supervise one) ->
runtime adapter -> reconciler -> health monitor -> control API. Stopping never stops
workloads: containers belong to Podman's conmon and keep running; the next start adopts them.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import platform
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from noderuntime import __version__
from noderuntime.api.fleetview import DEFAULT_STALE_AFTER_S, FleetSources, collect_nodes
from noderuntime.api.routes import build_routes
from noderuntime.api.server import ADMIN_GROUP, READ_GROUP, ApiServer, host_group
from noderuntime.api.services import NodeFacts
from noderuntime.audit.chain import AuditKind, Checkpoint
from noderuntime.audit.log import Audit
from noderuntime.audit.store import SQLiteAuditStore
from noderuntime.config.model import NodeConfig, NodePaths, check_socket_path
from noderuntime.crdt import schema
from noderuntime.crdt.check import is_damaged, set_aside
from noderuntime.crdt.guard import StoreGuard
from noderuntime.crdt.mark import MARK_FILE, Hold, HoldKind
from noderuntime.crdt.state import StateStore
from noderuntime.crdt.store import SQLiteStore
from noderuntime.errors import ConfigError, NotFoundError, StoreError
from noderuntime.fleetops.view import rollout_step_notes, site_summaries
from noderuntime.host.reserve import keep_reserve, release_if_full
from noderuntime.identity.keys import Identity, load_key
from noderuntime.identity.principals import node_principal
from noderuntime.identity.sealing import (
    SEAL_KEY_FILE,
    load_or_create_key,
    public_key_text,
    public_raw,
)
from noderuntime.identity.technicians import TechnicianStore
from noderuntime.node.secretfs import SecretFS
from noderuntime.node.services import RunningNodeServices
from noderuntime.reconcile.loop import Reconciler, phase_counts
from noderuntime.rollout.record import in_progress
from noderuntime.runtime.base import ContainerState
from noderuntime.runtime.health import HealthMonitor
from noderuntime.runtime.podman import PodmanRuntime
from noderuntime.runtime.service import PodmanService
from noderuntime.site.manager import SiteManager

if TYPE_CHECKING:
    from noderuntime.fleet.trust import FleetTrust
    from noderuntime.node.metrics import Sample
    from noderuntime.sync.engine import SyncEngine
    from noderuntime.sync.natsserver import NatsServer
    from noderuntime.sync.resync import ResyncWatch

# Checked without importing the fleet package: a node that is not enrolled never loads TLS,
# NATS or sync code (about 20 MB of RSS on an appliance that runs alone).
# SIGTERM to exit; systemd waits 90 s by default before SIGKILL.
SHUTDOWN_TIMEOUT_S = 20.0
FLEET_TRUST_FILE = Path("fleet") / "trust.json"
LOCK_FILE = "node.lock"


class Node:
    """One running node. Constructing it starts nothing; :meth:`run` does."""

    def __init__(
        self,
        data_dir: Path,
        config: NodeConfig,
        *,
        log: logging.Logger | None = None,
        config_file: Path | None = None,
    ) -> None:
        self.config = config
        self.paths = NodePaths(data_dir, config, config_file=config_file)
        self.log = log or logging.getLogger("noderuntime")
        self.started_at = time.time()
        self.identity: Identity | None = None
        self.seal_public: str | None = None
        self.secret_fs: SecretFS | None = None
        self.state: StateStore | None = None
        # Holds the containers while the store has lost what it had (crdt/mark.py).
        self.store_guard: StoreGuard | None = None
        self.runtime: PodmanRuntime | None = None
        self.podman_service: PodmanService | None = None
        self.reconciler: Reconciler | None = None
        self.health: HealthMonitor | None = None
        self.api: ApiServer | None = None
        self.audit: Audit | None = None
        self.update_store: SQLiteStore | None = None
        # Site quorum: who runs placement-scoped workloads (None until started).
        self.site: SiteManager | None = None
        # Fleet enrolment (None: not enrolled, the node runs alone) and its own nats-server
        # (None: not enrolled, or natsUrl points at an external NATS).
        self.fleet: FleetTrust | None = None
        self.nats: NatsServer | None = None
        # The replication engine (None: not enrolled, no sync).
        self.sync: SyncEngine | None = None
        # Why sync is off although the node is enrolled (shown in `status`).
        self.sync_problem: str | None = None
        self._lifting: asyncio.Task[None] | None = None  # a hold being lifted by a resync
        self.technicians = TechnicianStore(data_dir)
        self._publishing: set[asyncio.Task[None]] = set()
        self.ready = asyncio.Event()
        # Set when the node must exec itself again once stopped (a rekey installed a new key).
        self.reexec = False

    @property
    def nats_url(self) -> str | None:
        """The NATS URL this node syncs through, credentials included (a secret: don't log it).

        The own nats-server's ``nats://TOKEN@127.0.0.1:PORT`` (nats-py takes a token from the
        URL), else ``natsUrl`` from the config, else None (not enrolled: no sync).
        """
        if self.nats is not None:
            return self.nats.client_url_with_token
        if self.fleet is not None and self.config.nats_url:
            return self.config.nats_url
        return None

    @property
    def podman_socket(self) -> Path:
        return self.paths.podman_socket(self.config)

    def _protected_paths(self) -> tuple[str, ...]:
        """This node's own paths that no workload may mount without fleet policy: a mount
        of any of them gives the container the node's key, its store, its API or Podman."""
        paths = (
            self.paths.data_dir,
            self.paths.config_file,
            self.paths.api_socket,
            self.podman_socket,
        )
        return tuple(sorted({os.path.abspath(p) for p in paths}))

    async def run(self, stop: asyncio.Event) -> None:
        check_socket_path(self.paths.api_socket)
        check_socket_path(self.podman_socket)
        # Before anything else: starting the Podman service alone would replace the socket a
        # running node's Podman listens on.
        async with contextlib.AsyncExitStack() as stack:
            stack.callback(os.close, acquire_node_lock(self.paths.data_dir))
            # Before any database is opened: on a full disk, opening one fails (host/reserve.py).
            released = release_if_full(self.paths.data_dir)
            if released is not None:
                self.log.error("%s", released)
            self.identity = load_key(self.paths.identity_file, node_principal(self.config.node_id))
            seal_key = load_or_create_key(self.paths.data_dir / SEAL_KEY_FILE)
            self.seal_public = public_key_text(public_raw(seal_key))
            self.secret_fs = SecretFS(self.paths.data_dir, seal_key, self.config.node_id)
            self.secret_fs.setup()
            stack.callback(self.secret_fs.teardown)
            # Before the state store, so it closes after it: parts record until they stop.
            self.audit = await stack.enter_async_context(self._audit_log())
            audit = self.audit
            audit.record(
                AuditKind.NODE_STARTED, node_principal(self.config.node_id), version=__version__
            )
            state, unreadable = await self._enter_state(stack)
            self.state = state
            audit.on_checkpoint = self._publish_checkpoint
            stack.callback(setattr, audit, "on_checkpoint", None)
            audit.outbox = self.update_store
            stack.callback(setattr, audit, "outbox", None)
            # Before anything writes: the store is judged as it was found.
            self.store_guard = await stack.enter_async_context(
                StoreGuard(
                    self.paths.data_dir / MARK_FILE,
                    self.state,
                    log=self.log.getChild("store"),
                    hold=unreadable,
                )
            )
            if released is None:
                keep_reserve(self.paths.data_dir)
            await self._record_node_info()
            # The checkpoint signed at the last shutdown reaches hubs now, not 15 minutes on.
            last_cp = audit.last_checkpoint
            if last_cp is not None and (
                state.read(state.node_doc, schema.audit_checkpoint) != last_cp.to_dict()
            ):
                self._publish_checkpoint(last_cp)
            if (self.paths.data_dir / FLEET_TRUST_FILE).is_file():
                from noderuntime.errors import CredentialError
                from noderuntime.fleet.trust import FleetTrust
                from noderuntime.sync.natsconfig import settings_for_node
                from noderuntime.sync.natsserver import NATS_SUBDIR, NatsServer

                try:
                    self.fleet = FleetTrust.load(self.paths.data_dir)
                except CredentialError as exc:
                    # Expired, or a clock far behind (dead RTC battery): the workloads must
                    # still run, so run local-only rather than not at all.
                    self.sync_problem = (
                        f"{exc}; sync is off until this is fixed and the node restarts"
                    )
                    self.log.error("running local-only: %s", self.sync_problem)
                if self.fleet is not None and self.config.nats_url is None:
                    self.nats = await stack.enter_async_context(
                        NatsServer(
                            settings_for_node(self.config, self.fleet, self.paths.data_dir),
                            self.paths.data_dir / NATS_SUBDIR,
                            log=self.log.getChild("nats-server"),
                        )
                    )
            else:
                self.log.info("not enrolled in a fleet: no sync (see `noderuntime fleet`)")
            if self.config.podman_socket is None:
                self.podman_service = await stack.enter_async_context(
                    PodmanService(
                        str(self.podman_socket),
                        podman_bin=self.config.podman_bin,
                        log=self.log.getChild("podman-service"),
                    )
                )
            self.runtime = PodmanRuntime(str(self.podman_socket))
            stack.push_async_callback(self.runtime.close)
            self.site = await stack.enter_async_context(self._site_manager(stack))
            self.reconciler = await stack.enter_async_context(
                Reconciler(
                    config=self.config,
                    state=self.state,
                    runtime=self.runtime,
                    log=self.log.getChild("reconcile"),
                    runtime_problem=self._podman_service_problem,
                    hold=self.store_guard,
                    pull_stall_timeout_s=self.config.image_pull_stall_timeout_s,
                    placement=self.site,
                    fence_stop_timeout_s=self.site.timing.stop_grace_s,
                    secret_files=self.secret_fs,
                    audit=audit,
                    protected_paths=self._protected_paths(),
                )
            )
            reconciler = self.reconciler
            if released is not None:
                reconciler.note("", "store", released)
            if self.podman_service is not None:
                # Recover as soon as a late Podman serves, not at the loop's next back-off.
                self.podman_service.on_ready = lambda: reconciler.trigger("podman-service")
            self.health = await stack.enter_async_context(
                HealthMonitor(
                    runtime=self.runtime,
                    targets=reconciler.probe_targets,
                    on_change=reconciler.set_health,
                    log=self.log.getChild("health"),
                )
            )
            reconciler.on_pass(self.health.refresh)
            if self.fleet is not None and self.nats_url is not None:
                from noderuntime.sync.engine import SyncEngine, SyncSettings

                self.sync = await stack.enter_async_context(
                    SyncEngine(
                        self.state,
                        self.fleet,
                        self.identity,
                        SyncSettings(
                            fleet=self.fleet.fleet_id,
                            node_id=self.config.node_id,
                            site=self.config.site,
                            role=self.config.role.value,
                            sovereign=self.config.sovereign,
                        ),
                        nats_url=self.nats_url,
                        log=self.log.getChild("sync"),
                        health=self._health_summary,
                        # Our own server's leaf links tell the engine of a heal at once; with
                        # an external NATS (natsUrl) it relies on heartbeats.
                        monitor_port=self.nats.monitor_port if self.nats is not None else None,
                        resync=self._resync_watch(),
                        log_reader=self._remote_log_lines,
                        log_record=self._record_remote_read,
                        audit=audit,
                    )
                )
            if self.fleet is not None:
                from noderuntime.node.rekey import RekeyWatch
                from noderuntime.node.revocations import RevocationWatch

                await stack.enter_async_context(
                    RevocationWatch(
                        self.state,
                        self.fleet,
                        self.nats,
                        log=self.log.getChild("revocation"),
                        audit=audit,
                    )
                )

                def reexec() -> None:  # a new key is in everything signed: start afresh
                    self.reexec = True
                    stop.set()

                await stack.enter_async_context(
                    RekeyWatch(
                        self.state,
                        self.fleet,
                        self.config.node_id,
                        on_installed=reexec,
                        log=self.log.getChild("rekey"),
                    )
                )
            if self.config.role.value == "hub":
                from noderuntime.node.auditwitness import AuditWitness
                from noderuntime.node.rollouts import RolloutDriver

                await stack.enter_async_context(
                    AuditWitness(
                        self.state,
                        audit,
                        own_doc=self.state.node_doc,
                        log=self.log.getChild("audit-witness"),
                    )
                )

                # Every hub drives the rollouts it holds; see node/rollouts.py for why two may.
                await stack.enter_async_context(
                    RolloutDriver(
                        self.state,
                        actor=node_principal(self.config.node_id),
                        log=self.log.getChild("rollouts"),
                    )
                )
            if self.sync is not None:
                sync = self.sync
                reconciler.on_event(
                    lambda e: sync.publish_event(e.workload, e.kind, e.message, e.ts)
                )
                if sync.fleet_events is not None:
                    stack.callback(self.state.subscribe(self._rollout_step_watch(sync)))
            services = RunningNodeServices(
                facts=self._facts(),
                state=self.state,
                store_guard=self.store_guard,
                reconciler=reconciler,
                runtime=self.runtime,
                health=self.health,
                technician_auth=self.technicians.verify,
                podman_service=self.podman_service,
                sync_engine=self.sync,
                fleet=self.fleet,
                nats=self.nats,
                why_no_sync=self.sync_problem,
                site=self.site,
                audit=audit,
            )
            self.api = await stack.enter_async_context(
                ApiServer(
                    self.paths.api_socket,
                    build_routes(services),
                    authenticate=services.authenticate,
                    log=self.log.getChild("api"),
                    audit=audit,
                    read_gid=host_group(READ_GROUP),
                    admin_gid=host_group(ADMIN_GROUP),
                )
            )
            if self.config.metrics_address is not None:
                # Imported only here: a node without metrics does not load prometheus-client.
                from noderuntime.node.metrics import MetricsServer

                metrics = await stack.enter_async_context(
                    MetricsServer(
                        self.config.metrics_address,
                        self._metrics_sample,
                        log=self.log.getChild("metrics"),
                    )
                )
                reconciler.pass_timer = metrics.pass_seconds.observe
            self.log.info(
                "node %s (site %s) ready: control API on %s, Podman on %s",
                self.config.node_id,
                self.config.site,
                self.paths.api_socket,
                self.podman_socket,
            )
            self.ready.set()
            await stop.wait()
            self.log.info("stopping (workloads keep running)")

    def _site_manager(self, stack: contextlib.AsyncExitStack) -> SiteManager:
        """Leases in the site cluster's JetStream; a node alone in its site places locally."""
        from noderuntime.config.model import Role
        from noderuntime.reconcile.desired import node_match_labels
        from noderuntime.site.kv import LeaseStore, MemoryLeaseStore, NatsLeaseStore
        from noderuntime.site.lease import LeaseTiming

        timing = LeaseTiming()
        store: LeaseStore
        alone = not (self.config.clustered and self.nats_url is not None)
        if alone:
            store = MemoryLeaseStore()
        else:
            assert self.nats_url is not None
            nats_store = NatsLeaseStore(
                self.nats_url,
                site=self.config.site,
                cluster_size=len(self.config.cluster_peers) + 1,
                ttl_s=timing.ttl_s,
            )
            stack.push_async_callback(nats_store.close)
            store = nats_store

        def changed() -> None:
            if self.reconciler is not None:
                self.reconciler.trigger("placement")

        return SiteManager(
            node_id=self.config.node_id,
            # Selectors match the built-in labels too (noderuntime.io/node, .../site), as the
            # reconciler's own selection does: without them a site-scoped singleton selected by
            # site matched no member and every node stood by.
            labels=node_match_labels(self.config.node_id, self.config.site, self.config.labels),
            store=store,
            on_change=changed,
            witness=self.config.role is Role.WITNESS,
            alone=alone,
            timing=timing,
            log=self.log.getChild("site"),
        )

    def _state_store(self) -> StateStore:
        assert self.identity is not None
        self.update_store = SQLiteStore(self.paths.state_db)
        return StateStore(
            self.update_store,
            self.identity,
            node_id=self.config.node_id,
            site=self.config.site,
            compact_every=self.config.compact_every_updates,
            log=self.log.getChild("state"),
        )

    async def _enter_state(
        self, stack: contextlib.AsyncExitStack
    ) -> tuple[StateStore, Hold | None]:
        """Open the store. One that cannot be opened at all is set aside (kept for a look)
        and the node starts on an empty one, held: it must not stop its containers, and its
        peers may give its documents back. A condition that may pass still stops the start."""
        try:
            return await stack.enter_async_context(self._state_store()), None
        except StoreError as exc:
            if not is_damaged(exc):
                raise
            aside = set_aside(self.paths.state_db)
            reason = (
                f"state.db could not be opened ({exc}); it was set aside as {aside.name} and "
                "the node started with an empty store"
            )
        self.log.error("%s", reason)
        state = await stack.enter_async_context(self._state_store())
        return state, Hold(HoldKind.UNREADABLE, reason, time.time())

    def _resync_watch(self) -> ResyncWatch:
        """The watch that lifts a store hold once a hub gave this node's documents back."""
        from noderuntime.sync.resync import Baseline, ResyncWatch

        state, guard = self.state, self.store_guard
        assert state is not None and guard is not None
        mark = guard.mark
        return ResyncWatch(
            (state.fleet_doc, state.site_doc, state.node_doc),
            Baseline(mark.units, mark.clocks) if mark is not None else Baseline(),
            holding=lambda: guard.hold is not None,
            on_done=self._resynced,
        )

    def _resynced(self, peer: str) -> None:
        async def lift() -> None:
            assert self.store_guard is not None and self.reconciler is not None
            await self.store_guard.release(f"resync: {peer} gave this node's documents back")
            self.reconciler.trigger("resync")

        self._lifting = asyncio.create_task(lift(), name="store-resync")

    def _podman_service_problem(self) -> str | None:
        svc = self.podman_service
        if svc is None or svc.healthy or svc.last_error is None:
            return None
        return f"supervised Podman service: {svc.last_error}"

    async def _remote_log_lines(
        self, workload: str, tail: int | None, follow: bool
    ) -> AsyncIterator[str]:
        """A workload's log lines for a remote read (sync/remotelogs.py): its newest container."""
        rec, runtime = self.reconciler, self.runtime
        assert rec is not None and runtime is not None
        cands = [c for c in rec.observed if c.workload == workload]
        if not cands:
            raise NotFoundError(f"workload {workload!r} has no container on {self.config.node_id}")
        cands.sort(key=lambda c: c.state is not ContainerState.RUNNING)
        async for line in runtime.logs(cands[0].id, follow=follow, tail=tail):
            yield line

    def _record_remote_read(self, workload: str, operator: str, via: str) -> None:
        # The event is what the TUI and `events` read; the audit entry is what lasts.
        if self.audit is not None:
            self.audit.record(AuditKind.REMOTE_LOG_READ, operator, workload=workload, via=via)
        if self.reconciler is not None:
            self.reconciler.note(workload, "remote-logs", f"logs read by {operator} via {via}")

    def _audit_log(self) -> Audit:
        assert self.identity is not None
        return Audit(
            SQLiteAuditStore(self.paths.audit_db),
            node=self.config.node_id,
            sign=self.identity.sign,
            public_key=self.identity.public_bytes,
            log=self.log.getChild("audit"),
            # API writes' entries ride state commits; a crash may leave some only there.
            outbox_path=self.paths.state_db,
        )

    def _publish_checkpoint(self, cp: Checkpoint) -> None:
        """Put the newest checkpoint in this node's document, where hubs witness it."""
        state = self.state
        if state is None:
            return

        async def publish() -> None:
            try:
                await state.write(
                    state.node_doc,
                    lambda doc: schema.put_audit_checkpoint(doc, cp.to_dict()),
                    summary=f"audit checkpoint at entry {cp.seq}",
                )
            except StoreError as exc:
                self.log.warning("audit checkpoint not published: %s", exc)

        task = asyncio.create_task(publish(), name="audit-checkpoint-publish")
        self._publishing.add(task)
        task.add_done_callback(self._publishing.discard)

    def _rollout_step_watch(self, sync: SyncEngine) -> Callable[[], None]:
        """At a hub: each rollout step newly in the fleet document becomes a fleet event."""
        from noderuntime.sync.fleetevents import FleetEvent

        state, ring = self.state, sync.fleet_events
        assert state is not None and ring is not None
        seen = set(state.snapshot().fleet.rollout_steps)

        def changed() -> None:
            fleet = state.snapshot().fleet
            new = set(fleet.rollout_steps) - seen
            if not new:
                return
            seen.update(new)
            now = time.time()
            for workload, words in rollout_step_notes(new, fleet.rollout_steps, fleet.rollouts):
                ring.add(
                    FleetEvent(
                        now,
                        now,
                        self.config.node_id,
                        self.config.site,
                        workload,
                        "rollout",
                        "rollout",
                        words,
                    )
                )

        return changed

    def fleet_sources(self) -> FleetSources:
        """What the fleet view reads here (routes and metrics)."""
        state, rec = self.state, self.reconciler
        assert state is not None and rec is not None
        sync = self.sync

        def own_status() -> dict[str, schema.StatusRecord]:
            return {**state.snapshot().node.status, **rec.live_status}

        return FleetSources(
            node_id=self.config.node_id,
            site=self.config.site,
            role=self.config.role.value,
            labels=dict(self.config.labels),
            state=state,
            peers=lambda: sync.peer_views() if sync is not None else [],
            heartbeat=lambda ident: (
                sync.peers[ident].heartbeat if sync is not None and ident in sync.peers else {}
            ),
            stale_after_s=lambda: (
                sync.table.timeout_s if sync is not None else DEFAULT_STALE_AFTER_S
            ),
            own_status=own_status,
        )

    async def _metrics_sample(self) -> Sample:
        from noderuntime.node.metrics import Sample

        state, rec = self.state, self.reconciler
        assert state is not None and rec is not None
        stats = await state.store_stats()
        status = {**state.snapshot().node.status, **rec.live_status}
        sync = self.sync.status() if self.sync is not None else None
        sites: list[dict[str, Any]] | None = None
        rollouts: dict[str, dict[str, Any]] | None = None
        if self.config.role.value == "hub":
            now = time.time()
            sites = site_summaries(collect_nodes(self.fleet_sources(), now), now=now, rollouts=None)
            rollouts = in_progress(state.snapshot().fleet)
        return Sample(
            node=self.config.node_id,
            site=self.config.site,
            phases=phase_counts(status),
            restarts={name: st.restarts for name, st in status.items()},
            probes=dict(self.health.result_counts) if self.health is not None else {},
            store_size_bytes=stats.size_bytes,
            store_commits=stats.commits,
            store_commit_seconds=stats.commit_seconds,
            sync_counters=dict(sync["counters"]) if sync is not None else None,
            sync_rejections=dict(sync["rejections"]) if sync is not None else {},
            peers_up=int(sync["peers_up"]) if sync is not None else 0,
            fleet_sites=sites,
            rollouts=rollouts,
        )

    def _health_summary(self) -> dict[str, Any]:
        """What heartbeats say about this node (ephemeral, never a CRDT write)."""
        rec, state = self.reconciler, self.state
        if rec is None or state is None:
            return {}
        return {
            "health": "ok" if rec.runtime_error is None else "degraded",
            "workloads": phase_counts(state.snapshot().node.status),
        }

    def _facts(self) -> NodeFacts:
        return NodeFacts(
            node_id=self.config.node_id,
            site=self.config.site,
            role=self.config.role.value,
            started_at=self.started_at,
            data_dir=self.paths.data_dir,
            api_socket=self.paths.api_socket,
            podman_socket=self.podman_socket,
            labels=dict(self.config.labels),
        )

    async def _record_node_info(self) -> None:
        assert self.state is not None
        info: dict[str, Any] = {
            "nodeId": self.config.node_id,
            "site": self.config.site,
            "role": self.config.role.value,
            "labels": dict(self.config.labels),
            "version": __version__,
            "hostname": platform.node(),
        }
        if self.seal_public is not None:
            # Operators seal secrets to this key; the node's signature on this record binds it
            # to the node's enrolled identity (docs/architecture.md, "Secrets").
            info["sealKey"] = self.seal_public
        if dict(self.state.snapshot().node.info) != info:
            await self.state.write(
                self.state.node_doc,
                lambda doc: schema.put_info(doc, info),
                summary=f"node info (version {__version__})",
            )


def acquire_node_lock(data_dir: Path) -> int:
    """Hold an exclusive lock on ``data_dir`` (released when the returned fd or process goes).

    A flock, not a pid file: the kernel drops it when the holder dies, even on kill -9, so a
    crashed node never blocks its successor.
    """
    path = data_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        raise ConfigError(
            f"a node is already running in {data_dir} (pid {holder}); "
            "stop it first or use a different --data-dir"
        ) from None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def run_forever(
    data_dir: Path, config: NodeConfig, log: logging.Logger, *, config_file: Path | None = None
) -> None:
    """Run the node until SIGTERM/SIGINT."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        runner = asyncio.create_task(node.run(stop))
        await asyncio.wait(
            [runner, asyncio.create_task(stop.wait())], return_when="FIRST_COMPLETED"
        )
        if not runner.done():
            # Shutdown must end: a part stuck on a dead socket would otherwise keep the node
            # (and its supervised children) alive until someone sends SIGKILL.
            done, _ = await asyncio.wait([runner], timeout=SHUTDOWN_TIMEOUT_S)
            if not done:
                _report_stuck_shutdown(log)
                os._exit(1)
        runner.result()

    node = Node(data_dir, config, log=log, config_file=config_file)
    asyncio.run(main())
    # Threads still blocked in a read (a log stream, a Podman call) must not hold the exit.
    sys.stdout.flush()
    sys.stderr.flush()
    if node.reexec:
        # The same command, the same process id (systemd and supervisors see no exit).
        frozen = getattr(sys, "frozen", False)  # a PyInstaller binary: argv[0] is itself
        os.execv(sys.executable, [sys.executable, *sys.argv[1:]] if frozen else sys.orig_argv)
    os._exit(0)


def _report_stuck_shutdown(log: logging.Logger) -> None:
    log.error("shutdown took longer than %ss; exiting anyway. Still running:", SHUTDOWN_TIMEOUT_S)
    for task in asyncio.all_tasks():
        frames = task.get_stack(limit=3)
        where = " <- ".join(f"{f.f_code.co_name}:{f.f_lineno}" for f in frames)
        log.error("  task %s at %s", task.get_name(), where or "?")
    logging.shutdown()
