"""Desired state of one node: fleet spec, then site override, then node override. Pure.

Precedence (later wins): fleet workload spec < site override < node override. A fleet policy
lock on a workload names fields that overrides may not change (``*`` locks every field); a
locked override is ignored here and refused when someone tries to write it.

Override fields (wire names):

    enabled             bool: false stops the workload on this node (kept, not deleted)
    image               str
    command, args       list of str
    env.<NAME>          str, or null to remove the variable
    restartPolicy       always | on-failure | never
    resources.cpus      number
    resources.memory    bytes or "256Mi"-style string
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from noderuntime.crdt.schema import LOCK_ALL, StateSnapshot
from noderuntime.errors import PolicyError, SpecError
from noderuntime.spec.models import Workload, canonical_dict, spec_hash
from noderuntime.spec.parse import workload_from_dict

SOURCE_FLEET = "fleet"
SOURCE_SITE = "site"
SOURCE_NODE = "node"

ENABLED = "enabled"
_SCALAR_FIELDS = {"image", "command", "args", "restartPolicy", "resources.cpus", "resources.memory"}
_ENV_RE = re.compile(r"^env\.[A-Za-z_][A-Za-z0-9_]*\Z")

# Labels every node matches on, besides its configured ones.
BUILTIN_NODE_LABEL = "noderuntime.io/node"
BUILTIN_SITE_LABEL = "noderuntime.io/site"


@dataclass(frozen=True)
class DesiredWorkload:
    name: str
    workload: Workload
    spec_hash: str
    enabled: bool = True
    # Where each overridable field's value came from: fleet, site or node.
    provenance: Mapping[str, str] = field(default_factory=dict)
    # Overrides that were ignored, and why (locked by policy, invalid value).
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class DesiredState:
    workloads: Mapping[str, DesiredWorkload]
    # Stored specs that no longer validate (e.g. written by a newer version): reported, not run.
    invalid: Mapping[str, str]
    # Workloads of the fleet whose nodeSelector does not match this node.
    not_selected: frozenset[str]


def is_override_field(path: str) -> bool:
    return path == ENABLED or path in _SCALAR_FIELDS or bool(_ENV_RE.match(path))


def is_locked(locks: frozenset[str], path: str) -> bool:
    if LOCK_ALL in locks or path in locks:
        return True
    # Locking "env" locks every env.<NAME>; locking "resources" locks its children.
    return any(path.startswith(lock + ".") for lock in locks)


def check_override(
    snapshot: StateSnapshot, workload: str, path: str, value: Any, *, removing: bool = False
) -> None:
    """Refuse an override that is not a known field, is locked, or makes the spec invalid."""
    if not is_override_field(path):
        raise SpecError(
            [],
            summary=(
                f"cannot override {path!r}: overridable fields are enabled, image, command, "
                "args, restartPolicy, resources.cpus, resources.memory and env.<NAME>"
            ),
        )
    locks = snapshot.fleet.locks.get(workload, frozenset())
    if is_locked(locks, path):
        raise PolicyError(
            f"fleet policy locks {path!r} of workload {workload!r}; "
            "ask an operator to change the fleet spec instead"
        )
    if removing:
        return
    if path == ENABLED:
        if not isinstance(value, bool):
            raise SpecError([], summary=f"override {path!r} must be true or false")
        return
    base = snapshot.fleet.workloads.get(workload)
    if base is None:
        raise SpecError([], summary=f"no workload {workload!r} in the fleet to override")
    merged = _set_path(copy.deepcopy(dict(base)), path, value)
    workload_from_dict(merged)  # raises SpecError naming the problem


def _set_path(spec_doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    spec = spec_doc.setdefault("spec", {})
    if path.startswith("env."):
        env = dict(spec.get("env") or {})
        name = path[4:]
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
        spec["env"] = env
    elif path.startswith("resources."):
        resources = dict(spec.get("resources") or {})
        resources[path.split(".", 1)[1]] = value
        spec["resources"] = resources
    else:
        spec[path] = value
    return spec_doc


def selector_matches(selector: Mapping[str, str], node_labels: Mapping[str, str]) -> bool:
    return all(node_labels.get(k) == v for k, v in selector.items())


def node_match_labels(node_id: str, site: str, labels: Mapping[str, str]) -> dict[str, str]:
    out = dict(labels)
    out[BUILTIN_NODE_LABEL] = node_id
    out[BUILTIN_SITE_LABEL] = site
    return out


def compute_desired(
    snapshot: StateSnapshot, *, node_id: str, site: str, node_labels: Mapping[str, str]
) -> DesiredState:
    labels = node_match_labels(node_id, site, node_labels)
    workloads: dict[str, DesiredWorkload] = {}
    invalid: dict[str, str] = {}
    not_selected: set[str] = set()
    for name, stored in sorted(snapshot.fleet.workloads.items()):
        try:
            base = workload_from_dict(dict(stored))
        except SpecError as exc:
            invalid[name] = str(exc)
            continue
        if base.metadata.name != name:
            invalid[name] = f"stored under {name!r} but named {base.metadata.name!r}"
            continue
        if not selector_matches(base.spec.node_selector, labels):
            not_selected.add(name)
            continue
        workloads[name] = _merge_overrides(
            name,
            base,
            locks=snapshot.fleet.locks.get(name, frozenset()),
            layers=[
                (SOURCE_SITE, snapshot.site_overrides.get(name, {})),
                (SOURCE_NODE, snapshot.node.overrides.get(name, {})),
            ],
        )
    return DesiredState(workloads, invalid, frozenset(not_selected))


def _merge_overrides(
    name: str,
    base: Workload,
    *,
    locks: frozenset[str],
    layers: list[tuple[str, Mapping[str, Any]]],
) -> DesiredWorkload:
    doc = canonical_dict(base)
    current = base
    enabled = True
    provenance: dict[str, str] = {}
    problems: list[str] = []
    for source, overrides in layers:
        for path, value in sorted(overrides.items()):
            if not is_override_field(path):
                problems.append(f"{source} override {path!r} ignored: not an overridable field")
                continue
            if is_locked(locks, path):
                problems.append(f"{source} override {path!r} ignored: locked by fleet policy")
                continue
            if path == ENABLED:
                if isinstance(value, bool):
                    enabled = value
                    provenance[ENABLED] = source
                else:
                    problems.append(f"{source} override 'enabled' ignored: not true/false")
                continue
            candidate = _set_path(copy.deepcopy(doc), path, value)
            try:
                current = workload_from_dict(candidate)
            except SpecError as exc:
                problems.append(
                    f"{source} override {path!r} ignored: "
                    f"{exc.problems[0].message if exc.problems else exc}"
                )
                continue
            doc = candidate
            provenance[path] = source
    return DesiredWorkload(
        name=name,
        workload=current,
        spec_hash=spec_hash(current),
        enabled=enabled,
        provenance=provenance,
        problems=tuple(problems),
    )
