"""What an action's outcome does to the loop's memory of a workload. Pure: no I/O, no clock.

- A success clears the last error. A create starts the workload over (no restarts, no
  back-off); a restart counts one and backs off as a crash (a long enough run forgives).
- A failure records its message and backs off: up to the crash-loop cap, or, for a create and
  for a start that is not a restart (a container that was never running, e.g. refused by the
  OCI runtime), up to ``CREATE_BACKOFF_MAX_S``: those causes are the host's or the image's and
  go away while someone watches. The same failure again is retried quietly (no new event).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from noderuntime.errors import ImageNotFoundError, NodeRuntimeError
from noderuntime.reconcile.executor import describe
from noderuntime.reconcile.plan import (
    Action,
    Backoff,
    CreateContainer,
    RemoveContainer,
    StartContainer,
    StopContainer,
    next_backoff,
)
from noderuntime.runtime.base import ObservedContainer

CREATE_BACKOFF_MAX_S = 30.0


@dataclass(frozen=True)
class Event:
    """Something that happened to a workload, for people (TUI, `noderuntime events`)."""

    ts: float
    workload: str
    kind: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "ts": self.ts,
            "workload": self.workload,
            "kind": self.kind,
            "message": self.message,
        }


@dataclass
class WorkloadRuntimeState:
    """What the loop remembers about one workload between passes (not persisted)."""

    backoff: Backoff = field(default_factory=Backoff)
    restarts: int = 0
    last_error: str | None = None
    health: str | None = None
    health_detail: str | None = None


@dataclass(frozen=True)
class BackoffPolicy:
    initial_s: float
    max_s: float
    reset_after_s: float
    create_max_s: float = CREATE_BACKOFF_MAX_S


def after_failure(
    st: WorkloadRuntimeState,
    action: Action,
    error: NodeRuntimeError | str,
    *,
    now: float,
    policy: BackoffPolicy,
) -> tuple[str, str] | None:
    """Record a failed action; returns the event (kind, message) to tell, None if a repeat."""
    repeated = st.last_error == str(error)
    st.last_error = str(error)
    cap = policy.max_s
    if isinstance(action, CreateContainer) or (
        isinstance(action, StartContainer) and not action.restart
    ):
        cap = min(cap, policy.create_max_s)
    st.backoff = next_backoff(
        st.backoff,
        now=now,
        ran_for_s=None,
        initial_s=policy.initial_s,
        max_s=cap,
        reset_after_s=policy.reset_after_s,
    )
    if repeated:
        return None
    kind = "image-missing" if isinstance(error, ImageNotFoundError) else "error"
    return kind, f"{describe(action)} failed: {error}"


def after_success(
    st: WorkloadRuntimeState,
    action: Action,
    *,
    previous: ObservedContainer | None,
    new_id: str | None,
    now: float,
    policy: BackoffPolicy,
) -> tuple[str, str]:
    """Record a successful action; returns the event (kind, message) to tell.

    ``previous`` is the container the action was about, as observed before it.
    """
    st.last_error = None
    match action:
        case CreateContainer(spec_hash=h):
            st.restarts = 0
            st.backoff = Backoff()
            st.health = None
            return "created", f"created and started container {(new_id or '')[:12]} (spec {h})"
        case StartContainer(container_id=cid, restart=True):
            ran = None
            if previous and previous.started_at and previous.finished_at:
                ran = previous.finished_at - previous.started_at
            st.restarts += 1
            st.health = None
            st.backoff = next_backoff(
                st.backoff,
                now=now,
                ran_for_s=ran,
                initial_s=policy.initial_s,
                max_s=policy.max_s,
                reset_after_s=policy.reset_after_s,
            )
            code = previous.exit_code if previous else None
            return "restarted", f"restarted container {cid[:12]} (exit code {code})"
        case StartContainer(container_id=cid):
            st.health = None
            return "started", f"started container {cid[:12]}"
        case StopContainer(container_id=cid):
            return "stopped", f"stopped container {cid[:12]}"
        case RemoveContainer(container_id=cid):
            return "removed", f"removed container {cid[:12]}"
    raise AssertionError(f"unknown action {action!r}")
