"""Whole records settled by HLC, not by the CRDT's client order (issue 9, section 4).

A pycrdt map keeps one value per key, and of two concurrent sets of one key it keeps the one
whose client id sorts last: an operator's earlier apply could beat a later one. So each writer
puts its version of a record under a key of its own, ``<record>#<client id>``, in a versions map
beside the record's map (``workloads`` -> ``workloadVersions``), and readers take the version
with the highest (HLC, client id) (:mod:`noderuntime.crdt.hlc`). A write removes every version
of the record it has seen, so only versions written concurrently stay side by side, and the
losers stay readable until the record's next write: :func:`contests` shows who lost to whom.
A deletion is a version too (a tombstone), so a delete and a concurrent write are settled by
time like two writes.

Stored forms (JSON strings, signed with the update that writes them):

    <map>          <record>           -> the record as written before HLCs (older nodes read it)
    <map>Versions  <record>#<client>  -> {"hlc": "<wall_ms>:<n>", "v": <record>}
                                         {"hlc": "<wall_ms>:<n>", "deleted": true}

A record that exists only in ``<map>`` (written before HLCs) reads as one version with HLC 0, so
any versioned write supersedes it. Writers leave that copy in place (a deletion removes it):
nodes older than versions keep reading it, so they miss later changes until upgraded, and see
deletions, but never lose a record to a key they do not understand. A copy of every value in
``<map>`` would keep them current, at twice the bytes per write (half the largest record an
update may carry): not worth it for an upgrade window.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pycrdt import Doc, Map

from noderuntime import codec
from noderuntime.crdt.hlc import ZERO, Hlc, next_hlc

# Every stored record is decoded through this one cache (see codec.DecodeCache for why).
STORED = codec.DecodeCache()

SLOT_SEP = "#"
LEGACY_CLIENT = 0  # the "client" of a record written before versions

log = logging.getLogger(__name__)

# Where a reader reports versions it set aside: (map, record key, reason).
Bad = list[tuple[str, str, str]]


def versions_map(name: str) -> str:
    return f"{name[:-1] if name.endswith('s') else name}Versions"


@dataclass(frozen=True)
class Version:
    """One writer's version of a record."""

    client: int
    hlc: Hlc
    value: Any = None
    deleted: bool = False

    @property
    def rank(self) -> tuple[Hlc, int]:
        return (self.hlc, self.client)


@dataclass(frozen=True)
class Contest:
    """A record written concurrently: the version read, and the ones that lost to it."""

    map: str
    key: str
    won: Version
    lost: tuple[Version, ...]


def _map(doc: Doc[Any], name: str) -> Map[Any]:
    m: Map[Any] = doc.get(name, type=Map)
    return m


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _slot_parts(slot: str) -> tuple[str, int] | None:
    key, sep, client = slot.rpartition(SLOT_SEP)
    if not sep or not key or not client.isascii() or not client.isdigit() or len(client) > 20:
        return None
    return key, int(client)


def _decode_version(client: int, raw: object) -> Version:
    if not isinstance(raw, str):
        raise codec.DecodeError(f"a {type(raw).__name__}, not a JSON string")
    obj = STORED.loads(raw)
    if not isinstance(obj, dict):
        raise codec.DecodeError("a record version is a JSON object")
    try:
        hlc = Hlc.decode(obj.get("hlc"))
    except ValueError as exc:
        raise codec.DecodeError(str(exc)) from exc
    if obj.get("deleted") is True:
        return Version(client, hlc, None, deleted=True)
    if "v" not in obj:
        raise codec.DecodeError("a record version holds a value ('v') or 'deleted'")
    return Version(client, hlc, obj["v"])


def _set_aside(bad: Bad | None, name: str, key: str, reason: str) -> None:
    if bad is not None:
        bad.append((name, key[:200], reason[:200]))
    log.debug("setting aside unreadable %s entry %.200r: %s", name, key, reason)


def read_versions(
    doc: Doc[Any], name: str, keys: Iterable[str] | None = None, bad: Bad | None = None
) -> dict[str, list[Version]]:
    """Every readable version of each record of map ``name`` (of ``keys`` only, if given),
    best first. A record's copy from before versions is read only if it has no other."""
    wanted = set(keys) if keys is not None else None
    out: dict[str, list[Version]] = {}
    versions = _map(doc, versions_map(name))
    if wanted is None:
        entries: Iterable[tuple[str, Any]] = versions.items()
    else:  # a write looks up a few records among many: keys first, values of those only
        slots = [s for s in map(str, list(versions.keys())) if s.rpartition(SLOT_SEP)[0] in wanted]
        entries = [(s, versions.get(s)) for s in slots]
    for slot, raw in entries:
        parts = _slot_parts(str(slot))
        if parts is None:
            _set_aside(bad, name, str(slot), "not a '<record>#<client id>' version key")
            continue
        key, client = parts
        try:
            version = _decode_version(client, raw)
        except codec.DecodeError as exc:
            _set_aside(bad, name, key, f"version of client {client}: {exc}")
            continue
        out.setdefault(key, []).append(version)
    plain = _map(doc, name)
    for key in map(str, list(plain.keys()) if wanted is None else wanted):
        if key in out or key not in plain:
            continue  # HLC 0: it loses to any version, and older nodes keep it
        raw = plain.get(key)
        try:
            if not isinstance(raw, str):
                raise codec.DecodeError(f"a {type(raw).__name__}, not a JSON string")
            out[key] = [Version(LEGACY_CLIENT, ZERO, STORED.loads(raw))]
        except codec.DecodeError as exc:
            _set_aside(bad, name, key, str(exc))
    for found in out.values():
        found.sort(key=lambda v: v.rank, reverse=True)
    return out


