"""What each rollout command writes to the fleet document, as plain entries. Pure.

Each function checks the command against the fleet as held and returns the entries to write
(``(map, key, record)``) in one transaction; the caller signs and stores them (a hub as itself,
or an operator's CLI through ``prepare``). Nothing here does I/O.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

from noderuntime.crdt.schema import (
    REVISIONS,
    ROLLOUT_STEPS,
    ROLLOUTS,
    WINDOWS,
    WORKLOADS,
    FleetView,
)
from noderuntime.errors import ConflictError, NotFoundError
from noderuntime.rollout import revisions
from noderuntime.rollout.record import (
    DEFAULT_START_DEADLINE_S,
    ENDED,
    EVERY_SITE,
    Rollout,
    State,
    progress_of,
    rollout_of,
    step_key,
)
from noderuntime.rollout.waves import parse_waves
from noderuntime.rollout.windows import parse_window

Entry = tuple[str, str, Mapping[str, Any]]


def active(fleet: FleetView, workload: str) -> Rollout | None:
    r = rollout_of(fleet, workload)
    if r is None or progress_of(fleet, r.id).state() in ENDED:
        return None
    return r


def _require_active(fleet: FleetView, workload: str) -> Rollout:
    r = active(fleet, workload)
    if r is None:
        raise NotFoundError(
            f"no rollout of {workload!r} in progress; see `noderuntime rollout status {workload}`"
        )
    return r


def start(
    fleet: FleetView,
    candidate: Mapping[str, Any],
    candidate_hash: str,
    stable_hash: str | None,
    *,
    waves: str,
    gate_for_s: float,
    max_unhealthy: int,
    author: str,
    now: float,
    start_deadline_s: float = DEFAULT_START_DEADLINE_S,
) -> tuple[Rollout, list[Entry]]:
    """A new rollout of ``candidate`` (its workload must have none in progress)."""
    name = str(candidate["metadata"]["name"])
    if active(fleet, name) is not None:
        raise ConflictError(
            f"a rollout of {name!r} is in progress; pause, abort or wait for it first"
        )
    if candidate_hash == stable_hash:
        raise ConflictError(f"{name!r} already runs this spec everywhere (hash {stable_hash})")
    entries: list[Entry] = []
    number = revisions.latest_number(fleet, name)
    previous = revisions.stable_number(fleet, name, stable_hash)
    stable = fleet.workloads.get(name)
    if stable is not None and previous is None and stable_hash is not None:
        # The stable spec predates revisions (or came by a plain apply): record it first so
        # the history says what a rollback goes back to.
        number += 1
        previous = number
        rec = revisions.revision_record(name, number, stable, stable_hash, author="", at=now)
        entries.append((REVISIONS, revisions.revision_key(name, number), rec))
    number += 1
    rollout = Rollout(
        id=f"{name}.{number}.{secrets.token_hex(3)}",
        workload=name,
        revision=number,
        candidate=dict(candidate),
        candidate_hash=candidate_hash,
        previous_revision=previous,
        waves=parse_waves(waves),
        gate_for_s=gate_for_s,
        max_unhealthy=max_unhealthy,
        start_deadline_s=start_deadline_s,
        author=author,
        started_at=now,
    )
    rec = revisions.revision_record(
        name, number, candidate, candidate_hash, author=author, at=now, rollout=rollout.id
    )
    entries.append((REVISIONS, revisions.revision_key(name, number), rec))
    entries.append((ROLLOUTS, name, rollout.to_dict()))
    return rollout, entries


def pause(fleet: FleetView, workload: str, *, by: str, now: float, resume: bool) -> list[Entry]:
    r = _require_active(fleet, workload)
    seq = progress_of(fleet, r.id).pause_seq()
    paused = seq % 2 == 1
    if paused != resume:
        return []  # already as asked
    return [(ROLLOUT_STEPS, step_key(r.id, f"pause/{seq + 1}"), {"at": now, "by": by})]


def abort(fleet: FleetView, workload: str, *, by: str, now: float, reason: str) -> list[Entry]:
    r = _require_active(fleet, workload)
    fact = {"at": now, "by": by, "reason": reason}
    return [(ROLLOUT_STEPS, step_key(r.id, f"end/{State.ABORTED.value}"), fact)]


def promote(fleet: FleetView, workload: str, *, by: str, now: float) -> tuple[str, list[Entry]]:
    """An operator's decision, gate or not: release the next wave at every site (or complete).

    This is how a rollout goes on with no hub left to judge gates: the operator judges, and the
    CLI signs it at any node (``--as``). Update windows are not consulted: the operator chose.
    """
    r = _require_active(fleet, workload)
    k = progress_of(fleet, r.id).current_wave()
    fact = {"at": now, "by": by, "promoted": True}
    entries: list[Entry] = []
    if k >= 0:
        entries.append((ROLLOUT_STEPS, step_key(r.id, f"gate/{k}"), fact))
    if k + 1 < len(r.waves):
        entries.append((ROLLOUT_STEPS, step_key(r.id, f"go/{k + 1}/{EVERY_SITE}"), fact))
        return f"wave {k + 2} released at every site", entries
    entries.append((ROLLOUT_STEPS, step_key(r.id, f"end/{State.COMPLETE.value}"), fact))
    return "complete", entries + complete_entries(r)


def complete_entries(rollout: Rollout) -> list[Entry]:
    """Written with ``end/Complete``: the candidate becomes the stable spec in the same update."""
    return [(WORKLOADS, rollout.workload, rollout.candidate)]


def undo(
    fleet: FleetView,
    workload: str,
    stable_hash: str | None,
    *,
    to_revision: int | None,
    by: str,
    now: float,
) -> tuple[int, list[Entry]]:
    """Make revision ``to_revision`` (default: the one before the stable one) stable, everywhere.

    A rollout in progress is aborted in the same update, so no node keeps its candidate.
    """
    entries: list[Entry] = []
    r = active(fleet, workload)
    if r is not None:
        entries += abort(fleet, workload, by=by, now=now, reason="undone")
    if to_revision is None:
        current = revisions.stable_number(fleet, workload, stable_hash)
        older = [
            int(x["revision"])
            for x in revisions.history(fleet, workload)
            if current is None or int(x["revision"]) < current
        ]
        older = [n for n in older if _hash(fleet, workload, n) != stable_hash]
        if not older:
            raise NotFoundError(f"{workload!r} has no earlier revision to go back to")
        to_revision = older[-1]
    target = revisions.find(fleet, workload, to_revision)
    if target is None or not isinstance(target.get("spec"), dict):
        raise NotFoundError(
            f"{workload!r} has no revision {to_revision}; see `noderuntime rollout history`"
        )
    number = revisions.latest_number(fleet, workload) + 1
    rec = revisions.revision_record(
        workload,
        number,
        target["spec"],
        str(target.get("specHash")),
        author=by,
        at=now,
        note=f"undo to revision {to_revision}",
    )
    entries.append((REVISIONS, revisions.revision_key(workload, number), rec))
    entries.append((WORKLOADS, workload, target["spec"]))
    return to_revision, entries


def _hash(fleet: FleetView, workload: str, number: int) -> str | None:
    rec = revisions.find(fleet, workload, number)
    return str(rec.get("specHash")) if rec is not None else None


def set_window(site: str, window: str | None, *, by: str, now: float) -> list[Entry]:
    """An update window for ``site`` (None or empty: remove it; recorded as no window)."""
    text = parse_window(window).text if window else ""
    return [(WINDOWS, site, {"window": text, "by": by, "at": now})]
