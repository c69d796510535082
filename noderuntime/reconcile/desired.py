"""Desired state of one node: fleet spec, then site override, then node override. Pure.

Precedence (later wins): fleet workload spec < site override < node override. During a staged
rollout the fleet layer is the rollout's candidate or the stable spec, as the rollout record says
for this node (``noderuntime.rollout.waves.pick``); overrides keep their precedence over both.
A fleet policy lock on a workload names fields that overrides may not change (``*`` locks every
field); a locked override is ignored here and refused when someone tries to write it.

The fields an override may set are :data:`OVERRIDE_FIELDS`, the one list of them: messages
name them from it, and the control API serves it (``overrides.fields``) to the TUI. Of those,
the ones that widen what a workload does to its host (:data:`POLICY_FIELDS`: ``image``,
``command``, ``args``, and ``resources`` *raised* above the fleet spec's) need the fleet policy
to allow them (``override:image``, ...; issue 13 §6): a technician's PIN does not widen
privilege. ``enabled``, ``env``, ``restartPolicy`` and resources lowered need nothing.

Fleet workload security policy (:mod:`noderuntime.spec.policy`) is checked here too, with this
node's site and its own protected paths (data dir, Podman socket): a workload it refuses is
reported (``invalid``, with the reason) and never started.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from noderuntime.crdt import schema
from noderuntime.crdt.schema import LOCK_ALL, StateSnapshot
from noderuntime.errors import PolicyError, SpecError
from noderuntime.rollout.record import progress_of, rollout_of
from noderuntime.rollout.waves import NodeFacts, pick
from noderuntime.spec import policy
from noderuntime.spec.models import Workload, canonical_dict, spec_hash
from noderuntime.spec.parse import workload_from_dict

SOURCE_FLEET = "fleet"
SOURCE_SITE = "site"
SOURCE_NODE = "node"

ENABLED = "enabled"
# In a field of OVERRIDE_FIELDS, stands for any name: env.<NAME> is one environment variable.
ANY_NAME = "<NAME>"
# Wire names, in the order messages list them.
OVERRIDE_FIELDS: tuple[str, ...] = (
    ENABLED,  # bool: false stops the workload on this node (kept, not deleted)
    "image",  # str
    "command",  # list of str
    "args",  # list of str
    "restartPolicy",  # always | on-failure | never
    "resources.cpus",  # number
    "resources.memory",  # bytes or "256Mi"-style string
    f"env.{ANY_NAME}",  # str, or null to remove the variable
)
_FIXED_FIELDS = frozenset(f for f in OVERRIDE_FIELDS if ANY_NAME not in f)
# Overrides that need the fleet policy's `override:<group>` (resources: only when raised).
POLICY_FIELDS: tuple[str, ...] = ("image", "command", "args", "resources.cpus", "resources.memory")
# Wire prefix of a workload refused by fleet policy at this node (a view shows it as is).
REFUSED_BY_POLICY = "refused by fleet policy"
_ENV_RE = re.compile(r"^env\.[A-Za-z_][A-Za-z0-9_]*\Z")
# A lock may name a whole group of fields: "env" locks every env.<NAME>.
LOCK_GROUPS: tuple[str, ...] = tuple(
    sorted({f.partition(".")[0] for f in OVERRIDE_FIELDS if "." in f})
)
# What `policy.lock` accepts besides LOCK_ALL, in the order its message lists them: single
# fields, then each group followed by its fields.
LOCKABLE_FIELDS: tuple[str, ...] = tuple(f for f in OVERRIDE_FIELDS if "." not in f) + tuple(
    item
    for group in LOCK_GROUPS
    for item in (group, *(f for f in OVERRIDE_FIELDS if f.startswith(group + ".")))
)

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
    return path in _FIXED_FIELDS or bool(_ENV_RE.match(path))


def is_lockable(path: str) -> bool:
    return path == LOCK_ALL or path in LOCK_GROUPS or is_override_field(path)


def word_list(items: tuple[str, ...]) -> str:
    """``a, b and c``."""
    return ", ".join(items[:-1]) + " and " + items[-1] if len(items) > 1 else "".join(items)


def is_locked(locks: frozenset[str], path: str) -> bool:
    if LOCK_ALL in locks or path in locks:
        return True
    # Locking "env" locks every env.<NAME>; locking "resources" locks its children.
    return any(path.startswith(lock + ".") for lock in locks)


def widening(path: str, value: Any, base: Mapping[str, Any]) -> bool:
    """True if overriding ``path`` with ``value`` over the fleet spec ``base`` (canonical
    JSON) needs the fleet policy's ``override:<group>``: image, command and args always;
    resources when raised above the fleet spec's (a limit the fleet spec does not set is
    always a lowering; an unreadable value is refused anyway)."""
    if path not in POLICY_FIELDS:
        return False
    if not path.startswith("resources."):
        return True
    current = (base.get("spec", {}).get("resources") or {}).get(path.split(".", 1)[1])
    if current is None:
        return False
    try:
        merged = workload_from_dict(_set_path(copy.deepcopy(dict(base)), path, value))
    except SpecError:
        return False
    resources = merged.spec.resources
    new = None if resources is None else getattr(resources, _RESOURCE_ATTR[path])
    return new is None or new > current


_RESOURCE_ATTR = {"resources.cpus": "cpus", "resources.memory": "memory_bytes"}


def override_allowance(path: str) -> str:
    return f"{policy.OVERRIDE}:{path.partition('.')[0]}"


def _override_allowed(allowed: frozenset[str], path: str) -> bool:
    return policy.allows(allowed, policy.OVERRIDE, path.partition(".")[0])


def check_override(
    snapshot: StateSnapshot,
    workload: str,
    path: str,
    value: Any,
    *,
    removing: bool = False,
    site: str | None = None,
) -> None:
    """Refuse an override that is not a known field, is locked, widens privilege without the
    fleet policy allowing it (at ``site``), or makes the spec invalid."""
    if not is_override_field(path):
        raise SpecError(
            [],
            summary=(
                f"cannot override {path!r}: overridable fields are {word_list(OVERRIDE_FIELDS)}"
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
    allowed = policy.allowed_for(snapshot.fleet.policy, workload, site)
    allowance = override_allowance(path)
    if widening(path, value, base) and not _override_allowed(allowed, path):
        raise PolicyError(
            f"overriding {path!r} of workload {workload!r} widens what it may do, which the "
            f"fleet policy does not allow; an operator may allow it with `noderuntime policy "
            f"allow {allowance} --workload {workload} --as FLEETDIR`, or change the fleet spec"
        )
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
    return DesiredMemo(node_id=node_id, site=site, node_labels=node_labels)(snapshot)


# One workload's outcome: desired here, stored spec invalid (why), or not selected here.
_Outcome = DesiredWorkload | str | None
# What one workload's outcome is computed from: stored spec, locks, site and node overrides,
# and what the fleet policy allows it here.
_Inputs = tuple[
    Mapping[str, Any], frozenset[str], Mapping[str, Any], Mapping[str, Any], frozenset[str]
]


class DesiredMemo:
    """:func:`compute_desired`, remembered: only what changed is validated again.

    The reconciler asks on every pass, and pydantic validation of every workload and override
    layer was most of an idle pass's CPU. The snapshot's generation answers "nothing changed"
    at once. When it moved, each workload's inputs are compared with the last ones (dict
    equality, far cheaper than validation) and only workloads whose inputs changed are
    validated: the node's own status writes move the generation but change no input.
    Outcomes are returned as the same objects while unchanged, so callers may memoise on
    identity. ``validations`` counts workloads validated (for tests and benchmarks).
    """

    def __init__(
        self,
        *,
        node_id: str,
        site: str,
        node_labels: Mapping[str, str],
        protected_paths: tuple[str, ...] = (),
    ) -> None:
        self._labels = node_match_labels(node_id, site, node_labels)
        self._site = site
        # The node's own paths (data dir, Podman socket) on top of the static ones.
        self._protected = (*policy.PROTECTED_PATHS, *protected_paths)
        self._facts = NodeFacts(node_id, site, dict(node_labels))
        self._generation: int | None = None
        self._state: DesiredState | None = None
        self._outcomes: dict[str, tuple[_Inputs, _Outcome]] = {}
        self.validations = 0

    def __call__(self, snapshot: StateSnapshot) -> DesiredState:
        if self._state is not None and snapshot.generation == self._generation:
            return self._state
        outcomes: dict[str, tuple[_Inputs, _Outcome]] = {}
        changed = self._state is None
        fleet = snapshot.fleet
        for name in sorted(set(fleet.workloads) | set(fleet.rollouts)):
            stored = self._fleet_layer(snapshot, name)
            if stored is None:
                continue
            inputs: _Inputs = (
                stored,
                snapshot.fleet.locks.get(name, frozenset()),
                snapshot.site_overrides.get(name, {}),
                snapshot.node.overrides.get(name, {}),
                policy.allowed_for(fleet.policy, name, self._site),
            )
            cached = self._outcomes.get(name)
            if cached is not None and cached[0] == inputs:
                outcomes[name] = cached
                continue
            changed = True
            self.validations += 1
            outcomes[name] = (inputs, self._desire(name, inputs))
        changed = changed or outcomes.keys() != self._outcomes.keys()
        self._outcomes = outcomes
        self._generation = snapshot.generation
        if changed or self._state is None:
            self._state = _collect(outcomes)
        return self._state

    def _fleet_layer(self, snapshot: StateSnapshot, name: str) -> Mapping[str, Any] | None:
        """The stable spec, or the rollout's candidate where this node's wave is released."""
        fleet = snapshot.fleet
        stable = fleet.workloads.get(name)
        rollout = rollout_of(fleet, name)
        if rollout is None:
            return stable
        try:
            return pick(stable, rollout, progress_of(fleet, rollout.id), self._facts)
        except SpecError:
            return stable  # a record with waves nobody can read: stay on the stable spec

    def _desire(self, name: str, inputs: _Inputs) -> _Outcome:
        stored, locks, site_overrides, node_overrides, allowed = inputs
        try:
            base = workload_from_dict(dict(stored))
        except SpecError as exc:
            return str(exc)
        if base.metadata.name != name:
            return f"stored under {name!r} but named {base.metadata.name!r}"
        if not selector_matches(base.spec.node_selector, self._labels):
            return None
        desired = _merge_overrides(
            name,
            base,
            locks=locks,
            allowed=allowed,
            layers=[(SOURCE_SITE, site_overrides), (SOURCE_NODE, node_overrides)],
        )
        refused = policy.refusals(desired.workload, allowed, protected_paths=self._protected)
        if refused:
            return f"{REFUSED_BY_POLICY}: " + "; ".join(
                f"{_wire(r.loc)}: {r.message}" for r in refused
            )
        return desired


def _collect(outcomes: Mapping[str, tuple[_Inputs, _Outcome]]) -> DesiredState:
    workloads: dict[str, DesiredWorkload] = {}
    invalid: dict[str, str] = {}
    not_selected: set[str] = set()
    for name, (_, outcome) in outcomes.items():
        if isinstance(outcome, DesiredWorkload):
            workloads[name] = outcome
        elif isinstance(outcome, str):
            invalid[name] = outcome
        else:
            not_selected.add(name)
    return DesiredState(workloads, invalid, frozenset(not_selected))


def _wire(loc: tuple[str | int, ...]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")


def _merge_overrides(
    name: str,
    base: Workload,
    *,
    locks: frozenset[str],
    allowed: frozenset[str] = frozenset(),
    layers: list[tuple[str, Mapping[str, Any]]],
) -> DesiredWorkload:
    doc = canonical_dict(base)
    fleet_doc = doc
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
            allowance = override_allowance(path)
            if widening(path, value, fleet_doc) and not _override_allowed(allowed, path):
                problems.append(
                    f"{source} override {path!r} ignored: widens the workload, which the "
                    f"fleet policy does not allow ({allowance})"
                )
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


def quarantined_workloads(snap: StateSnapshot) -> frozenset[str]:
    """Workloads one of whose records (spec, lock, override, status) was set aside as unreadable.

    What runs for them is left alone: the record that would say what is wanted is unknown.
    """
    names: set[str] = set()
    for record in snap.quarantined:
        name = record.key.partition("/")[0] if record.map == schema.OVERRIDES else record.key
        if name:
            names.add(name)
    return frozenset(names)
