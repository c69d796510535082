"""What the node knows it had stored, kept beside the store: its high-water mark.

A store that vanished (``state.db`` moved away, a disk swapped) or lost records (a truncated
WAL) cannot say so itself: an empty store looks exactly like a new node's, and a reconciler
that trusts it removes every container as "no longer desired". So the node keeps a small file
beside the store, ``state.mark``: per document, the highest sequence number it has stored, and
whether the node holds its containers. At start the store is compared with the mark
(:func:`assess`); a store with less than the mark says is a loss, and the node *holds*: it
stops and removes nothing (``reconcile/plan.py``) until someone decides (``restore``, a resync
from peers, or ``reset --i-mean-it``), and says why everywhere it reports health.

Never ahead of the disk: the mark is written only with sequence numbers whose commit is durable,
at most every ``MARK_FLUSH_INTERVAL_S`` while writes happen, at start and at shutdown. A mark that
is behind only misses a loss of the last seconds' updates; it never reports a loss that did not
happen. A hold is written (fsynced) before the node acts on it, so it survives a restart even
though the node writes to its (new, empty) store meanwhile.

It also records how far each document had got, for a resync from peers to tell when they gave
it all back (``noderuntime/sync/resync.py``): per document the count of CRDT operations stored
(``units``: the sum of its state vector), and the node's own document clock by clock
(``clocks``: its state vector, small: one entry per writer of that document).

File format (JSON, replaced atomically; unknown keys are ignored, missing ones are empty):
    1 (2026-12-03): {"format": 1, "docs": {doc: seq}, "loadProblems": n, "writtenAt": t,
                     "hold": null | {"kind", "reason", "since", "provisional"},
                     "accept": null | why,  -- written by ``restore`` and an offline
                     ``reset``: take the store as it is at the next start
                     "units": {doc: n}, "clocks": {doc: {client: clock}}}
"""

from __future__ import annotations

import contextlib
import enum
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from noderuntime.errors import StoreError

MARK_FORMAT = 1
MARK_FILE = "state.mark"
# How often the mark follows the store while writes happen (a loss of the updates after the
# last flush goes unnoticed; a flush costs one small file and two fsyncs).
MARK_FLUSH_INTERVAL_S = 2.0

# What to do about a hold, in the words every surface uses.
HOLD_DECISIONS = (
    "`noderuntime restore ARCHIVE` (a backup), a resync from a hub that holds this node's "
    "documents (automatic on an enrolled node; `noderuntime resync` waits for it), or "
    "`noderuntime reset --i-mean-it` (take the store as it is: containers it does not name "
    "are removed)"
)


class HoldKind(enum.Enum):
    """Why the node holds its containers (persisted in the mark: literal values)."""

    MISSING = "missing"  # the store is empty, but the mark says it held updates
    TRUNCATED = "truncated"  # documents end before the sequence numbers the mark recorded
    UNDECODABLE = "undecodable"  # stored updates could not be decoded at load
    UNKNOWN = "unknown"  # an empty store and no mark: whether anything was lost is unknown
    UNREADABLE = "unreadable"  # state.db could not be opened at all (set aside)


@dataclass(frozen=True)
class Hold:
    kind: HoldKind
    reason: str
    since: float
    # UNKNOWN only: lifted by itself if the first look at Podman finds no container of ours
    # (a new node), made firm if it finds some.
    provisional: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "reason": self.reason,
            "since": self.since,
            "provisional": self.provisional,
        }


@dataclass(frozen=True)
class StoreMark:
    docs: Mapping[str, int] = field(default_factory=dict)
    load_problems: int = 0
    written_at: float = 0.0
    hold: Hold | None = None
    accept: str | None = None
    units: Mapping[str, int] = field(default_factory=dict)
    clocks: Mapping[str, Mapping[int, int]] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": MARK_FORMAT,
                "docs": dict(sorted(self.docs.items())),
                "loadProblems": self.load_problems,
                "writtenAt": self.written_at,
                "hold": self.hold.to_dict() if self.hold else None,
                "accept": self.accept,
                "units": dict(sorted(self.units.items())),
                "clocks": {
                    d: {str(c): n for c, n in sorted(sv.items())}
                    for d, sv in sorted(self.clocks.items())
                },
            },
            indent=1,
        )


@dataclass(frozen=True)
class StoreFacts:
    """The store as loaded: highest stored sequence number per document, decode failures."""

    seqs: Mapping[str, int]
    load_problems: int = 0
    units: Mapping[str, int] = field(default_factory=dict)
    clocks: Mapping[str, Mapping[int, int]] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not any(self.seqs.values())


