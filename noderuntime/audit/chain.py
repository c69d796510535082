"""The audit hash chain and its signed checkpoints, pure: no I/O, no clock.

Each entry's hash covers the previous entry's hash and the entry's own content, so editing,
removing or reordering any entry changes every hash after it. A checkpoint is the node's
signature over (node, seq, head hash, time, links): it pins the chain at ``seq``, is what hubs
witness, and is kept when older entries are pruned so the rest still verifies from it.

``links`` are the heads at the node's previous few checkpoints, read back from the stored
entries when the checkpoint is taken. A hub that saw one of those earlier checkpoints checks
that the chain it witnessed is still the prefix of the one now published (``witness.py``).
"""

from __future__ import annotations

import enum
import hashlib
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from json.encoder import encode_basestring
from typing import Any

# The hash an empty chain starts from.
GENESIS = bytes(32)
CHECKPOINT_DOMAIN = b"noderuntime-audit-checkpoint-v1\x00"
# Heads of this many earlier checkpoints travel in each new one (an hour's worth at the default
# interval): a hub that missed fewer than this many still checks continuity. Each link is ~75 B
# of a record every hub keeps the history of (see log.py, CHECKPOINT_EVERY_S).
MAX_LINKS = 4


class AuditKind(enum.Enum):
    """What an entry records. Persisted and exported: literal values, never renamed."""

    API_WRITE = "api.write"
    LOGIN = "technician.login"
    SYNC_REJECTED = "sync.rejected"
    SECRET_DECRYPTED = "secret.decrypt"
    BUNDLE_LOADED = "bundle.load"
    REVOKED = "revocation"
    REMOTE_LOG_READ = "logs.remote-read"
    POLICY_REFUSED = "policy.refused"
    NODE_STARTED = "node.start"
    AUDIT_PRUNED = "audit.pruned"
    WITNESS_ALERT = "audit.witness-alert"


@dataclass(frozen=True)
class Entry:
    """One audit entry as stored: ``hash`` chains it to the entry before (``seq - 1``)."""

    seq: int
    ts: float
    kind: str
    actor: str
    fields: Mapping[str, Any]
    hash: bytes
    # ``fields`` as canonical JSON when the entry was just chained (stored as is); "" when read.
    fields_json: str = field(default="", compare=False, repr=False)
    # The bytes hashed after the previous hash (``[seq,ts,kind,actor,fields]``) when just
    # chained: the entry as it rides a state commit (log.py), without encoding it again.
    body: bytes = field(default=b"", compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "ts": self.ts,
            "kind": self.kind,
            "actor": self.actor,
            "fields": dict(self.fields),
            "hash": self.hash.hex(),
        }


# One encoder, made once: json.dumps with options builds a new one per call (a few us each).
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical(value: Any) -> bytes:
    """The one byte form hashed and signed (sorted keys, no spaces, UTF-8)."""
    return _ENCODER.encode(value).encode()


def entry_hash(prev: bytes, seq: int, ts: float, kind: str, actor: str, fields: Any) -> bytes:
    return hashlib.sha256(prev + canonical([seq, ts, kind, actor, fields])).digest()


def chain_entry(
    prev: bytes, seq: int, ts: float, kind: str, actor: str, fields: Mapping[str, Any]
) -> Entry:
    """The next entry. Same hash as :func:`entry_hash` (a JSON list is its items' JSON joined),
    with the fields encoded once for both the hash and the store: this runs on every write, so
    the usual entry (scalar fields) is encoded through :data:`_FAST`, not the JSON encoder."""
    fields_json = _fast_fields(fields)
    head = [_fast_json(seq), _fast_json(ts), _fast_json(kind), _fast_json(actor)]
    if fields_json is None or None in head:
        fields_json = canonical(fields).decode()
        head = [canonical(v).decode() for v in (seq, ts, kind, actor)]
    body = f"[{head[0]},{head[1]},{head[2]},{head[3]},{fields_json}]".encode()
    digest = hashlib.sha256(prev + body).digest()
    return Entry(seq, ts, kind, actor, fields, digest, fields_json, body)


def _finite(v: float) -> str | None:
    return float.__repr__(v) if math.isfinite(v) else None  # NaN is no JSON number


# ``canonical(v)`` as text, by exact type (a subclass, an IntEnum or a str enum, may encode
# otherwise and takes the encoder): what json's C encoder does for each, without its set-up.
_FAST: dict[type, Callable[[Any], str | None]] = {
    str: encode_basestring,
    int: int.__repr__,
    float: _finite,
    bool: lambda v: "true" if v else "false",
    type(None): lambda v: "null",
}


def _fast_json(v: object) -> str | None:
    """``canonical(v)`` as text for a scalar in :data:`_FAST`; None otherwise."""
    encode = _FAST.get(type(v))
    return None if encode is None else encode(v)


def _fast_fields(fields: Mapping[str, Any]) -> str | None:
    """``canonical(fields)`` as text for a dict of str keys and :data:`_FAST` values; None for
    anything else (the JSON encoder takes it)."""
    if type(fields) is not dict:
        return None
    parts = []
    for k in sorted(fields):
        value = _fast_json(fields[k])
        if type(k) is not str or value is None:
            return None
        parts.append(f"{encode_basestring(k)}:{value}")
    return "{" + ",".join(parts) + "}"


