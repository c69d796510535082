"""Local control API wire format: JSON lines over a unix socket.

Request   {"v": 1, "id": 7, "method": "workloads.list", "params": {...}}
Response  {"id": 7, "ok": true, "result": ...}
          {"id": 7, "ok": false, "error": {"code": "invalid_spec", "message": "...", ...}}
Stream    {"id": 7, "item": ...} repeated, then a normal response ends the stream.

One request is answered before the next is read on a connection; a client that wants two
things at once opens two connections. Messages are single lines of UTF-8 JSON.

Protocol versions:
- 1 (2026-11-25): first version.
- 1 (2026-12-03): error codes ``request_too_large`` (a line over MAX_MESSAGE_BYTES, answered
  before the rest of it is read and dropped) and ``busy`` (too many large requests at once).
- 1 (2026-12-03): an attached result: ``{"id": 7, "ok": true, "result": {"attached_bytes": N}}``
  followed by N raw bytes, sent only to a request that asks for it by a parameter of its route
  (``fleet.workloads`` with ``render: "json"``: the CLI's -o json text, which it writes out as
  it comes; :class:`Attached`). No other request is answered this way.
"""

from __future__ import annotations

import json
from typing import Any

from noderuntime import codec
from noderuntime.errors import ApiError, FieldProblem, SpecError

API_VERSION = 1
# Largest request or response line; a workload file is far smaller.
MAX_MESSAGE_BYTES = 8 * 1024 * 1024
# The error code of a request over MAX_MESSAGE_BYTES, from the client (before sending) or the
# node; invalid input, so the CLI exits 2.
TOO_LARGE = "request_too_large"


# The result of an answer whose bytes follow its line (see the module's changelog).
ATTACHED = "attached_bytes"
# Largest attached result a client reads: ~180,000 fleet rows of -o json text.
MAX_ATTACHED_BYTES = 64 * 1024 * 1024


class Attached(bytes):
    """A route's result sent as raw bytes after its answer line (``{"attached_bytes": N}``):
    text the client prints as it is, neither escaped into the line nor decoded from it."""


class RawJson(str):
    """A route's result already encoded as JSON, in :func:`encode`'s form: a large answer
    assembled from cached pieces (``fleet.workloads``) is not decoded and encoded again."""


def encode(message: dict[str, Any]) -> bytes:
    result = message.get("result")
    if isinstance(result, Attached):
        return encode({**message, "result": {ATTACHED: len(result)}}) + result
    if isinstance(result, RawJson):
        head = json.dumps({k: v for k, v in message.items() if k != "result"}, **_WIRE)
        sep = "," if len(head) > 2 else ""  # "{}": no other key to follow
        return f'{head[:-1]}{sep}"result":{result}}}'.encode() + b"\n"
    return json.dumps(message, **_WIRE).encode() + b"\n"


# Compact, and a value JSON cannot hold sent as its str() (a Path, an enum).
_WIRE: dict[str, Any] = {"separators": (",", ":"), "default": str}


def encode_value(value: Any) -> str:
    """One value as :func:`encode` writes it, for pieces of a :class:`RawJson`."""
    return json.dumps(value, **_WIRE)


def request_line(req_id: int, method: str, params: dict[str, Any] | None) -> bytes:
    """The request line; one the node would refuse for its size is refused here, before
    anything is sent (sent, it would end as a broken pipe, read as "node not running")."""
    line = encode({"v": API_VERSION, "id": req_id, "method": method, "params": params or {}})
    if len(line) > MAX_MESSAGE_BYTES:
        raise ApiError(
            f"the request is too large: {len(line)} bytes, more than the {MAX_MESSAGE_BYTES} "
            "a node accepts in one request; nothing was sent (split the input, e.g. one "
            "file per workload)",
            code=TOO_LARGE,
        )
    return line


def result_of(msg: dict[str, Any]) -> Any:
    """A response's result, or its error raised as the client-side exception."""
    if msg.get("ok"):
        return msg.get("result")
    raise error_from(msg.get("error") or {})


def error_from(payload: dict[str, Any]) -> Exception:
    code = str(payload.get("code", "api"))
    message = str(payload.get("message", "unknown error"))
    if code == "invalid_spec" and "problems" in payload:
        problems = [
            FieldProblem(
                field=str(p.get("field", "")),
                message=str(p.get("message", "")),
                line=p.get("line"),
                document=p.get("document"),
            )
            for p in payload["problems"]
        ]
        err = SpecError(problems)
        err.args = (message,)
        return err
    return ApiError(message, code=code, details=payload)


def decode(line: bytes) -> dict[str, Any]:
    """One message; raises ValueError (``codec.DecodeError``) for anything but a bounded JSON
    object, never RecursionError: a request nested 100,000 deep is a bad request, not a bug."""
    value = codec.loads(line, max_bytes=MAX_MESSAGE_BYTES + 1)
    if not isinstance(value, dict):
        raise ValueError("message must be a JSON object")
    return value