def assess(mark: StoreMark | None, facts: StoreFacts, now: float) -> Hold | None:
    """Whether the store as loaded lost what the mark says it had (pure)."""
    if mark is not None and mark.accept is not None:
        return None
    if mark is not None and mark.hold is not None:
        return mark.hold
    known = mark.load_problems if mark is not None else 0
    if facts.load_problems > known:
        return Hold(
            HoldKind.UNDECODABLE,
            f"{facts.load_problems} stored update(s) or snapshot(s) could not be decoded: "
            "what they said is lost (see the node's log and `noderuntime doctor`)",
            now,
        )
    if mark is None:
        if not facts.empty:
            return None  # a store kept by a version without marks: trust it from now on
        return Hold(
            HoldKind.UNKNOWN,
            "the store is empty and there is no record (state.mark) of what it held",
            now,
            provisional=True,
        )
    short = {d: had for d, had in mark.docs.items() if facts.seqs.get(d, 0) < had}
    if not short:
        return None
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(mark.written_at))
    if facts.empty:
        return Hold(
            HoldKind.MISSING,
            f"state.db is missing or empty, but this node had stored updates up to sequence "
            f"{max(short.values())} (recorded {when})",
            now,
        )
    lost = ", ".join(
        f"{d} ends at {facts.seqs.get(d, 0)}, had {had}" for d, had in sorted(short.items())
    )
    return Hold(HoldKind.TRUNCATED, f"state.db lost updates ({lost}; recorded {when})", now)


def confirm(hold: Hold | None, containers: int) -> Hold | None:
    """A provisional hold once Podman has been seen: gone without containers, else firm."""
    if hold is None or not hold.provisional:
        return hold
    if containers == 0:
        return None
    return replace(
        hold,
        provisional=False,
        reason=f"{hold.reason}, but {containers} container(s) labelled for this node exist",
    )


def next_mark(
    prev: StoreMark | None, facts: StoreFacts, hold: Hold | None, now: float
) -> StoreMark:
    """The mark to write now. While held it only grows: the evidence of the loss stays."""
    docs, units = dict(facts.seqs), dict(facts.units)
    clocks = {d: dict(sv) for d, sv in facts.clocks.items()}
    if hold is not None and prev is not None:
        for d, seq in prev.docs.items():
            docs[d] = max(seq, docs.get(d, 0))
        for d, n in prev.units.items():
            units[d] = max(n, units.get(d, 0))
        for d, sv in prev.clocks.items():
            mine = clocks.setdefault(d, {})
            for c, n in sv.items():
                mine[c] = max(n, mine.get(c, 0))
    return StoreMark(
        docs=docs,
        load_problems=facts.load_problems,
        written_at=now,
        hold=hold,
        units=units,
        clocks=clocks,
    )


# --- the file ----------------------------------------------------------------------------


def read_mark(path: Path) -> StoreMark | None:
    """The mark at ``path``; None if there is none. Raises StoreError if it is unreadable."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StoreError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        return _parse(json.loads(raw))
    except (ValueError, KeyError, TypeError) as exc:
        raise StoreError(f"{path} is not a store mark ({exc})") from exc


def _parse(obj: Any) -> StoreMark:
    if not isinstance(obj, dict) or obj.get("format") != MARK_FORMAT:
        raise ValueError(f"format is not {MARK_FORMAT}")
    docs = obj.get("docs") or {}
    if not isinstance(docs, dict) or not all(
        isinstance(k, str) and _is_int(v) for k, v in docs.items()
    ):
        raise ValueError("docs must map document names to sequence numbers")
    load_problems = obj.get("loadProblems", 0)
    written_at = obj.get("writtenAt", 0.0)
    accept = obj.get("accept")
    if not _is_int(load_problems) or not isinstance(written_at, int | float):
        raise ValueError("loadProblems and writtenAt must be numbers")
    if accept is not None and not isinstance(accept, str):
        raise ValueError("accept must be a string")
    hold = None
    if obj.get("hold") is not None:
        h = obj["hold"]
        if not isinstance(h, dict) or not isinstance(h["reason"], str):
            raise ValueError("hold must be an object with a reason")
        hold = Hold(HoldKind(h["kind"]), h["reason"], float(h["since"]), bool(h["provisional"]))
    units = obj.get("units") or {}
    if not isinstance(units, dict) or not all(_is_int(v) for v in units.values()):
        raise ValueError("units must map document names to counts")
    clocks = obj.get("clocks") or {}
    if not isinstance(clocks, dict) or not all(isinstance(sv, dict) for sv in clocks.values()):
        raise ValueError("clocks must map document names to state vectors")
    return StoreMark(
        dict(docs),
        int(load_problems),
        float(written_at),
        hold,
        accept,
        {str(d): int(n) for d, n in units.items()},
        {str(d): {int(c): int(n) for c, n in sv.items()} for d, sv in clocks.items()},
    )


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def write_mark(path: Path, mark: StoreMark) -> None:
    """Replace the mark atomically and durably (file and directory fsynced)."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(mark.to_json())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise StoreError(f"cannot write {path}: {exc.strerror or exc}") from exc


def accept_store(path: Path, why: str, now: float | None = None) -> None:
    """Let the next start take the store as it is (a restore, an offline reset)."""
    write_mark(path, StoreMark(written_at=time.time() if now is None else now, accept=why))
