"""Which (client, clock) ranges a pycrdt update carries, read from its bytes; state vectors.

Anti-entropy needs, for every stored signed update, the clock range it covers per client, so a
peer's state vector selects exactly the updates it lacks (``SELECT ... WHERE clock_end > ?``).
``pycrdt.get_state(update)`` does not give that for incremental updates (it integrates into an
empty document and reports nothing for an update whose dependencies are absent), so this module
parses the Yjs/Yrs v1 update encoding itself:

    update      = structs delete_set
    structs     = varuint n_clients, n_clients x (varuint n_blocks, varuint client,
                  varuint clock, n_blocks x block)
    delete_set  = varuint n_clients, n_clients x (varuint client, varuint n_ranges,
                  n_ranges x (varuint clock, varuint len))

The parser is strict and bounded: every read checks the remaining length, nesting depth is
capped, and any byte sequence it cannot account for exactly raises :class:`UpdateFormatError`.
It runs (after signature and ACL checks) before pycrdt sees the bytes, so it doubles as a
structural gate in front of the Rust decoder.

A *delete-only* update (deleting a map key creates no new struct) covers no clock range and would
be invisible to state-vector anti-entropy; :func:`noderuntime.crdt.state.StateStore.write`
anchors such writes with a tiny struct so every update the runtime produces covers a clock range.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field

MAX_DEPTH = 32
MAX_VARUINT_BYTES = 10  # 64-bit
# Client ids and clocks must fit SQLite's signed 64-bit INTEGER.
MAX_ID = 2**63 - 1
# Block info byte: content ref in the low 5 bits; flags in the high bits.
_HAS_ORIGIN = 0x80
_HAS_RIGHT_ORIGIN = 0x40
_HAS_PARENT_SUB = 0x20
_CONTENT_MASK = 0x1F
_GC = 0
_SKIP = 10


class UpdateFormatError(ValueError):
    """The bytes are not a well-formed v1 update (or a state vector)."""


@dataclass(frozen=True)
class UpdateClocks:
    """Per client id: (first clock, end clock) of the structs an update carries."""

    ranges: Mapping[int, tuple[int, int]] = field(default_factory=dict)
    deletes: int = 0  # number of delete ranges

    @property
    def anchored(self) -> bool:
        return bool(self.ranges)


class _Reader:
    __slots__ = ("buf", "pos")

    def __init__(self, buf: bytes) -> None:
        self.buf = buf
        self.pos = 0

    def remaining(self) -> int:
        return len(self.buf) - self.pos

    def byte(self) -> int:
        if self.pos >= len(self.buf):
            raise UpdateFormatError("truncated")
        b = self.buf[self.pos]
        self.pos += 1
        return b

    def uint(self) -> int:
        value = 0
        shift = 0
        for _ in range(MAX_VARUINT_BYTES):
            b = self.byte()
            value |= (b & 0x7F) << shift
            if b < 0x80:
                return value
            shift += 7
        raise UpdateFormatError("varuint too long")

    def sint(self) -> None:
        # lib0 signed varint: first byte has sign bit 0x40 and 6 data bits.
        b = self.byte()
        if b & 0x80:
            for _ in range(MAX_VARUINT_BYTES):
                if self.byte() < 0x80:
                    return
            raise UpdateFormatError("varint too long")

    def take(self, n: int) -> bytes:
        if n < 0 or n > self.remaining():
            raise UpdateFormatError("truncated")
        out = self.buf[self.pos : self.pos + n]
        self.pos += n
        return out

    def string(self) -> str:
        raw = self.take(self.uint())
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise UpdateFormatError("invalid UTF-8 string") from exc

    def count(self) -> int:
        """A length prefix for a list of at least one byte per element: bounded by the input."""
        n = self.uint()
        if n > self.remaining():
            raise UpdateFormatError("count exceeds input")
        return n


def _utf16_len(s: str) -> int:
    return len(s.encode("utf-16-le")) // 2


def _skip_any(r: _Reader, depth: int = 0) -> None:
    if depth > MAX_DEPTH:
        raise UpdateFormatError("value nested too deeply")
    tag = r.byte()
    if tag in (127, 126, 121, 120):  # undefined, null, false, true
        return
    if tag == 125:  # integer
        r.sint()
    elif tag == 124:  # float32
        r.take(4)
    elif tag in (123, 122):  # float64, bigint
        r.take(8)
    elif tag == 119:  # string
        r.string()
    elif tag == 118:  # object
        for _ in range(r.count()):
            r.string()
            _skip_any(r, depth + 1)
    elif tag == 117:  # array
        for _ in range(r.count()):
            _skip_any(r, depth + 1)
    elif tag == 116:  # buffer
        r.take(r.uint())
    else:
        raise UpdateFormatError(f"unknown value tag {tag}")


def _content_len(r: _Reader, ref: int) -> int:
    """Skip one item's content; return its length in clock units."""
    if ref == 1:  # deleted
        return r.uint()
    if ref == 2:  # JSON strings
        n = r.count()
        for _ in range(n):
            r.string()
        return n
    if ref == 3:  # binary
        r.take(r.uint())
        return 1
    if ref == 4:  # string: length in UTF-16 code units
        return _utf16_len(r.string())
    if ref == 5:  # embed
        r.string()
        return 1
    if ref == 6:  # format
        r.string()
        r.string()
        return 1
    if ref == 7:  # type
        type_ref = r.uint()
        if type_ref in (3, 5):  # XmlElement, XmlHook carry a name
            r.string()
        return 1
    if ref == 8:  # any
        n = r.count()
        for _ in range(n):
            _skip_any(r)
        return n
    if ref == 9:  # subdoc
        r.string()
        _skip_any(r)
        return 1
    raise UpdateFormatError(f"unsupported content type {ref}")


