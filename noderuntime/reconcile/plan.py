"""Plan container actions from (desired, observed). Pure: no I/O, no await, no clock reads.

Rules, per workload name:
- Not desired: every container of it is removed, once the workload has been gone for
  ``VANISH_GRACE_S`` (``ctx.gone_since``). Removing is the one action that destroys, and a
  workload can vanish for a moment without anyone deleting it: a CRDT update applied before the
  repair it depends on hides the old value (pycrdt's delete set) until the repair lands, ~1 s
  after a heal. Until then the plan asks to be re-run when the grace ends.
- Desired: keep exactly one container whose spec-hash label equals the desired hash. Others
  (older spec, duplicates) are removed first, so ports and names are free for the new one.
- Disabled by an override: the kept container is stopped, never removed; nothing is created.
- A created-but-never-started container is started.
- An exited container is started again when it was stopped by a host reboot (it finished before
  the host booted), by noderuntime itself, or before the user re-enabled the workload (it
  finished before ``enabled_at``); otherwise its restart policy decides
  (always: yes, on-failure: if the exit code was not 0, never: no).
- A running container whose health probe says unhealthy is restarted unless the policy is never.
- A workload whose image is being pulled (in the background, by the loop) is not created until
  the pull ends; the pull's end triggers a pass, so there is nothing to requeue.
- Starts, restarts and re-creates after a failure wait for the workload's back-off; the plan
  then asks to be re-run when the back-off ends (``requeue_after_s``).
- Held (``ctx.hold`` says why: the store lost its memory, so "not desired" may only mean
  "forgotten"): no container is stopped or removed. Each such action is withheld, and so are
  the actions that depended on it (the create that replaces a container kept, the start of a
  restart); their workloads are named in ``Plan.held``. Starts of stopped containers and
  creates of workloads with no container at all still happen: they destroy nothing.
- Placement-scoped (``spec.placement``) and this node holds none of its slots
  (``ctx.slots``): nothing is created or started, and a running instance is stopped within
  ``ctx.fence_stop_timeout_s`` (SIGTERM, then SIGKILL) -- it is fenced, even while held: another
  node may be about to start its own (docs/architecture.md, "Site quorum").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from noderuntime.runtime.base import ContainerSpec, ContainerState, ObservedContainer


@dataclass(frozen=True)
class CreateContainer:
    workload: str
    spec: ContainerSpec
    spec_hash: str


@dataclass(frozen=True)
class StartContainer:
    workload: str
    container_id: str
    restart: bool  # counts as a restart (the container had been running before)


@dataclass(frozen=True)
class StopContainer:
    workload: str
    container_id: str
    timeout_s: int


@dataclass(frozen=True)
class RemoveContainer:
    workload: str
    container_id: str
    timeout_s: int


Action = CreateContainer | StartContainer | StopContainer | RemoveContainer


@dataclass(frozen=True)
class PlannedWorkload:
    """The planner's view of one desired workload (built from a DesiredWorkload)."""

    name: str
    spec_hash: str
    container: ContainerSpec
    restart_policy: str  # "always" | "on-failure" | "never"
    enabled: bool = True
    # spec.placement is set: runs here only while this node holds one of its slots.
    placed: bool = False


@dataclass(frozen=True)
class Backoff:
    """Back-off after failures of one workload (crash loops, failed creates)."""

    failures: int = 0
    next_attempt_at: float = 0.0


# How long a workload must stay absent from desired state before its containers are removed.
VANISH_GRACE_S = 3.0


@dataclass(frozen=True)
class PlanContext:
    now: float
    boot_time: float
    backoff: Mapping[str, Backoff] = field(default_factory=dict)
    # Container ids whose health probe currently says unhealthy.
    unhealthy: frozenset[str] = frozenset()
    # Container ids noderuntime stopped on purpose (disable, health restart): not crashes.
    stopped_by_us: frozenset[str] = frozenset()
    # Workload -> when this node saw it re-enabled after an override had disabled it (persisted
    # in its status record, so it survives a node restart, unlike ``stopped_by_us``).
    enabled_at: Mapping[str, float] = field(default_factory=dict)
    # Image references whose background pull is under way (or just ended, outcome not taken).
    pulling: frozenset[str] = frozenset()
    # Why the node holds its containers (store lost or damaged), or None: reconcile normally.
    hold: str | None = None
    # Workload -> when the loop first saw it absent from desired state while it had containers.
    # A name missing here counts as gone since ``now`` (nothing is removed before the grace).
    gone_since: Mapping[str, float] = field(default_factory=dict)
    # Placement-scoped workloads whose slot this node holds now; None: no site quorum is wired
    # (every placed workload counts as held, as before placement existed).
    slots: frozenset[str] | None = None
    # SIGTERM -> SIGKILL for an instance fenced off (lease.LeaseTiming.stop_grace_s).
    fence_stop_timeout_s: int = 1


@dataclass(frozen=True)
class Plan:
    actions: tuple[Action, ...]
    requeue_after_s: float | None = None
    # Workloads with actions withheld because the node is held (see the rules above).
    held: tuple[str, ...] = ()

    @property
    def converged(self) -> bool:
        return not self.actions and self.requeue_after_s is None


def backoff_delay_s(failures: int, initial_s: float, max_s: float) -> float:
    """Delay before the next attempt after ``failures`` consecutive failures (1, 2, 4, ...)."""
    if failures <= 0:
        return 0.0
    return float(min(max_s, initial_s * (2 ** min(failures - 1, 30))))


