"""What the CRDT documents hold, read into frozen snapshots; writes are named mutations.

Documents (design decision 1) and their top-level maps. Every value is a JSON string so one
write replaces one whole record (no Frankenstein merges of two applies' fields, and integers
survive: pycrdt would hand them back as floats):

    fleet            workloads: name -> canonical workload (JSON)     writers: operators
                     locks:     name -> ["field", ...] or ["*"]       (fleet policy)
    site/<site>      overrides: "<workload>/<field>" -> JSON value    writers: site technicians,
                                                                      operators
    node/<node>      overrides: "<workload>/<field>" -> JSON value    writer: that node (also on a
                     status:    name -> status record (JSON)           technician's behalf)
                     info:      "node" -> node facts (JSON)

Nothing outside ``noderuntime.crdt`` touches a live ``Doc``: readers get the snapshots below.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pycrdt import Doc, Map

FLEET_DOC = "fleet"
WORKLOADS = "workloads"
LOCKS = "locks"
OVERRIDES = "overrides"
STATUS = "status"
INFO = "info"

LOCK_ALL = "*"

log = logging.getLogger(__name__)


def site_doc(site: str) -> str:
    return f"site/{site}"


def node_doc(node_id: str) -> str:
    return f"node/{node_id}"


def override_key(workload: str, field_path: str) -> str:
    return f"{workload}/{field_path}"


@dataclass(frozen=True)
class StatusRecord:
    """A workload's observed state as recorded by its node, on transitions only."""

    phase: str
    container_id: str | None = None
    restarts: int = 0
    health: str | None = None
    since: float = 0.0
    message: str = ""
    spec_hash: str | None = None
    exit_code: int | None = None
    # Next attempt (epoch seconds) while in back-off; readers render the countdown.
    retry_at: float | None = None
    # False while an override disables the workload; enabled_at: when the node saw it
    # re-enabled (containers that finished before then are started whatever their policy).
    enabled: bool = True
    enabled_at: float | None = None

    def to_json(self) -> str:
        return json.dumps(
            {
                "phase": self.phase,
                "containerId": self.container_id,
                "restarts": self.restarts,
                "health": self.health,
                "since": self.since,
                "message": self.message,
                "specHash": self.spec_hash,
                "exitCode": self.exit_code,
                "retryAt": self.retry_at,
                "enabled": self.enabled,
                "enabledAt": self.enabled_at,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> StatusRecord:
        d = json.loads(text)
        exit_code = d.get("exitCode")
        retry_at = d.get("retryAt")  # absent in records written before it existed
        enabled_at = d.get("enabledAt")
        # Older records said "disabled" only in words.
        was_disabled = d.get("phase") == "Stopped" and d.get("message") == "disabled by override"
        return cls(
            phase=str(d["phase"]),
            container_id=d.get("containerId"),
            restarts=int(d.get("restarts", 0)),
            health=d.get("health"),
            since=float(d.get("since", 0.0)),
            message=str(d.get("message", "")),
            spec_hash=d.get("specHash"),
            exit_code=int(exit_code) if exit_code is not None else None,
            retry_at=float(retry_at) if retry_at is not None else None,
            enabled=bool(d.get("enabled", not was_disabled)),
            enabled_at=float(enabled_at) if enabled_at is not None else None,
        )


@dataclass(frozen=True)
class FleetView:
    workloads: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    locks: Mapping[str, frozenset[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class NodeView:
    overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    status: Mapping[str, StatusRecord] = field(default_factory=dict)
    info: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StateSnapshot:
    """Everything a reader needs, detached from the live documents."""

    generation: int
    fleet: FleetView
    site_overrides: Mapping[str, Mapping[str, Any]]
    node: NodeView


def _map(doc: Doc[Any], name: str) -> Map[Any]:
    m: Map[Any] = doc.get(name, type=Map)
    return m


def _json_entries(doc: Doc[Any], name: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, raw in _map(doc, name).items():
        try:
            out[str(key)] = json.loads(raw)
        except (TypeError, ValueError):
            # A value we can't read must not take the node down; it is skipped and logged.
            log.warning("skipping unreadable %s entry %r", name, key)
    return out


def _overrides(doc: Doc[Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for key, value in _json_entries(doc, OVERRIDES).items():
        workload, sep, field_path = key.partition("/")
        if sep and workload and field_path:
            out.setdefault(workload, {})[field_path] = value
    return out


def read_fleet(doc: Doc[Any]) -> FleetView:
    workloads = {k: v for k, v in _json_entries(doc, WORKLOADS).items() if isinstance(v, dict)}
    locks: dict[str, frozenset[str]] = {}
    for k, v in _json_entries(doc, LOCKS).items():
        if isinstance(v, list):
            locks[k] = frozenset(str(x) for x in v)
    return FleetView(workloads=workloads, locks=locks)


def read_site(doc: Doc[Any]) -> dict[str, dict[str, Any]]:
    return _overrides(doc)


def read_node(doc: Doc[Any]) -> NodeView:
    status: dict[str, StatusRecord] = {}
    for key, raw in _map(doc, STATUS).items():
        try:
            status[str(key)] = StatusRecord.from_json(raw)
        except (TypeError, ValueError, KeyError):
            log.warning("skipping unreadable status entry %r", key)
    info = _json_entries(doc, INFO).get("node", {})
    return NodeView(
        overrides=_overrides(doc), status=status, info=info if isinstance(info, dict) else {}
    )


# --- named mutations: each runs inside the caller's transaction ------------------------------


def put_workload(doc: Doc[Any], name: str, canonical: Mapping[str, Any]) -> None:
    _map(doc, WORKLOADS)[name] = json.dumps(canonical, sort_keys=True, separators=(",", ":"))


def delete_workload(doc: Doc[Any], name: str) -> bool:
    workloads = _map(doc, WORKLOADS)
    if name in workloads:
        del workloads[name]
        return True
    return False


def has_workload(doc: Doc[Any], name: str) -> bool:
    return name in _map(doc, WORKLOADS)


def set_lock(doc: Doc[Any], workload: str, fields: list[str]) -> None:
    locks = _map(doc, LOCKS)
    if fields:
        locks[workload] = json.dumps(sorted(set(fields)))
    elif workload in locks:
        del locks[workload]


def set_override(doc: Doc[Any], workload: str, field_path: str, value: Any) -> None:
    _map(doc, OVERRIDES)[override_key(workload, field_path)] = json.dumps(value, sort_keys=True)


def remove_override(doc: Doc[Any], workload: str, field_path: str) -> bool:
    overrides = _map(doc, OVERRIDES)
    key = override_key(workload, field_path)
    if key in overrides:
        del overrides[key]
        return True
    return False


def put_status(doc: Doc[Any], name: str, record: StatusRecord) -> None:
    _map(doc, STATUS)[name] = record.to_json()


def delete_status(doc: Doc[Any], name: str) -> None:
    status = _map(doc, STATUS)
    if name in status:
        del status[name]


def put_info(doc: Doc[Any], info: Mapping[str, Any]) -> None:
    _map(doc, INFO)["node"] = json.dumps(info, sort_keys=True)


def export_doc(doc: Doc[Any]) -> dict[str, dict[str, Any]]:
    """Every top-level map of ``doc`` as ``{map: {key: stored value}}`` (read-only).

    Values are returned as stored (JSON strings) and empty maps are left out (reading a map
    creates it locally), so two replicas that converged export identical dicts. Used by the
    ``state.export`` debug route and convergence tests.
    """
    out: dict[str, dict[str, Any]] = {}
    for name in sorted(doc.keys()):
        entries = {str(k): v for k, v in sorted(_map(doc, str(name)).items())}
        if entries:
            out[str(name)] = entries
    return out