@dataclass(frozen=True)
class Checkpoint:
    """A signed statement: node's chain had ``seq`` entries ending in ``head`` at ``ts``."""

    node: str
    seq: int
    head: bytes
    ts: float
    links: tuple[tuple[int, bytes], ...] = ()
    signature: bytes = b""

    def message(self) -> bytes:
        links = [[s, h.hex()] for s, h in self.links]
        return CHECKPOINT_DOMAIN + canonical([self.node, self.seq, self.head.hex(), self.ts, links])

    def to_dict(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "seq": self.seq,
            "head": self.head.hex(),
            "ts": self.ts,
            "links": [[s, h.hex()] for s, h in self.links],
            "signature": self.signature.hex(),
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Checkpoint:
        """Parse a checkpoint a peer or the disk holds; ValueError if malformed."""
        try:
            links = tuple((int(s), bytes.fromhex(str(h))) for s, h in raw.get("links", []))
            return cls(
                node=str(raw["node"]),
                seq=int(raw["seq"]),
                head=bytes.fromhex(str(raw["head"])),
                ts=float(raw["ts"]),
                links=links,
                signature=bytes.fromhex(str(raw.get("signature", ""))),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed audit checkpoint: {exc}") from exc


def sign_checkpoint(cp: Checkpoint, sign: Callable[[bytes], bytes]) -> Checkpoint:
    return Checkpoint(cp.node, cp.seq, cp.head, cp.ts, cp.links, sign(cp.message()))


@dataclass(frozen=True)
class Break:
    """Where a chain stops verifying: the first bad entry (by seq) and why."""

    seq: int
    reason: str


@dataclass(frozen=True)
class Verdict:
    entries: int
    first_seq: int
    last_seq: int
    checkpoints: int
    broken: Break | None = None
    anchored_at: int = 0  # the checkpoint the kept entries verify from (0: genesis)

    @property
    def ok(self) -> bool:
        return self.broken is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "entries": self.entries,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "checkpoints": self.checkpoints,
            "anchored_at": self.anchored_at,
            "broken": None
            if self.broken is None
            else {"seq": self.broken.seq, "reason": self.broken.reason},
        }


def verify_chain(
    entries: Iterable[Entry],
    checkpoints: Sequence[Checkpoint],
    check_signature: Callable[[Checkpoint], bool],
) -> Verdict:
    """Check ``entries`` (in stored order) against each other and the kept checkpoints."""
    verifier = ChainVerifier(checkpoints, check_signature)
    for e in entries:
        if not verifier.feed(e):
            break
    return verifier.finish()


class ChainVerifier:
    """Verifies a chain fed one entry at a time (a long log is read in pages).

    A log whose first entry is not seq 1 must start right after a kept checkpoint (a pruned
    prefix); every checkpoint must be validly signed and match the hash at its seq; none may
    lie past the last entry (a cut tail). The first failure is reported by the seq of the first
    entry that does not verify.
    """

    def __init__(
        self, checkpoints: Sequence[Checkpoint], check_signature: Callable[[Checkpoint], bool]
    ) -> None:
        self.checkpoints = list(checkpoints)
        self._by_seq = {cp.seq: cp for cp in checkpoints}
        self.count = self.first = self.last = self.anchored = 0
        self._prev = GENESIS
        self.broken: Break | None = None
        for cp in sorted(checkpoints, key=lambda c: c.seq):
            if not check_signature(cp):
                self.broken = Break(cp.seq, f"checkpoint at entry {cp.seq} has a bad signature")
                break

    def feed(self, e: Entry) -> bool:
        """Take the next entry; False once the chain is broken (feed no more)."""
        if self.broken is not None:
            return False
        self.count += 1
        if self.count == 1:
            self.first = e.seq
            if e.seq != 1:
                anchor = self._by_seq.get(e.seq - 1)
                if anchor is None:
                    return self._break(
                        e.seq,
                        f"log starts at entry {e.seq} and no checkpoint anchors entry "
                        f"{e.seq - 1}: entries were cut",
                    )
                self._prev, self.anchored = anchor.head, anchor.seq
        elif e.seq != self.last + 1:
            what = "missing" if e.seq > self.last + 1 else "out of order"
            return self._break(
                self.last + 1,
                f"entry {self.last + 1} is {what} (entry {e.seq} follows entry {self.last})",
            )
        if entry_hash(self._prev, e.seq, e.ts, e.kind, e.actor, e.fields) != e.hash:
            return self._break(
                e.seq, f"entry {e.seq} does not match its hash: it was edited, or one before it"
            )
        cp = self._by_seq.get(e.seq)
        if cp is not None and cp.head != e.hash:
            return self._break(
                e.seq,
                f"entry {e.seq} differs from the signed checkpoint at {e.seq}: "
                "the chain was rewritten",
            )
        self._prev, self.last = e.hash, e.seq
        return True

    def _break(self, seq: int, reason: str) -> bool:
        self.broken = Break(seq, reason)
        return False

    def finish(self) -> Verdict:
        if self.broken is None:
            beyond = [cp.seq for cp in self.checkpoints if cp.seq > self.last]
            if beyond:
                self.broken = Break(
                    self.last + 1,
                    f"a checkpoint covers entry {max(beyond)} but the log ends at entry "
                    f"{self.last}: entries were cut",
                )
        return Verdict(
            entries=self.count,
            first_seq=self.first,
            last_seq=self.last,
            checkpoints=len(self.checkpoints),
            broken=self.broken,
            anchored_at=self.anchored,
        )
