"""Fleet rows as `get workloads --fleet -o json` prints them: ``json.dumps(rows, indent=2,
sort_keys=True)`` (docs/json-output.md), built from one template per row (:func:`row_templates`).

The hub keeps a row's text until its node's status document changes, with a ``%s`` slot for
each field that ages (``last_seen``, ``stale``, ``age_s``); a call fills the slots. The CLI then
writes the text as it comes instead of decoding 2.7 MB of rows and encoding them again
(bench/fleet_view.py). Pure; unit-tested against ``json.dumps`` itself.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Collection, Mapping, Sequence
from typing import Any


def row_templates(rows: Sequence[Mapping[str, Any]], slots: Collection[str]) -> list[str]:
    """Each row of the indented list: its fields encoded, a ``%s`` for each key of ``slots``
    (filled in :func:`slot_order`; a slot wins over a field of the same key), keys sorted; a
    literal ``%`` doubled.

    Rows of one key set and scalar values (a node's fleet rows) are encoded in one pass of the
    C encoder and dropped into one format per key set: ~15 us a row (escaped for the wire
    too), where ``json.dumps(indent=2)`` per value took ~75 us (at load 3; 10,000 rows).
    """
    if not rows:
        return []
    keys = tuple(sorted({*rows[0], *slots}))
    fields = [k for k in keys if k not in slots]
    if not all(row.keys() == rows[0].keys() for row in rows) or any(
        type(v) not in _SCALARS for row in rows for v in map(row.__getitem__, fields)
    ):
        return [_row_template_slow(row, slots) for row in rows]
    base = _base(keys, frozenset(slots))
    width = len(fields)
    if not width:
        return [base % ()] * len(rows)
    encoded = _VALUES.encode([row[k] for row in rows for k in fields])
    values = encoded[1:-1].replace("%", "%%").split("\n")
    return [base % tuple(values[i : i + width]) for i in range(0, len(values), width)]


def _row_template_slow(fields: Mapping[str, Any], slots: Collection[str]) -> str:
    lines = []
    for key in sorted({*fields, *slots}):
        value = "%s" if key in slots else _indented(fields[key]).replace("%", "%%")
        lines.append(f"    {json.dumps(key).replace('%', '%%')}: {value}")
    return "  {\n" + ",\n".join(lines) + "\n  }"


@functools.lru_cache(maxsize=64)
def _base(keys: tuple[str, ...], slots: frozenset[str]) -> str:
    """A format over a row's field values giving its template: keys' ``%`` doubled twice,
    slots as ``%%s`` (``%s`` once formatted)."""
    lines = [
        f"    {json.dumps(k).replace('%', '%%%%')}: {'%%s' if k in slots else '%s'}" for k in keys
    ]
    return "  {\n" + ",\n".join(lines) + "\n  }"


# Encoded one after another, split on the newline separator (cli/jsontext.py does the same).
_VALUES = json.JSONEncoder(separators=("\n", ":"))
_SCALARS = frozenset({str, int, float, bool, type(None)})


def slot_order(slots: Collection[str]) -> list[str]:
    """The slot keys in the order their ``%s`` appear in :func:`row_template`'s text (a
    slot wins over a field of the same key)."""
    return sorted(set(slots))


def _indented(value: Any) -> str:
    # A value two levels down: json.dumps indents its inner lines from column 0, the list of
    # rows from column 4. (Row values are scalars; this keeps a nested one right anyway.)
    return json.dumps(value, indent=2, sort_keys=True).replace("\n", "\n    ")
