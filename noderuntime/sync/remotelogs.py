"""Remote logs, read-only (issue 12 §1): ``noderuntime logs NAME --node N`` from a hub.

1. The operator's CLI builds a LOG_REQUEST (sender ``operator:<name>``, payload: request id,
   node, workload, tail, follow, the operator's credential), signs it with the operator's key
   and hands the wire bytes to a hub (``fleet.logs``). The hub cannot forge or alter it.
2. The hub publishes it to the node's inbox and waits on a bounded queue for the answer
   (at most ``HUB_MAX_WAITING`` requests at once, ``QUEUE_MESSAGES`` messages each).
3. The node checks it: the operator's credential verifies against the fleet root (it learns it
   if new), the signature is the operator's, not expired, at most ``REQUEST_MAX_AGE_S`` old, not
   replayed, and for this node. A sovereign node refuses. Every read is recorded at the node
   (an event on the workload and a log line) before a line is sent.
4. The node streams the lines back to the hub's inbox as LOG_LINES messages it signs (at most
   ~32 KiB each; ``NODE_MAX_SERVING`` reads at once; a follow ends after ``MAX_FOLLOW_S``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from noderuntime import codec
from noderuntime.errors import ApiError
from noderuntime.identity.keys import Identity
from noderuntime.identity.principals import node_id_of
from noderuntime.sync import protocol
from noderuntime.sync.acl import Trust
from noderuntime.sync.bounded import LruTable
from noderuntime.sync.protocol import Kind, LogLinesMsg, LogRequestMsg
from noderuntime.sync.verify import check_signed

MAX_TAIL = 10_000
MAX_FOLLOW_S = 900.0
LINES_BYTES = 32 * 1024
NODE_MAX_SERVING = 4
HUB_MAX_WAITING = 16
QUEUE_MESSAGES = 64
REQUEST_MAX_AGE_S = 60.0
# The hub gives up on a node that says nothing for this long (not following: the whole answer).
ANSWER_TIMEOUT_S = 30.0

LogReader = Callable[[str, int | None, bool], AsyncIterator[str]]
Recorder = Callable[[str, str, str], None]  # workload, operator, via (hub)
Publish = Callable[[str, bytes], Awaitable[None]]


@dataclass(frozen=True)
class LogRequest:
    id: str
    node: str
    workload: str
    tail: int | None
    follow: bool
    reply_site: str
    reply_node: str
    credential: bytes

    @classmethod
    def parse(cls, payload: bytes) -> LogRequest | None:
        try:
            d = codec.loads(payload)
            tail = d.get("tail")
            return cls(
                id=str(d["id"])[:64],
                node=str(d["node"]),
                workload=str(d["workload"]),
                tail=int(tail) if tail is not None else None,
                follow=bool(d.get("follow", False)),
                reply_site=str(d.get("replySite", "")),
                reply_node=str(d.get("replyNode", "")),
                credential=base64.b64decode(str(d.get("credential", ""))),
            )
        except (codec.DecodeError, KeyError, TypeError, ValueError, AttributeError):
            return None


def make_request(
    operator: Identity,
    credential: bytes,
    *,
    node: str,
    workload: str,
    tail: int | None,
    follow: bool,
    now: float,
) -> bytes:
    """The signed LOG_REQUEST an operator's CLI hands to a hub (the hub fills in no field:
    it answers to its own inbox, named in ``fleet.logs``'s reply by the node's lines)."""
    payload = json.dumps(
        {
            "id": secrets.token_hex(8),
            "node": node,
            "workload": workload,
            "tail": tail,
            "follow": follow,
            "credential": base64.b64encode(credential).decode(),
        },
        sort_keys=True,
    ).encode()
    part = protocol.signed_blob_part(Kind.LOG_REQUEST, operator.name, now, payload)
    return part + operator.sign(protocol.signing_bytes(part))


def _lines_message(identity: Identity, now: float, body: dict[str, Any]) -> bytes:
    payload = json.dumps(body, sort_keys=True).encode()
    part = protocol.signed_blob_part(Kind.LOG_LINES, identity.name, now, payload)
    return part + identity.sign(protocol.signing_bytes(part))


class RemoteLogs:
    """Both ends: a hub's waiting requests and a node's reads (one per engine)."""

    def __init__(
        self,
        *,
        fleet: str,
        site: str,
        node_id: str,
        sovereign: bool,
        identity: Identity,
        trust: Trust,
        publish: Publish,
        clock: Callable[[], float],
        log: logging.Logger,
        reader: LogReader | None = None,
        record: Recorder | None = None,
    ) -> None:
        self.fleet, self.site, self.node_id, self.sovereign = fleet, site, node_id, sovereign
        self.identity, self.trust, self.publish = identity, trust, publish
        self.clock, self.log = clock, log
        self.reader, self.record = reader, record
        self._waiting: dict[str, tuple[str, asyncio.Queue[dict[str, Any]]]] = {}
        self._serving: set[asyncio.Task[None]] = set()
        self._seen: LruTable[bytes, None] = LruTable(1024)
        self.refused = 0

    # --- hub side ----------------------------------------------------------------------------

    async def request(self, wire: bytes, node_site: str | None) -> AsyncIterator[str]:
        """Forward an operator's signed request to its node; yield the lines it sends."""
        try:
            msg = protocol.decode(wire, max_bytes=2 * protocol.MAX_LOG_PAYLOAD_BYTES)
        except protocol.ProtocolError as exc:
            raise ApiError(f"not a log request: {exc}", code="bad_request") from None
        req = LogRequest.parse(msg.payload) if isinstance(msg, LogRequestMsg) else None
        if req is None:
            raise ApiError("not a signed log request", code="bad_request")
        if not node_site:
            raise ApiError(f"node {req.node!r} is not known here", code="not_found")
        if len(self._waiting) >= HUB_MAX_WAITING or req.id in self._waiting:
            raise ApiError("too many remote log reads at once; try again", code="busy")
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(QUEUE_MESSAGES)
        self._waiting[req.id] = (req.node, queue)
        try:
            # The reply inbox rides outside the operator's signature: a hub can only
            # misdirect lines to another hub's inbox, never read what it was not asked for.
            envelope = json.dumps(
                {"request": base64.b64encode(wire).decode(), "site": self.site, "hub": self.node_id}
            ).encode()
            subject = protocol.inbox_subject(self.fleet, node_site, req.node)
            await self.publish(subject, _forward_message(self.identity, self.clock(), envelope))
            while True:
                timeout = None if req.follow else ANSWER_TIMEOUT_S
                try:
                    async with asyncio.timeout(timeout):
                        body = await queue.get()
                except TimeoutError:
                    raise ApiError(
                        f"node {req.node} did not answer within {ANSWER_TIMEOUT_S:g}s "
                        "(down, cut off, or an older version)",
                        code="timeout",
                    ) from None
                if body.get("error"):
                    raise ApiError(str(body["error"]), code="refused")
                for line in body.get("lines") or []:
                    yield str(line)
                if body.get("end"):
                    return
        finally:
            self._waiting.pop(req.id, None)

    def lines(self, msg: LogLinesMsg) -> None:
        """A node's answer: verified, for a request waiting here, from the node asked."""
        member, cause = check_signed(msg.sender, msg.signature, msg.signed, self.trust)
        body = _json(msg.payload)
        if cause is not None or member is None or body is None:
            self.refused += 1
            return
        waiting = self._waiting.get(str(body.get("id")))
        if waiting is None or node_id_of(msg.sender) != waiting[0]:
            return
        with contextlib.suppress(asyncio.QueueFull):
            waiting[1].put_nowait(body)  # a reader that fell behind loses lines, not memory

    # --- node side ---------------------------------------------------------------------------

    def forwarded(self, msg: LogRequestMsg) -> None:
        """A hub forwarded an operator's request (its envelope, signed by the hub)."""
        hub, cause = check_signed(msg.sender, msg.signature, msg.signed, self.trust)
        env = _json(msg.payload)
        if cause is not None or hub is None or env is None or hub.role != "hub":
            self.refused += 1
            return
        try:
            wire = base64.b64decode(str(env["request"]))
            inner = protocol.decode(wire, max_bytes=2 * protocol.MAX_LOG_PAYLOAD_BYTES)
        except (KeyError, ValueError, protocol.ProtocolError):
            self.refused += 1
            return
        reply = protocol.inbox_subject(self.fleet, str(env.get("site")), str(env.get("hub")))
        if isinstance(inner, LogRequestMsg):
            task = asyncio.create_task(self._serve(inner, reply, hub.principal), name="logs")
            self._serving.add(task)
            task.add_done_callback(self._serving.discard)

    async def _serve(self, msg: LogRequestMsg, reply: str, via: str) -> None:
        req = LogRequest.parse(msg.payload)
        if req is None or req.node != self.node_id:
            self.refused += 1
            return

        async def answer(**body: Any) -> None:
            await self.publish(
                reply, _lines_message(self.identity, self.clock(), {"id": req.id, **body})
            )

        why = self._check(msg, req)
        if why is not None:
            self.log.warning("remote log read of %s refused (%s): %s", req.workload, via, why)
            await answer(error=why, end=True)
            return
        operator = msg.sender
        if self.record is not None:
            self.record(req.workload, operator, via)
        self.log.warning("logs of %s read remotely by %s via %s", req.workload, operator, via)
        assert self.reader is not None
        batch: list[str] = []
        size = 0
        try:
            async with asyncio.timeout(MAX_FOLLOW_S):
                async for line in self.reader(req.workload, req.tail, req.follow):
                    batch.append(line[:4096])
                    size += len(batch[-1]) + 8
                    if size >= LINES_BYTES or req.follow:
                        await answer(lines=batch)
                        batch, size = [], 0
        except TimeoutError:
            pass
        except Exception as exc:
            await answer(lines=batch, error=f"cannot read the logs: {exc}", end=True)
            return
        await answer(lines=batch, end=True)

    def _check(self, msg: LogRequestMsg, req: LogRequest) -> str | None:
        if self.sovereign:
            return f"site {self.site} is sovereign: its logs are not read from outside it"
        if self.reader is None:
            return "this node serves no remote logs"
        if not msg.sender.startswith("operator:"):
            return "only an operator may read logs remotely"
        with contextlib.suppress(Exception):
            self.trust.add(req.credential)  # learn the operator if new; verified against root
        member, cause = check_signed(msg.sender, msg.signature, msg.signed, self.trust)
        if cause is not None or member is None or member.role != "operator":
            return f"the request is not an enrolled operator's ({cause.value if cause else 'role'})"
        if msg.signature in self._seen:
            return "replayed request"
        if abs(self.clock() - msg.ts) > REQUEST_MAX_AGE_S:
            return "request too old (or clocks too far apart)"
        if len(self._serving) > NODE_MAX_SERVING:
            return "too many remote log reads at once; try again"
        if req.tail is not None and not 0 <= req.tail <= MAX_TAIL:
            return f"tail must be between 0 and {MAX_TAIL}"
        self._seen[msg.signature] = None
        return None


def _forward_message(identity: Identity, now: float, envelope: bytes) -> bytes:
    part = protocol.signed_blob_part(Kind.LOG_REQUEST, identity.name, now, envelope)
    return part + identity.sign(protocol.signing_bytes(part))


def _json(payload: bytes) -> dict[str, Any] | None:
    try:
        value = codec.loads(payload)
    except codec.DecodeError:
        return None
    return value if isinstance(value, dict) else None
