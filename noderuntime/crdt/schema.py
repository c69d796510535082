"""What the CRDT documents hold, read into frozen snapshots; writes are named mutations.

Documents (design decision 1) and their top-level maps. Every value is a JSON string so one
write replaces one whole record (no Frankenstein merges of two applies' fields, and integers
survive: pycrdt would hand them back as floats):

    fleet            workloads: name -> canonical workload (JSON)     writers: operators (a hub:
                                                                      relays only, relay_problem)
                     locks:     name -> ["field", ...] or ["*"]       (fleet policy)
                     revisions: "<name>/<n>" -> a workload's revision (spec, hash, author, ...)
                     rollouts:  name -> the workload's newest rollout (candidate spec, waves)
                     rolloutSteps: "<rollout id>/<fact>" -> one step taken (wave released at a
                                site, gate held, ended): facts only ever added, never changed
                     windows:   site -> update window ("Sat 02:00-04:00")
                     secrets:   name -> a secret, sealed to each target node (ciphertext
                                only; noderuntime.reconcile.secrets reads it)
                     policy:    "<site>/<workload>" ("*" for any) -> ["allowance", ...]
                                (workload security policy, noderuntime.spec.policy)
                     revocations: principal -> revoked keys and cut-off (noderuntime.fleet.
                                revocation); only ever widened by the nodes that read it
                     retiredKeys: key id -> {"principal", "after"}: an old key after a rekey
    site/<site>      overrides: "<workload>/<field>" -> JSON value    writers: site technicians,
                                                                      operators
    node/<node>      overrides: "<workload>/<field>" -> JSON value    writer: that node (also on a
                     status:    name -> status record (JSON)           technician's behalf)
                     info:      "node" -> node facts (JSON)

Workloads, locks, policy and overrides are settled by HLC, later write wins, each beside a
versions map (``workloadVersions``, ``lockVersions``, ``policyVersions``,
``overrideVersions``): see :mod:`.records`.

Nothing outside ``noderuntime.crdt`` touches a live ``Doc``: readers get the snapshots below.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pycrdt import Doc, Map

from noderuntime import codec
from noderuntime.crdt import records
from noderuntime.crdt.hlc import Hlc

FLEET_DOC = "fleet"
WORKLOADS = "workloads"
LOCKS = "locks"
OVERRIDES = "overrides"
STATUS = "status"
INFO = "info"
REVISIONS = "revisions"
ROLLOUTS = "rollouts"
ROLLOUT_STEPS = "rolloutSteps"
WINDOWS = "windows"
SECRETS = "secrets"
POLICY = "policy"
REVOCATIONS = "revocations"
RETIRED_KEYS = "retiredKeys"  # same name as noderuntime.fleet.rekey.RETIRED_KEYS
REKEY = "rekey"  # node documents: a key rotation's request and issue (noderuntime.fleet.rekey)

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
        d = records.STORED.loads(text)
        if not isinstance(d, dict):
            raise ValueError("a status record is a JSON object")
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
class Quarantined:
    """A stored record no reader can use (malformed, too deep, too large): set aside, reported.

    One bad record must not stop a site: readers skip it, views and the reconciler go on with
    everything else, and ``status`` names it so an operator can remove it.
    """

    doc: str
    map: str
    key: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"doc": self.doc, "map": self.map, "key": self.key, "reason": self.reason}


@dataclass(frozen=True)
class FleetView:
    workloads: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    locks: Mapping[str, frozenset[str]] = field(default_factory=dict)
    # Staged rollouts, decoded JSON only: noderuntime.rollout interprets them.
    revisions: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    rollouts: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    rollout_steps: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    windows: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    secrets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # "<site>/<workload>" -> allowances (noderuntime.spec.policy interprets them).
    policy: Mapping[str, frozenset[str]] = field(default_factory=dict)
    revocations: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    retired_keys: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


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
    quarantined: tuple[Quarantined, ...] = ()


def _map(doc: Doc[Any], name: str) -> Map[Any]:
    m: Map[Any] = doc.get(name, type=Map)
    return m


# Where a reader reports records it set aside: (map, key, reason). Readers take an optional list
# so callers that only want the values (tests, one-off reads) need not care.
Bad = list[tuple[str, str, str]]


def _json_entries(doc: Doc[Any], name: str, bad: Bad | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, raw in _map(doc, name).items():
        try:
            if not isinstance(raw, str):
                raise codec.DecodeError(f"a {type(raw).__name__}, not a JSON string")
            out[str(key)] = records.STORED.loads(raw)
        except codec.DecodeError as exc:
            # A value we can't read must not take the node down: it is set aside and reported.
            _set_aside(bad, name, str(key), str(exc))
    return out


# A key is reported whole up to this length, so `noderuntime record rm` can name it.
MAX_REPORTED_KEY_CHARS = 1024


def _set_aside(bad: Bad | None, name: str, key: str, reason: str) -> None:
    if bad is not None:
        bad.append((name, key[:MAX_REPORTED_KEY_CHARS], reason[:200]))
    log.debug("setting aside unreadable %s entry %.200r: %s", name, key, reason)


def _overrides(doc: Doc[Any], bad: Bad | None = None) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for key, value in records.read_records(doc, OVERRIDES, bad).items():
        workload, sep, field_path = key.partition("/")
        if sep and workload and field_path:
            out.setdefault(workload, {})[field_path] = value
    return out


def read_fleet(doc: Doc[Any], bad: Bad | None = None) -> FleetView:
    workloads: dict[str, Mapping[str, Any]] = {}
    for k, v in records.read_records(doc, WORKLOADS, bad).items():
        if isinstance(v, dict):
            workloads[k] = v
        else:
            _set_aside(bad, WORKLOADS, k, "a workload is a JSON object")
    locks: dict[str, frozenset[str]] = {}
    for k, v in records.read_records(doc, LOCKS, bad).items():
        if isinstance(v, list):
            locks[k] = frozenset(str(x) for x in v)
        else:
            _set_aside(bad, LOCKS, k, "a lock is a JSON list of fields")
    policy: dict[str, frozenset[str]] = {}
    for k, v in records.read_records(doc, POLICY, bad).items():
        if isinstance(v, list) and all(isinstance(x, str) for x in v):
            policy[k] = frozenset(v)
        else:
            _set_aside(bad, POLICY, k, "a policy entry is a JSON list of allowances")
    return FleetView(
        workloads=workloads,
        locks=locks,
        policy=policy,
        revisions=_objects(doc, REVISIONS, bad),
        rollouts=_objects(doc, ROLLOUTS, bad),
        rollout_steps=_objects(doc, ROLLOUT_STEPS, bad),
        windows=_objects(doc, WINDOWS, bad),
        secrets=_objects(doc, SECRETS, bad),
        revocations=_objects(doc, REVOCATIONS, bad),
        retired_keys=_objects(doc, RETIRED_KEYS, bad),
    )


def _objects(doc: Doc[Any], name: str, bad: Bad | None) -> dict[str, Mapping[str, Any]]:
    out: dict[str, Mapping[str, Any]] = {}
    for k, v in _json_entries(doc, name, bad).items():
        if isinstance(v, dict):
            out[k] = v
        else:
            _set_aside(bad, name, k, f"a {name} entry is a JSON object")
    return out


def read_rekey(doc: Doc[Any]) -> dict[str, Mapping[str, Any]]:
    """A node document's key rotation records (``request``, ``issued``)."""
    return _objects(doc, REKEY, None)


