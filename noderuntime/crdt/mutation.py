"""How a change to a document becomes an update, and the small values writes and ingests
return. Pure functions over pycrdt documents (the :class:`~noderuntime.crdt.state.StateStore`
is their only caller outside tests).
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pycrdt import Doc, Map

from noderuntime.crdt.hlc import Hlc
from noderuntime.crdt.store import StoredUpdate

EMPTY_UPDATE = b"\x00\x00"

ANCHOR_MAP = "_anchor"

# A mutation may return the HLC its whole-record writes carry (schema.write_hlc): it is signed
# into the update's meta, so history can tell which write lost a concurrent contest.
Mutation = Callable[[Doc[Any]], object]
Listener = Callable[[], None]


class Origin(enum.Enum):
    """Where a stored update came from (told to update listeners)."""

    LOCAL = "local"  # written by this node
    SUBMITTED = "submitted"  # signed elsewhere (an operator's CLI), submitted over the API
    PEER = "peer"  # received from a peer by the sync engine


UpdateListener = Callable[[StoredUpdate, Origin], None]


class IngestResult(enum.Enum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"
    NOT_HELD = "not_held"  # a document this node does not hold
    MALFORMED = "malformed"  # not a well-formed v1 update
    UNANCHORED = "unanchored"  # carries no clock range (invisible to anti-entropy)
    CLIENT_CONFLICT = "client_conflict"  # reuses a client id another author owns
    CORRUPT = "corrupt"  # pycrdt refused it
    UNAUTHORISED = "unauthorised"  # a relay-only author changed more than it may


def mutate_anchored(doc: Doc[Any], mutate: Mutation) -> tuple[bytes, Hlc | None]:
    """Run ``mutate`` in a transaction; return the update, anchored to a clock range, and the
    HLC the mutation returned (if any).

    A write that only deletes produces no struct and so no clock range; a second transaction
    bumps this client's counter in ``_anchor`` so the update is visible to anti-entropy.
    """
    before = doc.get_state()
    with doc.transaction():
        result = mutate(doc)
    hlc = result if isinstance(result, Hlc) else None
    data = doc.get_update(before)
    if data == EMPTY_UPDATE:
        return data, hlc
    # The state vector moves exactly when the update carries structs (no need to parse it).
    if doc.get_state() == before:
        anchors: Map[Any] = doc.get(ANCHOR_MAP, type=Map)
        key = str(doc.client_id)
        with doc.transaction():
            anchors[key] = str(int(anchors.get(key, "0")) + 1)
        data = doc.get_update(before)
    return data, hlc


def change_meta(summary: str = "", on_behalf: str | None = None, hlc: Hlc | None = None) -> str:
    """The signed meta of an update: what changed, for whom, and its whole records' HLC."""
    meta: dict[str, str] = {}
    if summary:
        meta["summary"] = summary
    if on_behalf:
        meta["onBehalf"] = on_behalf
    if hlc is not None:
        meta["hlc"] = hlc.encode()
    return json.dumps(meta, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class WriteResult:
    doc: str
    seq: int | None  # None when the mutation changed nothing
    size_bytes: int


def copy_doc(doc: Doc[Any]) -> Doc[Any]:
    """A new document (with a new client id) holding everything ``doc`` holds."""
    copy: Doc[Any] = Doc()
    copy.apply_update(doc.get_update())
    return copy


def apply_update_safely(doc: Doc[Any], data: bytes) -> str | None:
    """Apply ``data`` to ``doc``; return an error description instead of raising.

    pycrdt raises ValueError/RuntimeError on bad input and, from its Rust core, a
    PanicException that derives from BaseException: none of them may take the node down.
    """
    try:
        doc.apply_update(data)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    except BaseException as exc:  # pyo3 PanicException
        if isinstance(exc, (KeyboardInterrupt, SystemExit, GeneratorExit)):
            raise
        return f"{type(exc).__name__}: {exc}"
    return None
