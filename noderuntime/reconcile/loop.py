"""The level-triggered, single-flight reconcile loop.

Triggers (a state write, a Podman event, a health transition, the timer) only mark the loop
dirty; one pass runs at a time and re-reads desired and observed state fresh, plans, executes,
then records status transitions in the node document. After executing actions it re-plans at
once (observing their effect); an empty plan means converged. Failures back off per workload,
capped; an unreachable Podman backs the whole loop off and marks every workload Unknown.
Nothing one workload does ends a pass for the others: an error in its action or in building
its container is its own failure, with a message and back-off.

Longer than our ~600-line guide: what is left here is the one object whose state every part of
a pass shares (triggers, runtime up/down, holds, health, pulls, status). The pure parts live
beside it: plan, status (phases), outcomes (back-off), records (status writes), desired.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any, Protocol

from noderuntime.aio import raise_if_cancelled
from noderuntime.audit.chain import AuditKind
from noderuntime.audit.log import AuditSink, NullAudit
from noderuntime.config.model import NodeConfig
from noderuntime.crdt import schema
from noderuntime.crdt.state import StateStore
from noderuntime.errors import NodeRuntimeError, RuntimeUnavailableError, SecretError
from noderuntime.reconcile.container_spec import to_container_spec, to_probe_spec
from noderuntime.reconcile.desired import (
    REFUSED_BY_POLICY,
    DesiredMemo,
    DesiredState,
    DesiredWorkload,
    quarantined_workloads,
)
from noderuntime.reconcile.executor import ImagePulling, describe, execute, pull_failed
from noderuntime.reconcile.outcomes import (
    BackoffPolicy,
    Event,
    WorkloadRuntimeState,
    after_failure,
    after_success,
)
from noderuntime.reconcile.placement import PlacementSource, PlacementWant
from noderuntime.reconcile.plan import (
    Action,
    Backoff,
    CreateContainer,
    Plan,
    PlanContext,
    PlannedWorkload,
    StartContainer,
    StopContainer,
    backoff_delay_s,
    plan,
)
from noderuntime.reconcile.pulls import PULL_CONCURRENCY, PULL_STALL_TIMEOUT_S, PullManager
from noderuntime.reconcile.records import WRITING_STATUS, StatusWriter, status_record
from noderuntime.reconcile.secrets import (
    HASH_SEPARATOR,
    SecretFiles,
    SecretMounts,
    dir_key,
    key_of_label,
    mounts_for,
    note_versions,
    plain_hash,
    rotations_to_defer,
    with_secrets,
)
from noderuntime.reconcile.status import Derived, Phase, derive
from noderuntime.runtime.base import (
    ContainerRuntime,
    ContainerState,
    ObservedContainer,
    ProbeSpec,
)
from noderuntime.runtime.images import waiting_for

RUNTIME_RETRY_MAX_S = 30.0
# States in which an instance may still be doing work (fencing waits for these to end).
_INSTANCE_UP = frozenset(
    {ContainerState.RUNNING, ContainerState.PAUSED, ContainerState.STOPPING, ContainerState.UNKNOWN}
)
EVENTS_KEPT = 1000
# Let a burst of triggers (events of one container start) coalesce into one pass.
TRIGGER_COALESCE_S = 0.05


def container_name(node_id: str, workload: str) -> str:
    return f"nr-{node_id}-{workload}"


def read_boot_time() -> float:
    """Host boot time (epoch seconds) from /proc/stat; 0 if unknown."""
    try:
        with open("/proc/stat") as fh:
            for line in fh:
                if line.startswith("btime "):
                    return float(line.split()[1])
    except OSError:
        pass
    return 0.0


class HoldSource(Protocol):
    """Who says the node must hold its containers (the store guard, ``crdt/guard.py``)."""

    @property
    def holding(self) -> str | None: ...  # why the node holds now; None: it does not

    async def check(self, containers: int) -> str | None:
        """Why the node holds, given the number of containers labelled for it."""
        ...


class Reconciler:
    def __init__(
        self,
        *,
        config: NodeConfig,
        state: StateStore,
        runtime: ContainerRuntime,
        log: logging.Logger | None = None,
        clock: Callable[[], float] = time.time,
        boot_time: float | None = None,
        runtime_problem: Callable[[], str | None] | None = None,
        pull_concurrency: int = PULL_CONCURRENCY,
        pull_stall_timeout_s: float | None = PULL_STALL_TIMEOUT_S,
        hold: HoldSource | None = None,
        placement: PlacementSource | None = None,
        fence_stop_timeout_s: int = 1,
        protected_paths: tuple[str, ...] = (),
        loop: bool = True,
        secret_files: SecretFiles | None = None,
        audit: AuditSink | None = None,
    ) -> None:
        """``loop=False``: no loop task; triggers only mark the reconciler :attr:`pending`
        and the caller runs passes with :meth:`reconcile_once` (tests and benchmarks drive it
        step by step, with an injected ``clock``). ``protected_paths``: this node's own
        paths no workload may mount without fleet policy (data dir, sockets)."""
        self._cfg = config
        # Workloads the fleet policy refuses here, and why: audited when one is new or changes.
        self._audit = audit or NullAudit()
        self._refused: dict[str, str] = {}
        self._state = state
        self._runtime = runtime
        self._log = log or logging.getLogger(__name__)
        self._event_listeners: list[Callable[[Event], None]] = []
        self._clock = clock
        self._boot_time = read_boot_time() if boot_time is None else boot_time
        # Why the runtime is down, when someone knows better than the failed call (the
        # supervised Podman service that cannot start).
        self._runtime_problem = runtime_problem
        self._policy = BackoffPolicy(
            initial_s=config.crash_backoff_initial_s,
            max_s=config.crash_backoff_max_s,
            reset_after_s=config.crash_backoff_reset_s,
        )
        self._hold_source = hold
        # Site quorum (noderuntime/site, wired by the daemon): which placed workloads run here.
        self.placement = placement
        self._fence_stop_timeout_s = fence_stop_timeout_s
        # Where secrets' plaintext goes (a tmpfs); None: workloads with secrets stay Pending.
        self._secret_files = secret_files
        # name -> (tmpfs dir key, boxes, owner) of each planned workload with secrets.
        self._secret_needs: dict[str, tuple[str, SecretMounts, str | None]] = {}
        self._fleet_secrets: Mapping[str, Mapping[str, Any]] = {}
        # (secret, version) -> when this node first saw it: where its rotation slot starts.
        self._first_seen: dict[tuple[str, int], float] = {}
        self._deferred: dict[str, str] = {}  # workload -> the label it keeps for now
        # Why this node holds its containers (the store lost its memory): no stop, no remove.
        self.hold: str | None = None
        self._dirty = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._events_task: asyncio.Task[None] | None = None
        self._wl: dict[str, WorkloadRuntimeState] = {}
        self._stopped_by_us: set[str] = set()
        self._enabled_at: dict[str, float] = {}
        self._observed: list[ObservedContainer] = []
        self._desired: DesiredState | None = None
        self._desired_memo = DesiredMemo(
            node_id=config.node_id,
            site=config.site,
            node_labels=config.labels,
            protected_paths=protected_paths,
        )
        # name -> (the DesiredWorkload and secrets digest it was built from, the planner's view).
        self._planned_memo: dict[str, tuple[DesiredWorkload, str, PlannedWorkload]] = {}
        self._loop = loop
        # Desired workloads whose container spec could not be built: name -> (it, why).
        self._broken: dict[str, tuple[DesiredWorkload, str]] = {}
        self._gone_since: dict[str, float] = {}
        self._status = StatusWriter(
            state, log=self._log, on_problem=lambda message: self._event("", "store", message)
        )
        # False until a pass has listed the runtime's containers *and* recorded what it found:
        # until then nobody knows, and what was recorded before the start may be long untrue.
        self.observed_once = False
        # Why passes were asked for, by reason (state, podman-event, pull, ...).
        self.triggers: collections.Counter[str] = collections.Counter()
        self.events: collections.deque[Event] = collections.deque(maxlen=EVENTS_KEPT)
        self.runtime_error: str | None = None
        self.runtime_ok_since: float | None = None
        self.passes = 0
        self.last_pass_at: float | None = None
        self.last_plan: Plan | None = None
        self._runtime_failures = 0
        self._unsubscribe: Callable[[], None] | None = None
        self._listeners: list[Callable[[], None]] = []
        # Told how long each pass took (seconds), e.g. by the metrics endpoint.
        self.pass_timer: Callable[[float], None] | None = None
        self._pulls = PullManager(
            runtime,
            on_done=lambda: self.trigger("pull"),
            concurrency=pull_concurrency,
            stall_timeout_s=pull_stall_timeout_s,
            log=self._log,
        )

    # --- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> Reconciler:
        snap = self._state.snapshot()
        for name, rec in snap.node.status.items():
            self._wl[name] = WorkloadRuntimeState(restarts=rec.restarts)
        self._unsubscribe = self._state.subscribe(self._on_state_change)
        if self._loop:
            self._task = asyncio.create_task(self._run(), name="reconciler")
            self._events_task = asyncio.create_task(self._watch_events(), name="podman-events")
        self.trigger("start")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._unsubscribe:
            self._unsubscribe()
        for task in (self._events_task, self._task):
            if task is not None:
                task.cancel()
        for task in (self._events_task, self._task):
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        # After the loop: no pass is left to start a pull once they are cancelled.
        await self._pulls.aclose()

    def trigger(self, reason: str = "") -> None:
        self.triggers[reason] += 1
        self._dirty.set()

    @property
    def pending(self) -> bool:
        """Something asked for a pass since the last one began."""
        return self._dirty.is_set()

    def _on_state_change(self) -> None:
        # Our own status write changes nothing we plan from (records.py: WRITING_STATUS).
        if WRITING_STATUS.get():
            return
        self.trigger("state")

    def on_pass(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` after every pass (e.g. to refresh health-probe targets)."""
        self._listeners.append(listener)

    # --- health integration ----------------------------------------------------------------

    def set_health(self, workload: str, health: str | None, detail: str | None = None) -> None:
        """Record a probe transition; ``detail`` is the last probe's (truncated) output or error."""
        st = self._wl.setdefault(workload, WorkloadRuntimeState())
        if st.health != health:
            st.health = health
            st.health_detail = detail
            if health:
                suffix = f": {detail}" if detail and health == "unhealthy" else ""
                self._event(workload, "health", f"health is now {health}{suffix}")
            self.trigger("health")

    def probe_targets(self) -> list[tuple[str, ObservedContainer, ProbeSpec]]:
        """(workload, running container, probe) for every desired workload with a probe."""
        if self._desired is None:
            return []
        out = []
        running = {c.workload: c for c in self._observed if c.state is ContainerState.RUNNING}
        for name, dw in self._desired.workloads.items():
            probe = to_probe_spec(dw.workload)
            c = running.get(name)
            if probe is None or c is None or not dw.enabled:
                continue
            if plain_hash(c.spec_hash) == dw.spec_hash:
                out.append((name, c, probe))
        return out

    # --- views for the control API ---------------------------------------------------------

    @property
    def desired(self) -> DesiredState | None:
        """Desired state as the durable documents hold it now, not as of the last pass: views
        must not lag the store (issue 9 §5). Memoised on the store's generation, so a read
        between changes validates nothing; what runs is told apart by spec_hash against
        observed_spec_hash."""
        return self._desired_memo(self._state.snapshot())

    @property
    def live_status(self) -> Mapping[str, schema.StatusRecord]:
        """The records of the last pass, stored or not (what was observed)."""
        return self._status.live

    @property
    def status_write_error(self) -> str | None:
        """Why the latest status write failed; None once one succeeds."""
        return self._status.error

    @property
    def converged(self) -> bool:
        """Nothing left to do, and what was observed is stored."""
        done = self.last_plan is not None and self.last_plan.converged
        return done and self._status.error is None and not self._broken

    @property
    def observed(self) -> list[ObservedContainer]:
        return list(self._observed)

    def runtime_state(self, workload: str) -> WorkloadRuntimeState:
        return self._wl.get(workload, WorkloadRuntimeState())

    # --- the loop --------------------------------------------------------------------------

    async def _run(self) -> None:
        timeout: float = 0.0
        while True:
            raise_if_cancelled()
            try:
                # Not asyncio.wait_for: on 3.11 it can swallow a cancel that arrives as its
                # timeout fires, and then the loop outlives its __aexit__ (seen in tests with
                # a short interval: shutdown hung).
                async with asyncio.timeout(timeout):
                    await self._dirty.wait()
                await asyncio.sleep(TRIGGER_COALESCE_S)
            except TimeoutError:
                pass
            started = time.monotonic()
            try:
                result = await self.reconcile_once()
                if self.pass_timer is not None:
                    self.pass_timer(time.monotonic() - started)
            except asyncio.CancelledError:
                raise
            except Exception:
                # A bug in one pass must not stop reconciliation; the timer retries.
                self._log.exception("reconcile pass failed")
                timeout = self._cfg.reconcile_interval_s
                continue
            timeout = result

    async def reconcile_once(self) -> float:
        """One pass. Returns how long to wait before the next one if nothing triggers."""
        self._dirty.clear()
        self.passes += 1
        now = self._clock()
        self.last_pass_at = now
        # Read before the snapshot: a hold lifted while this pass runs (a resync that just
        # brought the documents back) must not meet the snapshot taken before them.
        held_at_snapshot = self._hold_source.holding if self._hold_source else None
        snap = self._state.snapshot()
        desired = self._desired_memo(snap)
        self._desired = desired
        self._note_refusals(desired)
        self._fleet_secrets = snap.fleet.secrets
        self._first_seen = note_versions(self._first_seen, snap.fleet.secrets, now)
        planned = self._plan_inputs(desired)
        self._note_enabled(snap.node.status, planned, now)

        try:
            observed = await self._runtime.list_containers(self._cfg.node_id)
        except RuntimeUnavailableError as exc:
            return await self._runtime_down(str(exc), planned)
        self._runtime_up()
        await self._check_hold(len(observed), held_at_snapshot)
        try:
            await self._tend_pulls(planned, observed, now)
        except RuntimeUnavailableError as exc:
            return await self._runtime_down(str(exc), planned)

        planned, rotation_wait = self._roll_rotations(planned, observed, now)
        ctx = self._context(now, observed)
        # Containers of a workload that is desired but cannot be built (broken), whose stored
        # spec is invalid here (a newer writer, stricter bounds) or whose record was set aside
        # as unreadable are left as they are: not knowing what is wanted is no reason to destroy.
        spared = set(self._broken) | set(desired.invalid) | quarantined_workloads(snap)
        the_plan = plan(planned, [c for c in observed if c.workload not in spared], ctx)
        self.last_plan = the_plan
        if the_plan.actions:
            await self._execute(the_plan.actions, observed)
            try:
                observed = await self._runtime.list_containers(self._cfg.node_id)
            except RuntimeUnavailableError as exc:
                return await self._runtime_down(str(exc), planned)
            # Re-plan right away: level-triggered, verify the effect of what we just did.
            self._dirty.set()
            self._sweep_secrets(observed)
        self._observed = observed
        stored = await self._record_status(
            planned, observed, self._context(self._clock(), observed), None
        )
        self.observed_once = True
        for listener in self._listeners:
            try:
                listener()
            except Exception:
                self._log.exception("a pass listener failed")
        wait = self._cfg.reconcile_interval_s
        if the_plan.requeue_after_s is not None:
            wait = min(wait, max(0.05, the_plan.requeue_after_s))
        if rotation_wait is not None:
            wait = min(wait, max(0.05, rotation_wait))
        return wait if stored else min(wait, self._status_retry_s())

    def _status_retry_s(self) -> float:
        return backoff_delay_s(self._status.failures, 0.5, RUNTIME_RETRY_MAX_S)

    async def _check_hold(self, containers: int, held_at_snapshot: str | None) -> None:
        if self._hold_source is None:
            return
        hold = await self._hold_source.check(containers)
        if hold is None and containers:
            hold = held_at_snapshot  # lifted after this pass's snapshot: hold it one more pass
        if hold == self.hold:
            return
        if hold is not None:
            self._event("", "store-hold", f"holding every container (no stop, no remove): {hold}")
        else:
            self._event("", "store-hold", "hold lifted: reconciling from the store again")
        self.hold = hold

    def _plan_inputs(self, desired: DesiredState) -> dict[str, PlannedWorkload]:
        """The planner's view of every desired workload, built again only when it changed.

        A workload whose container spec cannot be built (a bug, or a value the conversion
        cannot take) is left out and recorded as broken; the others go on.
        """
        memo: dict[str, tuple[DesiredWorkload, str, PlannedWorkload]] = {}
        broken: dict[str, tuple[DesiredWorkload, str]] = {}
        needs: dict[str, tuple[str, SecretMounts, str | None]] = {}
        for name, dw in desired.workloads.items():
            mounts = mounts_for(dw.workload, self._fleet_secrets, self._cfg.node_id)
            digest = mounts.digest if mounts is not None else ""
            if mounts is not None:
                needs[name] = (dir_key(name, digest), mounts, dw.workload.spec.user)
            cached = self._planned_memo.get(name)
            if cached is not None and cached[0] is dw and cached[1] == digest:
                memo[name] = cached
                continue
            was = self._broken.get(name)
            if was is not None and was[0] is dw:
                broken[name] = was
                continue
            try:
                memo[name] = (dw, digest, self._planned(dw, mounts))
            except Exception as exc:
                why = f"cannot build its container: {type(exc).__name__}: {exc}"
                self._log.exception("workload %s: %s", name, why)
                self._event(name, "error", why)
                broken[name] = (dw, why)
        self._planned_memo = memo
        self._broken = broken
        self._secret_needs = needs
        return {name: w for name, (_, _, w) in memo.items()}

    def _roll_rotations(
        self, planned: dict[str, PlannedWorkload], observed: list[ObservedContainer], now: float
    ) -> tuple[dict[str, PlannedWorkload], float | None]:
        """Keep running containers whose secrets were rotated until this node's slot comes
        (``rotations_to_defer``); how long until the next one is due, if any waits."""
        deferred = rotations_to_defer(
            {name: w.spec_hash for name, w in planned.items()},
            {name: mounts for name, (_, mounts, _) in self._secret_needs.items()},
            {c.workload: c.spec_hash for c in observed if c.state is ContainerState.RUNNING},
            self._fleet_secrets,
            self._first_seen,
            node_id=self._cfg.node_id,
            site=self._cfg.site,
            now=now,
        )
        for name, d in deferred.items():
            planned = {**planned, name: replace(planned[name], spec_hash=d.keep_hash)}
            _, mounts, owner = self._secret_needs[name]
            # Its tmpfs directory stays while it runs (the sweep keeps what is needed).
            self._secret_needs[name] = (key_of_label(name, d.keep_hash) or "", mounts, owner)
            if self._deferred.get(name) != d.keep_hash:
                self._event(
                    name,
                    "secrets",
                    f"secret rotated: the container is replaced in {d.wait_s:.0f} s, this "
                    "node's turn in its site (rotation rolls one node at a time)",
                )
        self._deferred = {name: d.keep_hash for name, d in deferred.items()}
        return planned, min((d.wait_s for d in deferred.values()), default=None)

    def _planned(self, dw: DesiredWorkload, mounts: SecretMounts | None) -> PlannedWorkload:
        container = to_container_spec(
            dw.workload,
            node_id=self._cfg.node_id,
            container_name=container_name(self._cfg.node_id, dw.name),
        )
        spec_hash = dw.spec_hash
        if mounts is not None:
            key = dir_key(dw.name, mounts.digest)
            host_dir = self._secret_files.host_dir(key) if self._secret_files else f"/-/{key}"
            container = with_secrets(container, dw.workload, mounts, host_dir)
            spec_hash = f"{dw.spec_hash}{HASH_SEPARATOR}{mounts.digest}"
        return PlannedWorkload(
            name=dw.name,
            spec_hash=spec_hash,
            container=container,
            restart_policy=dw.workload.spec.restart_policy.value,
            enabled=dw.enabled,
            placed=dw.workload.spec.placement is not None,
        )

    def _prepare_secrets(self, action: Action) -> None:
        """Open and write the secrets a container needs just before it is created (or started
        again after the node or host restarted: the tmpfs is then empty). Raises SecretError:
        the workload shows Pending with why."""
        need = self._secret_needs.get(action.workload)
        if need is None or not isinstance(action, CreateContainer | StartContainer):
            return
        key, mounts, owner = need
        if mounts.problem is not None:
            raise SecretError(mounts.problem)
        if self._secret_files is None:
            raise SecretError("this node cannot open secrets (no tmpfs for them was set up)")
        if isinstance(action, StartContainer) and self._secret_files.present(key):
            return
        self._secret_files.write(key, mounts.files, owner)
        names = ", ".join(sorted({f"{f.name} v{f.version}" for f in mounts.files}))
        self._event(action.workload, "secrets", f"opened secrets for the container: {names}")
        self._audit.record(
            AuditKind.SECRET_DECRYPTED,
            f"node:{self._cfg.node_id}",
            workload=action.workload,
            secrets=sorted({(f.name, f.version) for f in mounts.files}),
            container="create" if isinstance(action, CreateContainer) else "start",
        )

    def _sweep_secrets(self, observed: list[ObservedContainer]) -> None:
        if self._secret_files is None:
            return
        keep = {key for key, _, _ in self._secret_needs.values()}
        for c in observed:
            key = key_of_label(c.workload, c.spec_hash)
            if key is not None:
                keep.add(key)
        try:
            self._secret_files.sweep(keep)
        except OSError as exc:
            self._log.warning("could not remove secrets of removed containers: %s", exc)

    def _note_enabled(
        self,
        status: Mapping[str, schema.StatusRecord],
        planned: Mapping[str, PlannedWorkload],
        now: float,
    ) -> None:
        """Remember when a disabled workload was enabled again (persisted with its status)."""
        for name in set(self._enabled_at) - set(planned):
            del self._enabled_at[name]
        for name, w in planned.items():
            old = status.get(name)
            if not w.enabled:
                self._enabled_at.pop(name, None)
            elif old is not None and not old.enabled:
                self._enabled_at[name] = now
            elif old is not None and old.enabled_at is not None:
                self._enabled_at.setdefault(name, old.enabled_at)

    async def _tend_pulls(
        self,
        planned: Mapping[str, PlannedWorkload],
        observed: list[ObservedContainer],
        now: float,
    ) -> None:
        """Take the outcomes of finished pulls and cancel the pulls nobody needs any more."""
        have = {(c.workload, c.spec_hash) for c in observed}
        waiting = {
            name: w for name, w in planned.items() if w.enabled and (name, w.spec_hash) not in have
        }
        for image, outcome in self._pulls.take_finished().items():
            for name, w in sorted(waiting.items()):
                if w.container.image != image:
                    continue
                st = self._wl.setdefault(name, WorkloadRuntimeState())
                if outcome is None:
                    st.last_error = None
                    self._event(name, "pulled", f"pulled image {image}")
                else:
                    action = CreateContainer(name, w.container, w.spec_hash)
                    self._failed(name, st, action, pull_failed(image, outcome), now)
        for image in self._pulls.running():
            # Loaded by hand (`podman load`) while the pull hangs: no reason to wait for it.
            if await self._runtime.image_present(image):
                self._pulls.cancel(image)
        for image in self._pulls.retain(w.container.image for w in waiting.values()):
            self._log.info("cancelled the pull of image %s: no workload needs it now", image)

    def _context(self, now: float, observed: list[ObservedContainer]) -> PlanContext:
        ids = {c.id for c in observed}
        self._stopped_by_us &= ids
        unhealthy = frozenset(
            c.id
            for c in observed
            if c.state is ContainerState.RUNNING
            and self._wl.get(c.workload, WorkloadRuntimeState()).health == "unhealthy"
        )
        return PlanContext(
            now=now,
            boot_time=self._boot_time,
            backoff={name: st.backoff for name, st in self._wl.items()},
            unhealthy=unhealthy,
            stopped_by_us=frozenset(self._stopped_by_us),
            enabled_at=dict(self._enabled_at),
            pulling=self._pulls.busy(),
            hold=self.hold,
            gone_since=self._note_gone(now, observed),
            slots=self._held_slots(observed),
            fence_stop_timeout_s=self._fence_stop_timeout_s,
        )

    def _held_slots(self, observed: list[ObservedContainer]) -> frozenset[str] | None:
        """Tell the placement source what is wanted and runs; its answer: what is held now."""
        if self.placement is None:
            return None
        if self.runtime_error is None:
            # Only a real listing says what runs: with Podman down, "nothing observed" must not
            # read as "stopped", or the manager would give back a slot whose instance still runs.
            wanted: dict[str, PlacementWant] = {}
            for name, dw in (self._desired.workloads if self._desired else {}).items():
                spec = dw.workload.spec
                if spec.placement is not None and dw.enabled:
                    wanted[name] = PlacementWant(spec.placement.replicas, dict(spec.node_selector))
            running = frozenset(c.workload for c in observed if c.state in _INSTANCE_UP)
            self.placement.update(wanted, running, runtime_ok=True)
        return frozenset(self.placement.held_slots())

    def _note_gone(self, now: float, observed: list[ObservedContainer]) -> dict[str, float]:
        """When each workload with containers here was first seen missing from desired state."""
        desired = self._desired.workloads if self._desired is not None else {}
        gone = {c.workload for c in observed} - set(desired)
        self._gone_since = {name: self._gone_since.get(name, now) for name in gone}
        return dict(self._gone_since)

    async def _execute(
        self, actions: tuple[Action, ...], observed: list[ObservedContainer]
    ) -> None:
        by_id = {c.id: c for c in observed}
        failed: set[str] = set()
        for action in actions:
            name = action.workload
            if name in failed:
                continue  # later steps of a workload depend on its earlier ones
            st = self._wl.setdefault(name, WorkloadRuntimeState())
            now = self._clock()
            try:
                new_id = await execute(
                    action, self._runtime, self._pulls, prepare=self._prepare_secrets
                )
            except ImagePulling as pulling:
                failed.add(name)
                if pulling.started:
                    self._log.info("workload %s: pulling image %s", name, pulling.image)
                self._event(name, "pulling", f"pulling image {pulling.image}")
                continue
            except RuntimeUnavailableError:
                raise
            except NodeRuntimeError as exc:
                failed.add(name)
                self._failed(name, st, action, exc, now)
                continue
            except Exception as exc:
                # A bug, or a value the runtime adapter cannot take: this workload's failure,
                # with a message, never the pass's (every other workload would starve).
                failed.add(name)
                if st.last_error != _internal(exc):
                    self._log.exception("workload %s: %s failed", name, describe(action))
                self._failed(name, st, action, _internal(exc), now)
                continue
            self._succeeded(name, st, action, by_id, new_id, now)

    def _failed(
        self,
        name: str,
        st: WorkloadRuntimeState,
        action: Action,
        error: NodeRuntimeError | str,
        now: float,
    ) -> None:
        event = after_failure(st, action, error, now=now, policy=self._policy)
        if event is not None:  # a repeat is retried quietly with back-off
            self._event(name, *event)
            self._log.warning("workload %s: %s", name, event[1])

    def _succeeded(
        self,
        name: str,
        st: WorkloadRuntimeState,
        action: Action,
        by_id: Mapping[str, ObservedContainer],
        new_id: str | None,
        now: float,
    ) -> None:
        previous = None if isinstance(action, CreateContainer) else by_id.get(action.container_id)
        self._event(
            name,
            *after_success(
                st, action, previous=previous, new_id=new_id, now=now, policy=self._policy
            ),
        )
        match action:
            case StartContainer(container_id=cid):
                self._stopped_by_us.discard(cid)
            case StopContainer(container_id=cid):
                self._stopped_by_us.add(cid)

    async def _runtime_down(self, reason: str, planned: Mapping[str, PlannedWorkload]) -> float:
        problem = self._runtime_problem() if self._runtime_problem is not None else None
        detail = f"{reason} ({problem})" if problem else reason
        if self.runtime_error is None:
            self._log.error("container runtime unavailable: %s", detail)
            self._event("", "runtime", f"container runtime unavailable: {detail}")
        # The detail is served live (status); records get only the stable part, since every
        # change to them is a write and the service's reason can change with each attempt.
        self.runtime_error = detail
        self.runtime_ok_since = None
        self._runtime_failures += 1
        stored = await self._record_status(
            planned, self._observed, self._context(self._clock(), []), reason
        )
        wait = backoff_delay_s(self._runtime_failures, 0.5, RUNTIME_RETRY_MAX_S)
        return wait if stored else min(wait, self._status_retry_s())

    def _runtime_up(self) -> None:
        if self.runtime_error is not None:
            self._log.info("container runtime reachable again")
            self._event("", "runtime", "container runtime reachable again")
        if self.runtime_ok_since is None:
            self.runtime_ok_since = self._clock()
        self.runtime_error = None
        self._runtime_failures = 0

    async def _record_status(
        self,
        planned: Mapping[str, PlannedWorkload],
        observed: list[ObservedContainer],
        ctx: PlanContext,
        runtime_error: str | None,
    ) -> bool:
        """Derive every workload's record and store the ones that changed; False if not stored."""
        keep_by_name: dict[str, ObservedContainer] = {}
        for c in observed:
            w = planned.get(c.workload)
            if w and c.spec_hash == w.spec_hash:
                prev = keep_by_name.get(c.workload)
                if prev is None or c.state is ContainerState.RUNNING:
                    keep_by_name[c.workload] = c
        now = self._clock()
        records: dict[str, schema.StatusRecord] = {}
        for name, w in planned.items():
            st = self._wl.setdefault(name, WorkloadRuntimeState())
            d = derive(
                w,
                keep_by_name.get(name),
                ctx,
                health=st.health,
                last_error=st.last_error,
                runtime_error=runtime_error,
            )
            # Status and rollout gates speak of the spec; the secrets digest is this node's.
            records[name] = self._record(
                name, d, plain_hash(w.spec_hash), w.enabled, now, runtime_error
            )
        for name, (dw, why) in self._broken.items():
            d = Derived(Phase.UNKNOWN if runtime_error else Phase.FAILED, why)
            records[name] = self._record(name, d, dw.spec_hash, dw.enabled, now, runtime_error)
        return await self._status.store(records)

    def _record(
        self,
        name: str,
        d: Derived,
        spec_hash: str,
        enabled: bool,
        now: float,
        runtime_error: str | None,
    ) -> schema.StatusRecord:
        st = self._wl.setdefault(name, WorkloadRuntimeState())
        prev = self._status.previous(name)
        rec = status_record(
            d,
            prev,
            now=now,
            restarts=st.restarts,
            health=st.health,
            spec_hash=spec_hash,
            enabled=enabled,
            enabled_at=self._enabled_at.get(name),
            runtime_down=runtime_error is not None,
        )
        if prev is None or prev.phase != rec.phase:
            change = f"{prev.phase if prev else '-'} -> {rec.phase} {rec.message}".rstrip()
            self._event(name, "phase", change)
        return rec

    async def _watch_events(self) -> None:
        failures = 0
        while True:
            try:
                async for _event in self._runtime.events(self._cfg.node_id):
                    failures = 0
                    self.trigger("podman-event")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # Events are only hints; the timer and passes still run while we reconnect.
                self._log.debug("podman event stream ended: %s", exc)
            raise_if_cancelled()
            failures += 1
            self.trigger("podman-events-lost")
            await asyncio.sleep(backoff_delay_s(failures, 0.5, RUNTIME_RETRY_MAX_S))

    async def restart_container(self, workload: str, container_id: str) -> None:
        """A restart someone asked for: stop with the workload's grace period, then start.

        The container counts as stopped by us while it is down, so a pass that runs in between
        starts it as a plain start instead of counting a crash (no restart count, no back-off).
        """
        desired = self.desired
        dw = desired.workloads.get(workload) if desired else None
        timeout = dw.workload.spec.stop_timeout_s if dw else 10
        self._stopped_by_us.add(container_id)
        try:
            await self._runtime.stop(container_id, timeout)
            # The node may have restarted since the container was created: its tmpfs is empty.
            self._prepare_secrets(StartContainer(workload, container_id, restart=True))
            await self._runtime.start(container_id)
        finally:
            self._stopped_by_us.discard(container_id)
            self.trigger("restart")

    def image_arrived(self, names: Iterable[str]) -> list[str]:
        """Images were loaded by hand: the workloads waiting for one try again now, not when
        their back-off from the failed pull ends. Returns those workloads."""
        wanted = {n: p.container.image for n, (_dw, _, p) in self._planned_memo.items()}
        ready = waiting_for(names, wanted)
        for name in ready:
            self._wl.setdefault(name, WorkloadRuntimeState()).backoff = Backoff()
        if ready:
            self.trigger("image")
        return ready

    def note(self, workload: str, kind: str, message: str) -> None:
        """Record an event that happened outside the loop (e.g. a restart through the API)."""
        self._event(workload, kind, message)

    def on_event(self, listener: Callable[[Event], None]) -> None:
        """Call ``listener`` with every event as it is recorded (e.g. to send fleet events)."""
        self._event_listeners.append(listener)

    def _note_refusals(self, desired: DesiredState) -> None:
        """Audit and report a workload the fleet policy refuses here, once per reason."""
        refused = {n: r for n, r in desired.invalid.items() if r.startswith(REFUSED_BY_POLICY)}
        for name, reason in sorted(refused.items()):
            if self._refused.get(name) != reason:
                actor = f"node:{self._cfg.node_id}"
                self._audit.record(AuditKind.POLICY_REFUSED, actor, workload=name, reason=reason)
                self._event(name, "policy", reason)
        self._refused = refused

    def _event(self, workload: str, kind: str, message: str) -> None:
        event = Event(self._clock(), workload, kind, message)
        self.events.append(event)
        for listener in self._event_listeners:
            try:
                listener(event)
            except Exception:
                self._log.exception("an event listener failed")


def _internal(exc: Exception) -> str:
    return f"internal error: {type(exc).__name__}: {exc}"


def phase_counts(status: Mapping[str, schema.StatusRecord]) -> dict[str, int]:
    counts = {p.value: 0 for p in Phase}
    for rec in status.values():
        counts[rec.phase] = counts.get(rec.phase, 0) + 1
    return counts