def _skip_id(r: _Reader) -> None:
    r.uint()
    r.uint()


# A local write's update is parsed three times on its way to disk (anchoring, the store's
# clock rows, the state's stored clocks); small ones are remembered, by their bytes.
_CACHED_UPDATE_BYTES = 16 * 1024


def parse_update(data: bytes) -> UpdateClocks:
    """The clock range per client an update carries; raises :class:`UpdateFormatError`."""
    if len(data) <= _CACHED_UPDATE_BYTES:
        return _parse_cached(bytes(data))
    return _parse_update(data)


@functools.lru_cache(maxsize=128)
def _parse_cached(data: bytes) -> UpdateClocks:
    return _parse_update(data)


def _parse_update(data: bytes) -> UpdateClocks:
    r = _Reader(data)
    ranges: dict[int, tuple[int, int]] = {}
    for _ in range(r.count()):
        n_blocks = r.count()
        client = r.uint()
        start = r.uint()
        if client > MAX_ID or start > MAX_ID:
            raise UpdateFormatError("client id or clock out of range")
        clock = start
        for _ in range(n_blocks):
            info = r.byte()
            ref = info & _CONTENT_MASK
            if info in (_GC, _SKIP):
                length = r.uint()
            else:
                if info & _HAS_ORIGIN:
                    _skip_id(r)
                if info & _HAS_RIGHT_ORIGIN:
                    _skip_id(r)
                if not info & (_HAS_ORIGIN | _HAS_RIGHT_ORIGIN):
                    if r.uint() == 1:
                        r.string()  # root type name
                    else:
                        _skip_id(r)  # parent item id
                    if info & _HAS_PARENT_SUB:
                        r.string()
                length = _content_len(r, ref)
            # Zero-length items exist: Yrs splits a UTF-8 string at a UTF-16 offset into
            # "é" and "" (pycrdt 0.14, Text with non-ASCII); they advance no clock.
            clock += length
        if clock > MAX_ID:
            raise UpdateFormatError("clock out of range")
        if n_blocks:
            if client in ranges:
                raise UpdateFormatError("client listed twice")
            ranges[client] = (start, clock)
    deletes = 0
    for _ in range(r.count()):
        r.uint()
        for _ in range(r.count()):
            r.uint()
            r.uint()
            deletes += 1
    if r.remaining():
        raise UpdateFormatError("trailing bytes after update")
    return UpdateClocks(ranges, deletes)


def decode_state_vector(data: bytes) -> dict[int, int]:
    """pycrdt's ``get_state()`` encoding: varuint n, n x (varuint client, varuint clock)."""
    r = _Reader(data)
    out: dict[int, int] = {}
    for _ in range(r.count()):
        client = r.uint()
        out[client] = r.uint()
    if r.remaining():
        raise UpdateFormatError("trailing bytes after state vector")
    return out


def put_uint(out: bytearray, value: int) -> None:
    """Append ``value`` as an unsigned LEB128 varint (lib0's encoding, also our wire's)."""
    while True:
        b = value & 0x7F
        value >>= 7
        if value:
            out.append(b | 0x80)
        else:
            out.append(b)
            return


def encode_state_vector(sv: Mapping[int, int]) -> bytes:
    out = bytearray()
    put_uint(out, len(sv))
    for client, clock in sorted(sv.items()):
        put_uint(out, client)
        put_uint(out, clock)
    return bytes(out)


def gap(ours: Mapping[int, int], theirs: Mapping[int, int]) -> dict[int, int]:
    """Clients where ``ours`` is ahead of ``theirs``, mapped to the clock ``theirs`` has.

    The stored updates a peer lacks are exactly those with ``clock_end > gap[client]``.
    """
    return {c: theirs.get(c, 0) for c, clock in ours.items() if clock > theirs.get(c, 0)}


def units_behind(ours: Mapping[int, int], theirs: Mapping[int, int]) -> int:
    """How many clock units (roughly: changes) ``theirs`` lacks of ``ours``."""
    return sum(clock - theirs.get(c, 0) for c, clock in ours.items() if clock > theirs.get(c, 0))