def next_backoff(
    prev: Backoff,
    *,
    now: float,
    ran_for_s: float | None,
    initial_s: float,
    max_s: float,
    reset_after_s: float,
) -> Backoff:
    """Back-off after one more failure; a long enough healthy run forgives earlier ones."""
    failures = 1 if ran_for_s is not None and ran_for_s >= reset_after_s else prev.failures + 1
    return Backoff(
        failures=failures, next_attempt_at=now + backoff_delay_s(failures, initial_s, max_s)
    )


def _rank(c: ObservedContainer, want_hash: str) -> tuple[int, int, float]:
    return (
        0 if c.spec_hash == want_hash else 1,
        0 if c.state is ContainerState.RUNNING else 1,
        -(c.started_at or 0.0),
    )


def wants_start(c: ObservedContainer, w: PlannedWorkload, ctx: PlanContext) -> tuple[bool, bool]:
    """(start it?, is it a restart?) for a container that is not running."""
    if c.state is ContainerState.CREATED:
        return True, False
    if c.id in ctx.stopped_by_us:
        return True, False
    if c.finished_at is None or c.finished_at < ctx.boot_time:
        # Stopped by a reboot (or never ran): bring it back, whatever the policy.
        return True, False
    enabled_at = ctx.enabled_at.get(w.name)
    if enabled_at is not None and c.finished_at < enabled_at:
        # `start` after `stop` means run it, whatever the policy and however it had ended.
        return True, False
    if w.restart_policy == "always":
        return True, True
    if w.restart_policy == "on-failure":
        return (c.exit_code not in (0, None)), True
    return False, False


def plan(
    desired: Mapping[str, PlannedWorkload],
    observed: Sequence[ObservedContainer],
    ctx: PlanContext,
) -> Plan:
    by_workload: dict[str, list[ObservedContainer]] = {}
    for c in observed:
        by_workload.setdefault(c.workload, []).append(c)

    actions: list[Action] = []
    requeue: list[float] = []

    for name in sorted(set(by_workload) - set(desired)):
        gone_for = ctx.now - ctx.gone_since.get(name, ctx.now)
        if gone_for < VANISH_GRACE_S:
            requeue.append(VANISH_GRACE_S - gone_for)
            continue
        for c in by_workload[name]:
            actions.append(RemoveContainer(name, c.id, timeout_s=10))

    for name, w in sorted(desired.items()):
        containers = sorted(by_workload.get(name, []), key=lambda c: _rank(c, w.spec_hash))
        keep = containers[0] if containers and containers[0].spec_hash == w.spec_hash else None
        for c in containers:
            if c is not keep:
                actions.append(RemoveContainer(name, c.id, timeout_s=w.container.stop_timeout_s))
        backoff = ctx.backoff.get(name, Backoff())
        waiting = backoff.next_attempt_at > ctx.now

        if standby(w, ctx):
            if keep is not None and keep.state in (ContainerState.RUNNING, ContainerState.PAUSED):
                timeout = min(w.container.stop_timeout_s, ctx.fence_stop_timeout_s)
                actions.append(StopContainer(name, keep.id, timeout))
            continue

        if not w.enabled:
            if keep is not None and keep.state in (ContainerState.RUNNING, ContainerState.PAUSED):
                actions.append(StopContainer(name, keep.id, w.container.stop_timeout_s))
            continue

        if keep is None:
            if w.container.image in ctx.pulling:
                continue
            if waiting:
                requeue.append(backoff.next_attempt_at - ctx.now)
            else:
                actions.append(CreateContainer(name, w.container, w.spec_hash))
            continue

        if keep.state is ContainerState.RUNNING:
            if keep.id in ctx.unhealthy and w.restart_policy != "never":
                if waiting:
                    requeue.append(backoff.next_attempt_at - ctx.now)
                else:
                    actions.append(StopContainer(name, keep.id, w.container.stop_timeout_s))
                    actions.append(StartContainer(name, keep.id, restart=True))
            continue

        if keep.state in (ContainerState.PAUSED,):
            continue  # someone paused it by hand: respect that
        if keep.state is ContainerState.STOPPING:
            requeue.append(1.0)
            continue

        start, is_restart = wants_start(keep, w, ctx)
        if not start:
            continue
        if waiting:
            requeue.append(backoff.next_attempt_at - ctx.now)
            continue
        actions.append(StartContainer(name, keep.id, restart=is_restart))

    held: tuple[str, ...] = ()
    if ctx.hold is not None:
        fenced = [
            a for a in actions if isinstance(a, StopContainer) and standby(desired[a.workload], ctx)
        ]
        actions, held = withhold_destructive(actions)
        actions = fenced + actions
    return Plan(tuple(actions), min(requeue) if requeue else None, held)


def standby(w: PlannedWorkload, ctx: PlanContext) -> bool:
    """A placed workload whose slot is held by another node (or by nobody) here."""
    return w.placed and ctx.slots is not None and w.name not in ctx.slots


def withhold_destructive(actions: Sequence[Action]) -> tuple[list[Action], tuple[str, ...]]:
    """``actions`` without stops and removes, nor what depends on them; and whom that spares.

    A create of a workload whose old container stays would clash with its name, and a start
    that follows a withheld stop is the second half of a restart.
    """
    held = sorted({a.workload for a in actions if isinstance(a, StopContainer | RemoveContainer)})
    stopped = {a.container_id for a in actions if isinstance(a, StopContainer)}
    kept: list[Action] = []
    for a in actions:
        if isinstance(a, StopContainer | RemoveContainer):
            continue
        if isinstance(a, CreateContainer) and a.workload in held:
            continue
        if isinstance(a, StartContainer) and a.container_id in stopped:
            continue
        kept.append(a)
    return kept, tuple(held)
