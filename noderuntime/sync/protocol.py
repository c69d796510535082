"""The sync wire format and subject names: pure functions over bytes, no I/O.

Every message starts with a version byte and a kind byte. Strings are ``u8 length + UTF-8``
(``str8``), blobs are ``varuint length + bytes`` (``blob``), times are big-endian float64.

    UPDATES (kind 1): signed CRDT updates of one document, relayed as their authors signed them
        str8 sender-node (informational, for link statistics; not trusted)
        str8 doc
        varuint count
        count x ( str8 author, 64-byte signature, f64 ts (author's clock, unsigned),
                  blob meta (signed JSON), blob data (signed pycrdt v1 update) )
    STATE (kind 2): a state-vector announcement; signed by its sender
        str8 sender principal, str8 doc, str8 target node ("" = anyone holding doc),
        f64 ts, blob state vector (pycrdt encoding), 64-byte signature
    HEARTBEAT (kind 3): ephemeral liveness and health; signed by its sender
        str8 sender principal, f64 ts, blob JSON payload, 64-byte signature
    CREDENTIALS (kind 4): member credentials, each signed by the fleet root (so unsigned here)
        varuint count, count x blob credential
    CREDENTIAL_REQUEST (kind 5): "send me the credentials of these principals" (unsigned: the
        answer is root-signed, and anyone may ask)
        varuint count, count x str8 principal

The signature of STATE and HEARTBEAT covers ``SIGNED_DOMAIN + every byte before it``; the
signature of each update covers :func:`noderuntime.crdt.envelope.signing_input` (author,
document, meta and data), so relays cannot alter it.

Size is bounded before anything is parsed (:func:`decode` refuses ``len(raw) > max_bytes``), and
every read is bounds-checked: any malformed input raises :class:`ProtocolError`.

Protocol version changelog:
    1 (2026-11-26): UPDATES, STATE, HEARTBEAT, CREDENTIALS.
    1 (2026-12-02): CREDENTIAL_REQUEST added; nodes older than it count one as ``malformed``
        and ignore it (they only miss the answer), so the version byte stays 1.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from noderuntime.crdt.clocks import put_uint
from noderuntime.crdt.envelope import MAX_META_BYTES, MAX_UPDATE_BYTES
from noderuntime.sync.acl import DocKind, DocRef

PROTOCOL_VERSION = 1
SIGNATURE_BYTES = 64
SIGNED_DOMAIN = b"noderuntime/sync/v1\x00"
MAX_BATCH = 4096
DEFAULT_MAX_MESSAGE_BYTES = 1024 * 1024  # nats-server's default max_payload
DEFAULT_MAX_UPDATE_BYTES = MAX_UPDATE_BYTES


class Kind(enum.Enum):
    UPDATES = 1
    STATE = 2
    HEARTBEAT = 3
    CREDENTIALS = 4
    CREDENTIAL_REQUEST = 5
    # 2026-12-03: fleet events (issue 12), the heartbeat's layout on their own subject.
    EVENT = 6
    # 2026-12-03: remote logs (issue 12): an operator's signed request, a node's signed lines.
    LOG_REQUEST = 7
    LOG_LINES = 8


MAX_CREDENTIALS = 256
MAX_CREDENTIAL_BYTES = 4096
MAX_REQUESTED = 64


class ProtocolError(ValueError):
    """A message that is not well formed; ``cause`` is a short rejection cause."""

    def __init__(self, message: str, cause: str = "malformed") -> None:
        super().__init__(message)
        self.cause = cause


@dataclass(frozen=True)
class WireUpdate:
    author: str
    signature: bytes
    ts: float
    meta: str
    data: bytes


@dataclass(frozen=True)
class UpdatesMsg:
    sender: str
    doc: str
    updates: tuple[WireUpdate, ...]


@dataclass(frozen=True)
class StateMsg:
    sender: str  # principal
    doc: str
    target: str  # node id, or "" for anyone
    ts: float
    state_vector: bytes
    signature: bytes
    signed: bytes  # the bytes the signature covers (with SIGNED_DOMAIN)


@dataclass(frozen=True)
class HeartbeatMsg:
    sender: str
    ts: float
    payload: bytes
    signature: bytes
    signed: bytes


@dataclass(frozen=True)
class EventMsg:
    """A workload transition, signed by the node it happened on (ephemeral; fleetevents.py)."""

    sender: str
    ts: float
    payload: bytes
    signature: bytes
    signed: bytes


@dataclass(frozen=True)
class LogRequestMsg:
    """An operator's request for a workload's log lines (remotelogs.py), signed by the operator."""

    sender: str
    ts: float
    payload: bytes
    signature: bytes
    signed: bytes


@dataclass(frozen=True)
class LogLinesMsg:
    """Log lines answering a LOG_REQUEST, signed by the node that read them."""

    sender: str
    ts: float
    payload: bytes
    signature: bytes
    signed: bytes


@dataclass(frozen=True)
class CredentialsMsg:
    credentials: tuple[bytes, ...]


@dataclass(frozen=True)
class CredentialRequestMsg:
    principals: tuple[str, ...]


Message = (
    UpdatesMsg
    | StateMsg
    | HeartbeatMsg
    | EventMsg
    | LogRequestMsg
    | LogLinesMsg
    | CredentialsMsg
    | CredentialRequestMsg
)


# --- encoding -------------------------------------------------------------------------------


def _str8(out: bytearray, text: str) -> None:
    raw = text.encode()
    if len(raw) > 255:
        raise ValueError(f"string too long for the wire: {text[:40]!r}...")
    out.append(len(raw))
    out += raw


def _blob(out: bytearray, raw: bytes) -> None:
    put_uint(out, len(raw))
    out += raw


def _header(kind: Kind) -> bytearray:
    return bytearray((PROTOCOL_VERSION, kind.value))


def encode_update(u: WireUpdate) -> bytes:
    out = bytearray()
    _str8(out, u.author)
    if len(u.signature) != SIGNATURE_BYTES:
        raise ValueError("an Ed25519 signature is 64 bytes")
    out += u.signature
    out += struct.pack(">d", u.ts)
    _blob(out, u.meta.encode())
    _blob(out, u.data)
    return bytes(out)


def encode_updates(sender: str, doc: str, updates: Sequence[WireUpdate]) -> bytes:
    out = _header(Kind.UPDATES)
    _str8(out, sender)
    _str8(out, doc)
    put_uint(out, len(updates))
    for u in updates:
        out += encode_update(u)
    return bytes(out)


def deliverable(
    u: WireUpdate,
    max_bytes: int,
    max_update_bytes: int = DEFAULT_MAX_UPDATE_BYTES,
    *,
    sender: str = "",
    doc: str = "",
) -> bool:
    """Whether a receiver with these limits accepts ``u`` at all (alone in a message)."""
    if len(u.data) > max_update_bytes or len(u.meta.encode()) > MAX_META_BYTES:
        return False
    return _head(sender, doc) + len(encode_update(u)) <= max_bytes


def _head(sender: str, doc: str) -> int:
    # An empty message plus room for a count of up to MAX_BATCH (varuint).
    return len(encode_updates(sender, doc, [])) + 4


def batch_updates(
    sender: str,
    doc: str,
    updates: Sequence[WireUpdate],
    max_bytes: int,
    max_update_bytes: int = DEFAULT_MAX_UPDATE_BYTES,
) -> list[bytes]:
    """Encode ``updates`` as few UPDATES messages as fit in ``max_bytes`` each.

    Every message is one the receiver's :func:`decode` accepts: an update larger than its
    ``max_update_bytes`` would make it refuse the whole message, so such an update (and one
    too large for a message on its own) is left out; callers count them with
    :func:`deliverable`. An update near the limit goes alone.
    """
    head = _head(sender, doc)
    messages: list[bytes] = []
    batch: list[WireUpdate] = []
    size = head
    for u in updates:
        n = len(encode_update(u))
        too_big = len(u.data) > max_update_bytes or len(u.meta.encode()) > MAX_META_BYTES
        if too_big or head + n > max_bytes:
            continue
        if batch and (size + n > max_bytes or len(batch) >= MAX_BATCH):
            messages.append(encode_updates(sender, doc, batch))
            batch, size = [], head
        batch.append(u)
        size += n
    if batch:
        messages.append(encode_updates(sender, doc, batch))
    return messages


def state_signed_part(sender: str, doc: str, target: str, ts: float, sv: bytes) -> bytes:
    out = _header(Kind.STATE)
    _str8(out, sender)
    _str8(out, doc)
    _str8(out, target)
    out += struct.pack(">d", ts)
    _blob(out, sv)
    return bytes(out)


def heartbeat_signed_part(sender: str, ts: float, payload: bytes) -> bytes:
    out = _header(Kind.HEARTBEAT)
    _str8(out, sender)
    out += struct.pack(">d", ts)
    _blob(out, payload)
    return bytes(out)


def event_signed_part(sender: str, ts: float, payload: bytes) -> bytes:
    out = _header(Kind.EVENT)
    _str8(out, sender)
    out += struct.pack(">d", ts)
    _blob(out, payload)
    return bytes(out)


MAX_EVENT_PAYLOAD_BYTES = 4096
MAX_LOG_PAYLOAD_BYTES = 64 * 1024


def signed_blob_part(kind: Kind, sender: str, ts: float, payload: bytes) -> bytes:
    """The signed part of EVENT, LOG_REQUEST and LOG_LINES messages (the heartbeat's layout)."""
    out = _header(kind)
    _str8(out, sender)
    out += struct.pack(">d", ts)
    _blob(out, payload)
    return bytes(out)


def encode_credentials(blobs: Sequence[bytes]) -> bytes:
    out = _header(Kind.CREDENTIALS)
    put_uint(out, len(blobs))
    for b in blobs:
        _blob(out, b)
    return bytes(out)


def batch_credentials(blobs: Sequence[bytes], max_bytes: int) -> list[bytes]:
    """Encode ``blobs`` as CREDENTIALS messages of at most MAX_CREDENTIALS and ``max_bytes``.

    A blob a receiver would refuse anyway (over MAX_CREDENTIAL_BYTES) is left out.
    """
    messages: list[bytes] = []
    batch: list[bytes] = []
    head = len(encode_credentials([])) + 2
    size = head
    for b in blobs:
        n = len(b) + 2
        if len(b) > MAX_CREDENTIAL_BYTES:
            continue
        if batch and (size + n > max_bytes or len(batch) >= MAX_CREDENTIALS):
            messages.append(encode_credentials(batch))
            batch, size = [], head
        batch.append(b)
        size += n
    if batch:
        messages.append(encode_credentials(batch))
    return messages


def encode_credential_request(principals: Sequence[str]) -> bytes:
    if len(principals) > MAX_REQUESTED:
        raise ValueError(f"at most {MAX_REQUESTED} principals per request")
    out = _header(Kind.CREDENTIAL_REQUEST)
    put_uint(out, len(principals))
    for p in principals:
        _str8(out, p)
    return bytes(out)


def signing_bytes(signed_part: bytes) -> bytes:
    return SIGNED_DOMAIN + signed_part


# --- decoding -------------------------------------------------------------------------------


class _Reader:
    __slots__ = ("buf", "pos")

    def __init__(self, buf: bytes) -> None:
        self.buf = buf
        self.pos = 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.buf):
            raise ProtocolError("truncated message")
        out = self.buf[self.pos : self.pos + n]
        self.pos += n
        return out

    def byte(self) -> int:
        return self.take(1)[0]

    def uint(self) -> int:
        value = 0
        for shift in range(0, 64, 7):
            b = self.byte()
            value |= (b & 0x7F) << shift
            if b < 0x80:
                return value
        raise ProtocolError("varuint too long")

    def str8(self) -> str:
        raw = self.take(self.byte())
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProtocolError("invalid UTF-8") from exc

    def blob(self, limit: int) -> bytes:
        n = self.uint()
        if n > limit:
            raise ProtocolError(f"field of {n} bytes exceeds {limit}", cause="oversized")
        return self.take(n)

    def f64(self) -> float:
        (value,) = struct.unpack(">d", self.take(8))
        if value != value or value in (float("inf"), float("-inf")):
            raise ProtocolError("invalid time")
        return float(value)

    def done(self) -> None:
        if self.pos != len(self.buf):
            raise ProtocolError("trailing bytes")


