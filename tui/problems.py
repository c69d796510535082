"""What is wrong, in an order a technician acts on. Pure: no Textual, no I/O.

The node's messages put the cause first and the fix last, often with a raw error from Podman
in parentheses in between ("image X is not on this host and could not be pulled (<five lines
from Podman>); load it with `podman load -i FILE` or fix the image name"). At 80 columns only
the start of such a message shows, so the console splits it: the fix first, then the cause,
then the raw error. Workloads that are not healthy sort first, worst first.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# A part of a message that tells the reader what to do starts with one of these verbs.
_HINT_RE = re.compile(
    r"^(load|fix|check|start|ask|see|run|remove|use|set|free|decide|wait|enrol|enroll|"
    r"restart|look|make|give|add|try|install|mount|plug|reconnect|copy|import)\b",
    re.IGNORECASE,
)
# A parenthesised part this long is a lower layer's error quoted whole, not a short aside.
_RAW_MIN_CHARS = 30


@dataclass(frozen=True)
class Reason:
    hint: str  # what to do; "" when the message says nothing about it
    cause: str  # what is wrong, without the quoted raw error
    raw: str  # the lower layer's own error, quoted in the message; "" if none

    def line(self) -> str:
        """One line, the fix first: for a table cell or a notification."""
        parts = [_capital(self.hint), self.cause] if self.hint else [self.cause]
        return ": ".join(p for p in parts if p)

    def lines(self) -> list[str]:
        """Labelled lines for a detail view (each wraps at word boundaries on its own)."""
        if not self.hint and not self.raw:
            return [self.cause] if self.cause else []
        out = []
        if self.hint:
            out.append(f"Fix: {self.hint}")
        if self.cause:
            out.append(f"Why: {self.cause}")
        if self.raw:
            out.append(f"Error: {self.raw}")
        return out


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def _split_top(text: str, sep: str) -> list[str]:
    """Split on ``sep`` outside parentheses (a quoted raw error may contain it)."""
    parts: list[str] = []
    depth = 0
    start = 0
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth = max(0, depth - 1)
        elif depth == 0 and text.startswith(sep, i):
            parts.append(text[start:i])
            i += len(sep)
            start = i
            continue
        i += 1
    parts.append(text[start:])
    return parts


def _trailing_group(text: str) -> tuple[str, str]:
    """(text before, inside) of a long parenthesised group that ends ``text``; else (text, "")."""
    stripped = text.rstrip()
    if not stripped.endswith(")"):
        return text, ""
    depth = 0
    for i in range(len(stripped) - 1, -1, -1):
        ch = stripped[i]
        if ch == ")":
            depth += 1
        elif ch == "(":
            depth -= 1
            if depth == 0:
                inside = stripped[i + 1 : -1]
                if len(inside) < _RAW_MIN_CHARS:
                    return text, ""
                return stripped[:i].rstrip(), inside
    return text, ""


def split_reason(message: str) -> Reason:
    """The fix, the cause and the raw error of a node's message (see the module's docstring)."""
    text = " ".join(message.split())
    hints: list[str] = []
    causes: list[str] = []
    raws: list[str] = []
    for i, part in enumerate(p.strip() for p in _split_top(text, "; ")):
        if not part:
            continue
        if i > 0 and _HINT_RE.match(part):
            hints.append(part)
            continue
        before, raw = _trailing_group(part)
        causes.append(before)
        if raw:
            raws.append(raw)
    return Reason("; ".join(hints), "; ".join(causes), "; ".join(raws))


def reason_line(message: str) -> str:
    return split_reason(message).line() if message else ""


# --- problems first ---------------------------------------------------------------------------

# Lower is worse. A workload stopped on purpose (want stop) is fine and sorts last.
_PHASE_RANK: Mapping[str, int] = {
    "Failed": 0,
    "Unhealthy": 1,
    "Unknown": 2,
    "Pending": 3,
    "Starting": 4,
    "Stopping": 4,
    "Stopped": 5,
    "Standby": 6,
    "Running": 6,
}
HEALTHY_RANK = 6


def severity(phase: str, health: str | None, want_run: bool) -> int:
    """How bad a workload's state is: 0 (failed) .. 6 (fine); 7 for stopped on purpose."""
    if phase == "Stopped" and not want_run:
        return HEALTHY_RANK + 1
    rank = _PHASE_RANK.get(phase, 2)
    if health == "unhealthy":
        rank = min(rank, 1)
    return rank


# Phases in which a container runs: with want=stop it is on its way down (its grace period).
RUNNING_PHASES = frozenset({"Running", "Starting", "Unhealthy"})


def shown_phase(view: Mapping[str, Any]) -> str:
    """The node's phase, except ``Stopping`` while a stopped workload's container still runs
    (the node says Running until it has exited, up to its stop timeout)."""
    phase = str(view.get("phase") or "Pending")
    if not view.get("enabled", True) and phase in RUNNING_PHASES:
        return "Stopping"
    return phase