def read_site(doc: Doc[Any], bad: Bad | None = None) -> dict[str, dict[str, Any]]:
    return _overrides(doc, bad)


def read_node(doc: Doc[Any], bad: Bad | None = None) -> NodeView:
    status: dict[str, StatusRecord] = {}
    for key, raw in _map(doc, STATUS).items():
        try:
            status[str(key)] = StatusRecord.from_json(raw)
        except (TypeError, ValueError, KeyError) as exc:
            _set_aside(bad, STATUS, str(key), str(exc) or type(exc).__name__)
    info = _json_entries(doc, INFO, bad).get("node", {})
    return NodeView(
        overrides=_overrides(doc, bad), status=status, info=info if isinstance(info, dict) else {}
    )


def unreadable(name: str, doc: Doc[Any]) -> list[Quarantined]:
    """The records of document ``name`` no reader can use, read the way its readers read it."""
    bad: Bad = []
    if name == FLEET_DOC:
        read_fleet(doc, bad)
    elif name.startswith("site/"):
        read_site(doc, bad)
    elif name.startswith("node/"):
        read_node(doc, bad)
    return [Quarantined(name, m, k, reason) for m, k, reason in bad]


# --- named mutations: each runs inside the caller's transaction ------------------------------


def remove_record(doc: Doc[Any], map_name: str, key: str) -> bool:
    """Delete one record, whatever it holds (an operator removing a record set aside): in a
    versioned map, its copy from before versions and every version of it."""
    removed = False
    if map_name in VERSIONED:
        removed = records.remove_all(doc, map_name, key)
    if map_name not in doc.keys():  # noqa: SIM118 - pycrdt types no __contains__
        return removed
    entries = _map(doc, map_name)
    if key in entries:
        del entries[key]
        return True
    return removed


