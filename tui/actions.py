"""The state-changing actions a technician can take, described for the confirmation dialog."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from textual.screen import Screen

from tui.context import TuiContext
from tui.screens.confirm import Action, ConfirmActionScreen
from tui.screens.override import OverrideScreen

# The node's default stop timeout (spec stopTimeoutSeconds), when the spec does not say.
DEFAULT_STOP_TIMEOUT_S = 10.0
# After an action, the affected rows are reloaded this often for this long: the node carries
# it out over the next seconds (a stop waits out the grace period).
FOLLOW_UP_INTERVAL_S = 0.5
FOLLOW_UP_TIMES = 30


def stop_timeout(view: Mapping[str, Any] | None) -> float:
    spec_doc = (view or {}).get("spec") or {}
    spec = spec_doc.get("spec") if isinstance(spec_doc, Mapping) else None
    value = spec.get("stopTimeoutSeconds") if isinstance(spec, Mapping) else None
    return float(value) if isinstance(value, int | float) else DEFAULT_STOP_TIMEOUT_S


def restart_progress(name: str, grace_s: float) -> Callable[[float, bool], str]:
    def step(elapsed: float, stopped: bool) -> str:
        if stopped or elapsed >= grace_s:
            return f"Starting {name} again... ({elapsed:.0f}s)"
        return (
            f"Stopping {name}: it has {grace_s:g}s to exit before it is killed "
            f"({grace_s - elapsed:.0f}s left)..."
        )

    return step


def restart(name: str, view: Mapping[str, Any] | None = None) -> Action:
    """``view``: the workload as the list or detail holds it (for its stop timeout)."""
    return Action(
        title=f"Restart {name}",
        description=f"Stop and start the container of workload {name!r} on this node now.",
        method="workloads.restart",
        params={"name": name},
        done=f"{name} restarted",
        progress=restart_progress(name, stop_timeout(view)),
        watch=name,
    )


def stop(name: str) -> Action:
    return Action(
        title=f"Stop {name}",
        description=(
            f"Disable workload {name!r} on this node (a node override enabled=false). "
            "It stays stopped, across reboots, until started again."
        ),
        method="workloads.stop",
        params={"name": name},
        done=f"{name} stopped (enabled=false on this node)",
    )


def start(name: str) -> Action:
    return Action(
        title=f"Start {name}",
        description=f"Remove this node's enabled=false override of {name!r} so it runs again.",
        method="workloads.start",
        params={"name": name},
        done=f"{name} started",
    )


def set_override(name: str, field: str, value: Any) -> Action:
    shown = value if isinstance(value, str) else json.dumps(value)
    return Action(
        title=f"Override {field} of {name}",
        description=(
            f"Set {field} = {shown} for workload {name!r} on this node only. "
            "The change is signed for you, recorded and synced."
        ),
        method="overrides.set",
        params={"workload": name, "field": field, "value": value},
        done=f"{name}: {field} overridden on this node",
    )


def remove_override(name: str, field: str) -> Action:
    return Action(
        title=f"Remove override {field} of {name}",
        description=(
            f"Remove this node's override of {field} for {name!r}; "
            "the site or fleet value applies again."
        ),
        method="overrides.remove",
        params={"workload": name, "field": field},
        done=f"{name}: node override of {field} removed",
    )


def confirm(
    screen: Screen[Any], ctx: TuiContext, action: Action, after: Callable[[], None]
) -> None:
    """Ask for confirmation and credentials, run the action, then call ``after``."""

    def done(message: str | None) -> None:
        if message:
            screen.notify(message, title="Done")
            # At once, then again while the node carries it out (a stop ends after the
            # grace period): PHASE follows without waiting for the next status poll.
            after()
            screen.set_interval(FOLLOW_UP_INTERVAL_S, after, repeat=FOLLOW_UP_TIMES)

    screen.app.push_screen(ConfirmActionScreen(ctx, action), done)


def edit_override(
    screen: Screen[Any],
    ctx: TuiContext,
    name: str,
    after: Callable[[], None],
    *,
    field: str = "",
    value: str = "",
) -> None:
    """Ask which field and value, then confirm and send ``overrides.set``."""

    def chosen(result: tuple[str, Any] | None) -> None:
        if result is not None:
            confirm(screen, ctx, set_override(name, *result), after)

    screen.app.push_screen(OverrideScreen(name, ctx.override_fields, field, value), chosen)
