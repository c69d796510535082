"""The seam between the reconciler and site quorum (``noderuntime/site``), which it never imports.

The reconciler tells a ``PlacementSource`` which placement-scoped workloads it wants and which of
them have a running instance here; the source answers which slots this node holds *now* (fencing
already applied) and triggers a pass when that changes. Without a source (tests, a node that is
not wired for it) every placement-scoped workload counts as held: the old behaviour.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class PlacementWant:
    replicas: int
    selector: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SlotInfo:
    """A slot this node holds: which one, and since when (wall time, for status only)."""

    slot: int
    since: float


@dataclass(frozen=True)
class SlotHolder:
    """Who holds one slot of a workload, as this node last read it (for status)."""

    slot: int
    node: str | None
    since: float | None


class PlacementSource(Protocol):
    def update(
        self, wanted: Mapping[str, PlacementWant], running: frozenset[str], runtime_ok: bool
    ) -> None:
        """What the reconciler wants now, what runs here, and whether Podman answers."""
        ...

    def held_slots(self) -> Mapping[str, SlotInfo]:
        """Workloads whose slot this node holds at this instant."""
        ...

    def slots_of(self, workload: str) -> list[SlotHolder]:
        """Every slot of ``workload`` as last read (status output)."""
        ...