def has_record(doc: Doc[Any], map_name: str, key: str) -> bool:
    if map_name in VERSIONED and records.has_any(doc, map_name, key):
        return True
    return map_name in doc.keys() and key in _map(doc, map_name)  # noqa: SIM118


# Whole records (workloads, locks, overrides) are written as of an HLC: one per write, from
# :func:`write_hlc` (later than every version of the records the write replaces). A mutation
# returns it, and the state store signs it into the update's meta (``history`` shows it).
# Without one, a record's own HLC is taken at the wall clock.

VERSIONED = (WORKLOADS, LOCKS, OVERRIDES, POLICY)


def write_hlc(doc: Doc[Any], keys: Mapping[str, list[str]], now: float | None = None) -> Hlc:
    """The HLC for one write of records ``keys`` (map -> record keys) made now."""
    now_s = time.time() if now is None else now
    return max(records.write_hlc(doc, name, ks, now_s) for name, ks in keys.items())


def _hlc(doc: Doc[Any], name: str, key: str, hlc: Hlc | None) -> Hlc:
    return hlc if hlc is not None else write_hlc(doc, {name: [key]})


def put_workload(
    doc: Doc[Any], name: str, canonical: Mapping[str, Any], hlc: Hlc | None = None
) -> Hlc:
    hlc = _hlc(doc, WORKLOADS, name, hlc)
    records.put_records(doc, WORKLOADS, {name: dict(canonical)}, hlc)
    return hlc


def delete_workload(doc: Doc[Any], name: str, hlc: Hlc | None = None) -> bool:
    return bool(records.delete_records(doc, WORKLOADS, [name], _hlc(doc, WORKLOADS, name, hlc)))


def has_workload(doc: Doc[Any], name: str) -> bool:
    return name in records.read_records(doc, WORKLOADS)


def put_entry(doc: Doc[Any], map_name: str, key: str, value: Mapping[str, Any]) -> None:
    """Write one whole JSON record into a fleet map (revisions, rollouts, steps, windows; a
    workload, as a rollout's end or an undo writes it: as a version, by HLC)."""
    if map_name in VERSIONED:
        records.put_records(doc, map_name, {key: dict(value)}, _hlc(doc, map_name, key, None))
        return
    _map(doc, map_name)[key] = json.dumps(value, sort_keys=True, separators=(",", ":"))


def delete_entry(doc: Doc[Any], map_name: str, key: str) -> bool:
    """Delete one record of a plain (not versioned) fleet map, e.g. a secret."""
    entries = _map(doc, map_name)
    if key in entries:
        del entries[key]
        return True
    return False


def has_entry(doc: Doc[Any], map_name: str, key: str) -> bool:
    if map_name in VERSIONED:
        return key in records.read_records(doc, map_name)
    return key in _map(doc, map_name)


def set_lock(doc: Doc[Any], workload: str, fields: list[str], hlc: Hlc | None = None) -> Hlc:
    hlc = _hlc(doc, LOCKS, workload, hlc)
    if fields:
        records.put_records(doc, LOCKS, {workload: sorted(set(fields))}, hlc)
    else:
        records.delete_records(doc, LOCKS, [workload], hlc)
    return hlc


def set_policy(doc: Doc[Any], key: str, allowances: list[str], hlc: Hlc | None = None) -> Hlc:
    """Replace what fleet policy allows under ``key`` ("<site>/<workload>"); empty removes it."""
    hlc = _hlc(doc, POLICY, key, hlc)
    if allowances:
        records.put_records(doc, POLICY, {key: sorted(set(allowances))}, hlc)
    else:
        records.delete_records(doc, POLICY, [key], hlc)
    return hlc


def set_override(
    doc: Doc[Any], workload: str, field_path: str, value: Any, hlc: Hlc | None = None
) -> Hlc:
    key = override_key(workload, field_path)
    hlc = _hlc(doc, OVERRIDES, key, hlc)
    records.put_records(doc, OVERRIDES, {key: value}, hlc)
    return hlc


def remove_override(doc: Doc[Any], workload: str, field_path: str, hlc: Hlc | None = None) -> bool:
    key = override_key(workload, field_path)
    return bool(records.delete_records(doc, OVERRIDES, [key], _hlc(doc, OVERRIDES, key, hlc)))


def contests(doc: Doc[Any]) -> list[records.Contest]:
    """Every whole record of ``doc`` that was written concurrently, with who lost (read-only)."""
    return [c for name in VERSIONED for c in records.contests(doc, name)]