def decode(
    raw: bytes,
    *,
    max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    max_update_bytes: int = DEFAULT_MAX_UPDATE_BYTES,
) -> Message:
    """Parse one message; raises :class:`ProtocolError` (``cause`` says why)."""
    if len(raw) > max_bytes:
        raise ProtocolError(f"message of {len(raw)} bytes exceeds {max_bytes}", cause="oversized")
    if len(raw) < 2:
        raise ProtocolError("message too short")
    if raw[0] != PROTOCOL_VERSION:
        raise ProtocolError(f"unsupported protocol version {raw[0]}", cause="version")
    try:
        kind = Kind(raw[1])
    except ValueError:
        raise ProtocolError(f"unknown message kind {raw[1]}") from None
    r = _Reader(raw)
    r.pos = 2
    if kind is Kind.UPDATES:
        sender = r.str8()
        doc = r.str8()
        count = r.uint()
        if count > MAX_BATCH:
            raise ProtocolError(f"batch of {count} updates exceeds {MAX_BATCH}")
        updates = []
        for _ in range(count):
            author = r.str8()
            signature = r.take(SIGNATURE_BYTES)
            ts = r.f64()
            meta_raw = r.blob(MAX_META_BYTES)
            data = r.blob(max_update_bytes)
            try:
                meta = meta_raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ProtocolError("invalid UTF-8 in meta") from exc
            updates.append(WireUpdate(author, signature, ts, meta, data))
        r.done()
        return UpdatesMsg(sender, doc, tuple(updates))
    if kind is Kind.STATE:
        sender = r.str8()
        doc = r.str8()
        target = r.str8()
        ts = r.f64()
        sv = r.blob(max_bytes)
        end = r.pos
        signature = r.take(SIGNATURE_BYTES)
        r.done()
        return StateMsg(sender, doc, target, ts, sv, signature, signing_bytes(raw[:end]))
    if kind is Kind.CREDENTIALS:
        count = r.uint()
        if count > MAX_CREDENTIALS:
            raise ProtocolError(f"{count} credentials exceed {MAX_CREDENTIALS}")
        blobs = tuple(r.blob(MAX_CREDENTIAL_BYTES) for _ in range(count))
        r.done()
        return CredentialsMsg(blobs)
    if kind is Kind.CREDENTIAL_REQUEST:
        count = r.uint()
        if count > MAX_REQUESTED:
            raise ProtocolError(f"request for {count} credentials exceeds {MAX_REQUESTED}")
        principals = tuple(r.str8() for _ in range(count))
        r.done()
        return CredentialRequestMsg(principals)
    if kind in (Kind.EVENT, Kind.LOG_REQUEST, Kind.LOG_LINES):
        sender = r.str8()
        ts = r.f64()
        payload = r.blob(MAX_EVENT_PAYLOAD_BYTES if kind is Kind.EVENT else MAX_LOG_PAYLOAD_BYTES)
        end = r.pos
        signature = r.take(SIGNATURE_BYTES)
        r.done()
        signed = signing_bytes(raw[:end])
        if kind is Kind.EVENT:
            return EventMsg(sender, ts, payload, signature, signed)
        if kind is Kind.LOG_REQUEST:
            return LogRequestMsg(sender, ts, payload, signature, signed)
        return LogLinesMsg(sender, ts, payload, signature, signed)
    sender = r.str8()
    ts = r.f64()
    payload = r.blob(64 * 1024)
    end = r.pos
    signature = r.take(SIGNATURE_BYTES)
    r.done()
    return HeartbeatMsg(sender, ts, payload, signature, signing_bytes(raw[:end]))


