"""What a workload's phase is, derived from desired and observed state. Pure."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from noderuntime.reconcile.plan import Backoff, PlanContext, PlannedWorkload, wants_start
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


@dataclass(frozen=True)
class Derived:
    phase: Phase
    message: str = ""
    container_id: str | None = None
    exit_code: int | None = None


def _retry_in(backoff: Backoff, now: float) -> str:
    wait = backoff.next_attempt_at - now
    return f"; retrying in {wait:.0f}s" if wait > 0.5 else ""


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
    if keep is None:
        if last_error:
            return Derived(Phase.PENDING, last_error + _retry_in(backoff, ctx.now))
        return Derived(Phase.PENDING, "creating container")
    if keep.state is ContainerState.RUNNING:
        if health == "unhealthy":
            return Derived(Phase.UNHEALTHY, "health probe failing", cid)
        if health == "starting":
            return Derived(Phase.STARTING, "waiting for the health probe to pass", cid)
        return Derived(Phase.RUNNING, "", cid)
    if keep.state is ContainerState.CREATED:
        return Derived(Phase.STARTING, last_error or "starting", cid)
    if keep.state is ContainerState.PAUSED:
        return Derived(Phase.STOPPED, "paused outside noderuntime", cid)
    code = keep.exit_code
    start, is_restart = wants_start(keep, w, ctx)
    if start:
        if backoff.next_attempt_at > ctx.now and (is_restart or last_error):
            return Derived(
                Phase.FAILED,
                f"CrashLoopBackOff: exited with code {code}{_retry_in(backoff, ctx.now)}",
                cid,
                code,
            )
        return Derived(Phase.STARTING, last_error or "restarting", cid, code)
    if code == 0:
        return Derived(Phase.STOPPED, "completed (exit code 0)", cid, code)
    return Derived(
        Phase.FAILED, f"exited with code {code} (restartPolicy {w.restart_policy})", cid, code
    )