def put_status(doc: Doc[Any], name: str, record: StatusRecord) -> None:
    _map(doc, STATUS)[name] = record.to_json()


def delete_status(doc: Doc[Any], name: str) -> None:
    status = _map(doc, STATUS)
    if name in status:
        del status[name]


def put_info(doc: Doc[Any], info: Mapping[str, Any]) -> None:
    _map(doc, INFO)["node"] = json.dumps(info, sort_keys=True)


# The node's newest audit checkpoint, for hubs to witness (noderuntime/audit/witness.py). One
# record, overwritten at most every checkpoint interval: the document's history stays small.
AUDIT_CHECKPOINT = "audit"


def put_audit_checkpoint(doc: Doc[Any], checkpoint: Mapping[str, Any]) -> None:
    _map(doc, INFO)[AUDIT_CHECKPOINT] = json.dumps(checkpoint, sort_keys=True)


def audit_checkpoint(doc: Doc[Any]) -> dict[str, Any] | None:
    found = _json_entries(doc, INFO).get(AUDIT_CHECKPOINT)
    return found if isinstance(found, dict) else None


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


def relay_view(doc: Doc[Any]) -> dict[str, dict[str, Any]]:
    """``doc`` as :func:`relay_problem` compares it: every plain map as stored, and each
    versioned map (``workloads``, ``locks``, ...) as readers see it (the best version per
    key, as JSON), never its raw version maps."""
    raw = {records.versions_map(n) for n in VERSIONED} | set(VERSIONED)
    out = {name: dict(v) for name, v in export_doc(doc).items() if name not in raw}
    for name in VERSIONED:
        found = records.read_records(doc, name)
        if found:
            out[name] = {k: json.dumps(v, sort_keys=True) for k, v in found.items()}
    return out


def relay_problem(
    before: Mapping[str, Mapping[str, Any]], after: Mapping[str, Mapping[str, Any]]
) -> str | None:
    """Why a change of the fleet document from ``before`` to ``after`` (both as
    :func:`relay_view` returns them) is more than a hub may sign, or None.

    A hub relays and drives rollouts that operators signed; it authors no spec or policy
    (issue 13 §6). So its own key may only add rollout facts (``rolloutSteps``: new keys, or
    another value for a fact a hub takes itself; never removed) and, when a rollout completes,
    make ``workloads[name]`` the candidate an operator put in ``rollouts[name]`` (compared as
    JSON with ``before``'s record, which the hub cannot have written). Every other map must
    stay as it was.
    """
    changed = sorted(
        (name, key)
        for name in set(before) | set(after)
        if not name.startswith("_")
        for key in set(before.get(name, {})) | set(after.get(name, {}))
        if before.get(name, {}).get(key) != after.get(name, {}).get(key)
    )
    for name, key in changed:
        old, new = before.get(name, {}).get(key), after.get(name, {}).get(key)
        if name == ROLLOUT_STEPS and (old is None or _rewrites_a_hub_fact(key, new)):
            continue
        if name == WORKLOADS and new is not None and _is_candidate(before, key, new):
            continue
        return f"{name}[{key!r}] may be written by an operator only, not by a hub's key"
    return None


# The facts a hub's driver takes (rollout/record.py): releasing a wave at one site, a gate that
# held, an end it judged. Not an operator's ``go/<k>/*`` promote, ``end/Aborted`` or ``pause/<n>``.
_HUB_FACT_RE = re.compile(r"[^/]+/(go/[0-9]+/[^*/][^/]*|gate/[0-9]+|end/Complete|end/RolledBack)\Z")


def _rewrites_a_hub_fact(key: str, raw: Any) -> bool:
    """Two hubs that take the same step write the same key with their own time in it; the
    CRDT keeps one, so the other's write arrives as a change of the key. The fact stays a fact
    (a JSON object: never a removal), and a hub may take that step anyway."""
    if not _HUB_FACT_RE.match(key) or not isinstance(raw, str):
        return False
    try:
        return isinstance(records.STORED.loads(raw), dict)
    except codec.DecodeError:
        return False


def _is_candidate(before: Mapping[str, Mapping[str, Any]], name: str, raw: Any) -> bool:
    record = before.get(ROLLOUTS, {}).get(name)
    if not isinstance(record, str) or not isinstance(raw, str):
        return False
    try:
        rollout, workload = records.STORED.loads(record), records.STORED.loads(raw)
    except codec.DecodeError:
        return False
    return isinstance(rollout, dict) and rollout.get("candidate") == workload