# --- subjects -------------------------------------------------------------------------------
#
#   nr.<fleet>.u.fleet              updates of the fleet document
#   nr.<fleet>.u.site.<s>           updates of site/<s>
#   nr.<fleet>.u.node.<s>.<n>       updates of node/<n> (n enrolled at site s)
#   nr.<fleet>.sv.<same suffix>     state-vector announcements for that document
#   nr.<fleet>.in.<s>.<n>           node n's inbox: repairs and state replies addressed to it
#   nr.<fleet>.hb.<s>.<n>           heartbeats of node n
#   nr.<fleet>.ev.<s>.<n>           fleet events of node n (hubs subscribe; ephemeral)
#
# A node subscribes to its own scopes only; a hub to nr.<fleet>.u.>, sv.>, hb.>. Everything of a
# site lives under subjects naming it, so leaf links can keep a sovereign site's documents inside
# (see :func:`sovereign_subjects`).


def check_token(value: str) -> str:
    if not value or any(c in value for c in ".*> \t\r\n"):
        raise ValueError(f"{value!r} cannot be used in a NATS subject")
    return value


def doc_suffix(doc: DocRef, site_of_node: str | None) -> str | None:
    if doc.kind is DocKind.FLEET:
        return "fleet"
    if doc.kind is DocKind.SITE:
        return f"site.{doc.ident}"
    if not site_of_node:
        return None
    return f"node.{site_of_node}.{doc.ident}"


