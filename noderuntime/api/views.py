"""JSON views served by the control API. Pure functions over plain data.

``get workloads -o json`` prints a list of :func:`workload_view` objects. Their keys are a
stable interface for scripts (docs/operations.md): keys may be added, never renamed or removed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from noderuntime.crdt.records import LEGACY_CLIENT, Contest, Version
from noderuntime.crdt.schema import StatusRecord
from noderuntime.reconcile.desired import REFUSED_BY_POLICY, DesiredWorkload
from noderuntime.spec.models import canonical_dict

NOT_OBSERVED = "not yet observed since the node started"


def shown_status(
    stored: StatusRecord | None,
    live: StatusRecord | None,
    *,
    observed: bool,
    write_error: str | None,
) -> tuple[StatusRecord | None, str | None]:
    """The record a view shows for one workload, and the store's problem to show beside it.

    Views show what the reconciler last observed (``live``), stored or not: a status write the
    store refused must not leave an older phase on show. Until a pass has listed the runtime's
    containers nobody knows what runs, whatever was recorded before: ``Unknown``.
    """
    if live is None and not observed:
        last = f" (last recorded: {stored.phase})" if stored else ""
        return (
            StatusRecord(
                phase="Unknown",
                container_id=stored.container_id if stored else None,
                restarts=stored.restarts if stored else 0,
                since=stored.since if stored else 0.0,
                message=NOT_OBSERVED + last,
                spec_hash=stored.spec_hash if stored else None,
            ),
            None,
        )
    if live is None:
        return stored, None
    return live, (write_error if write_error and live != stored else None)


def workload_view(
    name: str,
    desired: DesiredWorkload | None,
    status: StatusRecord | None,
    *,
    invalid_reason: str | None = None,
    stored_spec: Mapping[str, Any] | None = None,
    now: float | None = None,
    store_problem: str | None = None,
) -> dict[str, Any]:
    """``now`` (epoch seconds) renders a back-off's countdown into ``message``.

    ``store_problem``: why ``status`` (observed) is not what the store holds, if it is not.
    """
    spec: Any = (
        canonical_dict(desired.workload)
        if desired
        else (dict(stored_spec) if stored_spec else None)
    )
    view: dict[str, Any] = {
        "name": name,
        "phase": status.phase if status else "Pending",
        "container_id": status.container_id if status else None,
        "restarts": status.restarts if status else 0,
        "health": status.health if status else None,
        "since": status.since if status else None,
        "message": _message(status, now) if status else "",
        "exit_code": status.exit_code if status else None,
        "retry_at": status.retry_at if status else None,
        "spec_hash": desired.spec_hash if desired else None,
        "observed_spec_hash": status.spec_hash if status else None,
        "enabled": desired.enabled if desired else True,
        "image": desired.workload.spec.image if desired else None,
        "spec": spec,
        "provenance": dict(desired.provenance) if desired else {},
        "problems": list(desired.problems) if desired else [],
        "store_problem": store_problem,
    }
    if invalid_reason is not None:
        view["phase"] = "Failed"
        view["message"] = (
            invalid_reason
            if invalid_reason.startswith(REFUSED_BY_POLICY)
            else f"stored spec is invalid: {invalid_reason}"
        )
    return view


def _message(status: StatusRecord, now: float | None) -> str:
    # The stored message has no countdown (it would change every pass, and every change is
    # a signed write); people still want one, so it is added here, at read time.
    if status.retry_at is None or now is None:
        return status.message
    wait = status.retry_at - now
    return status.message + (f"; retrying in {wait:.0f}s" if wait > 0.5 else "")


def _version_view(v: Version, authors: Mapping[int, str]) -> dict[str, Any]:
    return {
        "by": authors.get(v.client, "unknown" if v.client != LEGACY_CLIENT else "before HLCs"),
        "client": v.client,
        "hlc": v.hlc.encode(),
        "at": v.hlc.wall_s,
        "deleted": v.deleted,
    }


def contest_view(doc: str, contest: Contest, authors: Mapping[int, str]) -> list[dict[str, Any]]:
    """One entry per version of a record that lost to a concurrent write: who wrote it, when
    (its HLC; ``at`` in epoch seconds), and the write it lost to (later, or as late with a
    higher client id)."""
    won = _version_view(contest.won, authors)
    return [
        {
            "doc": doc,
            "record": f"{contest.map}/{contest.key}",
            "lost": _version_view(v, authors),
            "won": won,
        }
        for v in contest.lost
    ]