def view_severity(view: Mapping[str, Any]) -> int:
    return severity(
        shown_phase(view),
        str(view["health"]) if view.get("health") else None,
        bool(view.get("enabled", True)),
    )


def is_problem(view: Mapping[str, Any]) -> bool:
    return view_severity(view) < HEALTHY_RANK or bool(view.get("problems"))


def workload_reason(view: Mapping[str, Any]) -> str:
    """Why a workload is as it is, one line, the fix first ("" when there is nothing to say)."""
    phase = str(view.get("phase") or "Pending")
    health = view.get("health")
    message = str(view.get("message") or "")
    if not message and health == "unhealthy":
        message = "its health probe fails (the detail shows the probe's output)"
    if not message and phase == "Stopped" and view.get("enabled", True):
        message = "stopped although it should run"
    extra = [str(p) for p in view.get("problems") or []]
    return "; ".join(x for x in [reason_line(message), *extra] if x)


@dataclass(frozen=True)
class Problem:
    name: str  # workload name; "" for the node's own problems
    what: str  # phase or the part of the node ("Podman", "Disk")
    reason: str  # one line, the fix first
    rank: int


def workload_problems(views: Iterable[Mapping[str, Any]]) -> list[Problem]:
    """Workloads that are not healthy, worst first, each with its reason."""
    out = []
    for v in views:
        if not is_problem(v):
            continue
        phase = str(v.get("phase") or "Pending")
        health = v.get("health")
        what = f"{phase}/{health}" if health == "unhealthy" and phase != "Unhealthy" else phase
        reason = workload_reason(v) or "-"
        restarts = int(v.get("restarts") or 0)
        if restarts:
            reason = f"{restarts} restarts; {reason}"
        out.append(Problem(str(v.get("name", "?")), what, reason, view_severity(v)))
    out.sort(key=lambda p: (p.rank, p.name))
    return out


# Free space below this fraction of the disk is a problem: images and logs fill it fast.
DISK_FREE_MIN_FRACTION = 0.10
# A clock this far off from the technician's is worth saying (TLS, signatures, leases).
CLOCK_SKEW_MAX_S = 300.0


def node_problems(status: Mapping[str, Any], now: float | None = None) -> list[Problem]:
    """The node's own problems from ``node.status``: Podman, store, sync, disk, clock.

    ``now`` is the console's clock; the node's is read from its uptime and start time, so a
    skew shows only when the console runs elsewhere than the node (a laptop over SSH).
    """
    out: list[Problem] = []
    podman = status.get("podman") or {}
    if podman and not podman.get("connected"):
        err = str(podman.get("error") or "not connected yet")
        out.append(
            Problem(
                "", "Podman", reason_line(err) + "; no container can start or stop until then", 0
            )
        )
    store = status.get("store") or {}
    if store and (not store.get("healthy", True) or store.get("hold")):
        why = str(store.get("error") or "the node reports its store unhealthy")
        out.append(Problem("", "Store", reason_line(why), 0))
    sync = status.get("sync") or {}
    if sync.get("enabled") and not sync.get("connected"):
        out.append(
            Problem(
                "",
                "Sync",
                "offline: changes are kept here and sent on reconnect; see peers (3)",
                3,
            )
        )
    elif sync.get("enabled") and int(sync.get("rejected_total") or 0):
        out.append(
            Problem(
                "",
                "Sync",
                f"{sync['rejected_total']} updates refused from peers; see peers (3)",
                4,
            )
        )
    elif not sync.get("enabled") and sync.get("problem"):
        out.append(Problem("", "Sync", reason_line(str(sync["problem"])), 3))
    host = status.get("host") or {}
    total, free = host.get("disk_total_bytes"), host.get("disk_free_bytes")
    if (
        isinstance(total, int | float)
        and isinstance(free, int | float)
        and total > 0
        and free / total < DISK_FREE_MIN_FRACTION
    ):
        out.append(
            Problem(
                "",
                "Disk",
                f"only {100 * free / total:.0f}% free: remove unused images "
                "(podman image prune) or old logs",
                1,
            )
        )
    node = status.get("node") or {}
    started, uptime = node.get("started_at"), node.get("uptime_s")
    if now is not None and isinstance(started, int | float) and isinstance(uptime, int | float):
        skew = started + uptime - now
        if abs(skew) > CLOCK_SKEW_MAX_S:
            ahead = "ahead of" if skew > 0 else "behind"
            out.append(
                Problem(
                    "",
                    "Clock",
                    f"the node's clock is {abs(skew):.0f}s {ahead} this console's: "
                    "set it (timedatectl) or check NTP",
                    2,
                )
            )
    return out
