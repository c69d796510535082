"""Bounded JSON: every decoder of what a peer, a client or the disk hands us goes through here.

Python's ``json`` recurses once per nesting level, so ``"[" * 3000`` raises ``RecursionError``
(not ``ValueError``) and a value nested 900 deep decodes but breaks whatever walks it next
(``json.dumps``, pydantic, ``copy.deepcopy``). Nothing a node stores or serves needs more than a
few levels, so depth and size are bounded before decoding, and already-decoded values (YAML from
the CLI) are checked without recursion.
"""

from __future__ import annotations

import json
from itertools import accumulate
from typing import Any

# Workload specs nest about 6 deep (spec.probes.liveness.httpGet.headers...); 64 leaves room
# for any legitimate value and stays far below the interpreter's recursion limit.
MAX_DEPTH = 64
# One stored record or request value; the sync layer bounds a whole update at 256 KiB.
MAX_BYTES = 1 << 20
# Items in one decoded value: what MAX_BYTES of JSON could hold at most, roughly.
MAX_ITEMS = 1 << 19

_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'"[]{}')
_DEPTH_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


class DecodeError(ValueError):
    """A value that is not bounded, well-formed JSON; says what is wrong."""


def check_depth(text: str, max_depth: int = MAX_DEPTH) -> None:
    """Raise DecodeError if brackets outside strings nest deeper than ``max_depth``."""
    if text.count("[") + text.count("{") <= max_depth:
        return  # cannot nest deeper than it has brackets: the common case, no scan
    # Escapes go first (pairs of backslashes, then escaped quotes), so every quote left opens or
    # closes a string; then every byte but quotes and brackets goes, and what lies between
    # quotes: all in C. (A regex over the escaped strings took 0.27 s on the 2.7 MB answer of
    # 10,000 fleet rows, bench/fleet_view.py; this takes ~15 ms.)
    bare = text.replace("\\\\", "").replace('\\"', "").encode("utf-8", "surrogatepass")
    # Even pieces are outside strings; a string never closed (invalid JSON, which json.loads
    # rejects) drops out with its contents.
    brackets = b"".join(bare.translate(None, _NOT_STRUCTURE).split(b'"')[::2])
    if brackets and max(accumulate(map(_DEPTH_STEP.__getitem__, brackets))) > max_depth:
        raise DecodeError(f"nested deeper than {max_depth} levels")


def loads(
    text: str | bytes | bytearray, *, max_bytes: int = MAX_BYTES, max_depth: int = MAX_DEPTH
) -> Any:
    """``json.loads`` with size and depth bounded; every failure is a DecodeError."""
    if len(text) > max_bytes:
        raise DecodeError(f"{len(text)} bytes is more than the {max_bytes} allowed")
    if not isinstance(text, str):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DecodeError(f"not UTF-8 (byte {exc.start})") from None
    check_depth(text, max_depth)
    try:
        return json.loads(text)
    except RecursionError:
        raise DecodeError(f"nested deeper than {max_depth} levels") from None
    except ValueError as exc:
        raise DecodeError(f"not valid JSON: {exc}") from None


def check_value(value: Any, max_depth: int = MAX_DEPTH, max_items: int = MAX_ITEMS) -> None:
    """Raise DecodeError if a decoded value (lists and dicts) nests deeper than ``max_depth``.

    Iterative, so it is safe on the very values it exists to refuse.
    """
    stack: list[tuple[Any, int]] = [(value, 1)]
    seen = 0
    while stack:
        item, depth = stack.pop()
        seen += 1
        if seen > max_items:  # also ends a self-referential value (YAML aliases can make one)
            raise DecodeError(f"more than {max_items} items")
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        if depth > max_depth:
            raise DecodeError(f"nested deeper than {max_depth} levels")
        stack.extend((child, depth + 1) for child in children)


class DecodeCache:
    """``loads`` remembered by the exact text, for stored records read again and again.

    Every write moves the store's generation and the next snapshot decodes every record of its
    documents again, though nearly all are the same text as before: that decoding was the
    largest cost of a durable apply. Values handed out are shared between callers, as
    snapshots already are: read-only. Bounded by total text size; full, it starts over.
    """

    def __init__(self, max_chars: int = 8 << 20) -> None:
        self._values: dict[str, Any] = {}
        self._chars = 0
        self._max_chars = max_chars
        self.hits = 0

    def loads(self, text: str) -> Any:
        try:
            value = self._values[text]
        except KeyError:
            pass
        else:
            self.hits += 1
            return value
        value = loads(text)
        if self._chars + len(text) > self._max_chars:
            self._values.clear()
            self._chars = 0
        if len(text) <= self._max_chars // 8:
            self._values[text] = value
            self._chars += len(text)
        return value