def read_records(doc: Doc[Any], name: str, bad: Bad | None = None) -> dict[str, Any]:
    """The records of map ``name``: per key, the value of its best version (deleted: absent)."""
    versions = read_versions(doc, name, bad=bad)
    return {k: vs[0].value for k, vs in versions.items() if not vs[0].deleted}


def exported_record(maps: Mapping[str, Mapping[str, Any]], name: str, key: str) -> Any:
    """What readers take for record ``key`` of map ``name``, from one document's export
    (``schema.export_doc``, the ``state.export`` route); None if absent or deleted.

    For tests and tools that compare replicas through the debug export.
    """
    versions: list[Version] = []
    for slot, raw in (maps.get(versions_map(name)) or {}).items():
        parts = _slot_parts(str(slot))
        if parts is not None and parts[0] == key:
            with contextlib.suppress(codec.DecodeError):
                versions.append(_decode_version(parts[1], raw))
    if versions:
        best = max(versions, key=lambda v: v.rank)
        return None if best.deleted else best.value
    raw = (maps.get(name) or {}).get(key)
    return STORED.loads(raw) if isinstance(raw, str) else None


def contests(doc: Doc[Any], name: str) -> list[Contest]:
    """Records of map ``name`` whose versions were written concurrently (a version lost).

    The copy kept for older nodes (HLC 0) is not a contender.
    """
    out = []
    for key, versions in sorted(read_versions(doc, name).items()):
        lost = tuple(v for v in versions[1:] if v.client != LEGACY_CLIENT)
        if lost:
            out.append(Contest(name, key, versions[0], lost))
    return out


def write_hlc(doc: Doc[Any], name: str, keys: Iterable[str], now_s: float) -> Hlc:
    """The HLC of a write of records ``keys`` at ``now_s``: later than every version held."""
    seen = [vs[0].hlc for vs in read_versions(doc, name, keys).values() if vs]
    return next_hlc(max(seen, default=ZERO), now_s)


def _supersede(doc: Doc[Any], name: str, keys: Iterable[str]) -> None:
    """Remove every version of ``keys`` this doc holds: the write about to be made saw them."""
    wanted = set(keys)
    versions = _map(doc, versions_map(name))
    for slot in map(str, list(versions.keys())):
        if slot.rpartition(SLOT_SEP)[0] in wanted:
            del versions[slot]


def has_any(doc: Doc[Any], name: str, key: str) -> bool:
    """Whether any version of record ``key`` is stored, readable or not (plain copy aside)."""
    if versions_map(name) not in doc.keys():  # noqa: SIM118 - pycrdt types no __contains__
        return False
    versions = _map(doc, versions_map(name))
    return any(s.rpartition(SLOT_SEP)[0] == key for s in map(str, list(versions.keys())))


def remove_all(doc: Doc[Any], name: str, key: str) -> bool:
    """Remove every version of record ``key``, readable or not (a repair: no tombstone)."""
    if not has_any(doc, name, key):
        return False
    _supersede(doc, name, [key])
    return True


def put_records(doc: Doc[Any], name: str, values: Mapping[str, Any], hlc: Hlc) -> None:
    """Write whole records ``values`` into map ``name`` as of ``hlc``.

    A copy from before versions stays: nodes older than versions go on reading it (they miss
    the change rather than lose the record).
    """
    _supersede(doc, name, values)
    versions = _map(doc, versions_map(name))
    for key, value in values.items():
        versions[f"{key}{SLOT_SEP}{doc.client_id}"] = _dumps({"hlc": hlc.encode(), "v": value})


def delete_records(doc: Doc[Any], name: str, keys: Iterable[str], hlc: Hlc) -> list[str]:
    """Delete the records ``keys`` of map ``name`` as of ``hlc``; returns those that existed.

    A copy from before versions goes too, so older nodes see the deletion.
    """
    live = [k for k, vs in read_versions(doc, name, keys).items() if vs and not vs[0].deleted]
    if not live:
        return []
    _supersede(doc, name, live)
    versions = _map(doc, versions_map(name))
    plain = _map(doc, name)
    for key in live:
        versions[f"{key}{SLOT_SEP}{doc.client_id}"] = _dumps({"hlc": hlc.encode(), "deleted": True})
        if key in plain:
            del plain[key]
    return live
