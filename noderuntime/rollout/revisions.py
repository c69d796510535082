"""A workload's revisions as the fleet document keeps them. Pure.

``revisions["<name>/<n>"]`` holds revision n of a workload: its spec (so ``rollout undo`` can
go back to it), spec hash, author, time, and the rollout that carried it (none for a plain
``apply`` or an undo). Numbers start at 1 and grow by one per recorded change.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from noderuntime.crdt.schema import FleetView

# Revisions kept per workload. Each holds a whole spec in the fleet document, which every node
# holds and decodes on every change: unbounded, a thousand applies made every later write slower
# (durable applies/s fell from ~800 to ~60). Older ones go in the write that adds a new one.
REVISIONS_KEPT = 10


def revision_key(workload: str, number: int) -> str:
    return f"{workload}/{number:06d}"


def history(fleet: FleetView, workload: str) -> list[Mapping[str, Any]]:
    """The workload's revisions, oldest first."""
    prefix = workload + "/"
    found = [v for k, v in fleet.revisions.items() if k.startswith(prefix)]
    return sorted(found, key=lambda r: int(r.get("revision", 0)))


def latest_number(fleet: FleetView, workload: str) -> int:
    return max((int(r.get("revision", 0)) for r in history(fleet, workload)), default=0)


def find(fleet: FleetView, workload: str, number: int) -> Mapping[str, Any] | None:
    return fleet.revisions.get(revision_key(workload, number))


def stable_number(fleet: FleetView, workload: str, stable_hash: str | None) -> int | None:
    """The newest recorded revision with the stable spec's hash (None: not recorded)."""
    for rec in reversed(history(fleet, workload)):
        if stable_hash is not None and rec.get("specHash") == stable_hash:
            return int(rec["revision"])
    return None


def revision_record(
    workload: str,
    number: int,
    spec: Mapping[str, Any],
    spec_hash: str,
    *,
    author: str,
    at: float,
    rollout: str | None = None,
    note: str = "",
) -> dict[str, Any]:
    return {
        "workload": workload,
        "revision": number,
        "spec": dict(spec),
        "specHash": spec_hash,
        "author": author,
        "at": at,
        "rollout": rollout,
        "note": note,
    }


def history_view(fleet: FleetView, workload: str, stable_hash: str | None) -> list[dict[str, Any]]:
    """``rollout history -o json``: one row per revision (no spec), the stable one marked."""
    stable = stable_number(fleet, workload, stable_hash)
    return [
        {
            "revision": int(r.get("revision", 0)),
            "spec_hash": r.get("specHash"),
            "author": r.get("author", ""),
            "at": r.get("at"),
            "rollout": r.get("rollout"),
            "note": r.get("note", ""),
            "stable": int(r.get("revision", 0)) == stable,
        }
        for r in history(fleet, workload)
    ]


def pruned_keys(
    fleet: FleetView, workload: str, newest: int, keep: frozenset[int] = frozenset()
) -> list[str]:
    """Keys of the workload's revisions to delete once revision ``newest`` is written: all but
    the newest ``REVISIONS_KEPT`` (counting ``newest``) and those in ``keep`` (the stable one, a
    rollout's)."""
    floor = newest - REVISIONS_KEPT
    return [
        revision_key(workload, n)
        for n in (int(r.get("revision", 0)) for r in history(fleet, workload))
        if n <= floor and n not in keep
    ]