def update_subject(fleet: str, suffix: str) -> str:
    return f"nr.{fleet}.u.{suffix}"


def state_subject(fleet: str, suffix: str) -> str:
    return f"nr.{fleet}.sv.{suffix}"


def inbox_subject(fleet: str, site: str, node_id: str) -> str:
    return f"nr.{fleet}.in.{site}.{node_id}"


def heartbeat_subject(fleet: str, site: str, node_id: str) -> str:
    return f"nr.{fleet}.hb.{site}.{node_id}"


def event_subject(fleet: str, site: str, node_id: str) -> str:
    return f"nr.{fleet}.ev.{site}.{node_id}"


def credentials_subject(fleet: str) -> str:
    return f"nr.{fleet}.cred"


def subscriptions(fleet: str, *, role: str, site: str, node_id: str) -> list[str]:
    if role == "hub":
        return [
            f"nr.{fleet}.u.>",
            f"nr.{fleet}.sv.>",
            inbox_subject(fleet, site, node_id),
            f"nr.{fleet}.hb.>",
            f"nr.{fleet}.ev.>",
            credentials_subject(fleet),
        ]
    return [
        update_subject(fleet, "fleet"),
        update_subject(fleet, f"site.{site}"),
        update_subject(fleet, f"node.{site}.{node_id}"),
        state_subject(fleet, "fleet"),
        state_subject(fleet, f"site.{site}"),
        state_subject(fleet, f"node.{site}.{node_id}"),
        inbox_subject(fleet, site, node_id),
        f"nr.{fleet}.hb.>",
        credentials_subject(fleet),
    ]


def sovereign_subjects(fleet: str, site: str) -> list[str]:
    """Subjects a sovereign site's leaf links to other sites must neither export nor import.

    The site document and its nodes' documents (updates and state announcements). Heartbeats,
    the fleet document and inboxes still flow: the engine itself never sends a sovereign site's
    documents to an inbox outside the site (it checks the requester's enrolled site).
    """
    return [
        f"nr.{fleet}.u.site.{site}",
        f"nr.{fleet}.u.node.{site}.>",
        f"nr.{fleet}.sv.site.{site}",
        f"nr.{fleet}.sv.node.{site}.>",
    ]
