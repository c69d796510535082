"""What a workload's phase is, derived from desired and observed state. Pure."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from noderuntime.reconcile.plan import (
    Backoff,
    PlanContext,
    PlannedWorkload,
    standby,
    wants_start,
)
from noderuntime.runtime.base import ContainerState, ObservedContainer


class Phase(enum.Enum):
    """Workload phases (wire and disk values: never renumber or rename)."""

    PENDING = "Pending"
    STARTING = "Starting"
    RUNNING = "Running"
    UNHEALTHY = "Unhealthy"
    FAILED = "Failed"
    STOPPED = "Stopped"
    # Podman cannot be reached, so nobody can say what runs.
    UNKNOWN = "Unknown"
    # Placement-scoped: eligible here, but another node of the site holds the instance.
    STANDBY = "Standby"


@dataclass(frozen=True)
class Derived:
    phase: Phase
    message: str = ""
    container_id: str | None = None
    exit_code: int | None = None
    # When the next attempt is due (epoch seconds). Kept apart from ``message`` so the
    # persisted record stays the same for the whole back-off: a countdown in it would make
    # every pass a status transition, i.e. a signed CRDT write.
    retry_at: float | None = None


def _retry_at(backoff: Backoff) -> float | None:
    return backoff.next_attempt_at if backoff.failures > 0 else None


def derive(
    w: PlannedWorkload,
    keep: ObservedContainer | None,
    ctx: PlanContext,
    *,
    health: str | None,
    last_error: str | None,
    runtime_error: str | None,
) -> Derived:
    """The phase of desired workload ``w`` whose current container (matching hash) is ``keep``."""
    if runtime_error:
        return Derived(Phase.UNKNOWN, f"container runtime unavailable: {runtime_error}")
    cid = keep.id if keep else None
    backoff = ctx.backoff.get(w.name, Backoff())
    if not w.enabled:
        return Derived(Phase.STOPPED, "disabled by override", cid)
    if standby(w, ctx):
        if keep is not None and keep.state is ContainerState.RUNNING:
            return Derived(Phase.STANDBY, "slot not held here: stopping the instance", cid)
        return Derived(Phase.STANDBY, "another node of the site holds the instance", cid)
    if keep is None:
        if w.container.image in ctx.pulling:
            # No progress figures: the record must not change while the pull runs.
            return Derived(Phase.PENDING, f"pulling image {w.container.image}")
        if last_error:
            return Derived(Phase.PENDING, last_error, retry_at=_retry_at(backoff))
        return Derived(Phase.PENDING, "creating container")
    if keep.state is ContainerState.RUNNING:
        if health == "unhealthy":
            return Derived(Phase.UNHEALTHY, "health probe failing", cid)
        if health == "starting":
            return Derived(Phase.STARTING, "waiting for the health probe to pass", cid)
        return Derived(Phase.RUNNING, "", cid)
    if keep.state is ContainerState.CREATED:
        if last_error:
            # A start refused (an OCI runtime error): say so and when it is tried again,
            # never "Starting" for as long as the cause lasts.
            return Derived(
                Phase.FAILED,
                f"could not start the container: {last_error}",
                cid,
                retry_at=_retry_at(backoff),
            )
        return Derived(Phase.STARTING, "starting", cid)
    if keep.state is ContainerState.PAUSED:
        return Derived(Phase.STOPPED, "paused outside noderuntime", cid)
    code = keep.exit_code
    start, is_restart = wants_start(keep, w, ctx)
    if start:
        waiting = backoff.next_attempt_at > ctx.now
        if waiting and last_error:
            return Derived(
                Phase.FAILED,
                f"could not start the container: {last_error}",
                cid,
                code,
                retry_at=_retry_at(backoff),
            )
        if waiting and is_restart:
            return Derived(
                Phase.FAILED,
                f"CrashLoopBackOff: exited with code {code}",
                cid,
                code,
                retry_at=_retry_at(backoff),
            )
        return Derived(Phase.STARTING, last_error or "restarting", cid, code)
    if code == 0:
        return Derived(Phase.STOPPED, "completed (exit code 0)", cid, code)
    return Derived(
        Phase.FAILED, f"exited with code {code} (restartPolicy {w.restart_policy})", cid, code
    )
