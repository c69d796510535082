"""The blocking client of one-shot commands answers as the asyncio client does: the same
results, the same errors with the same messages, against a real ApiServer."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from noderuntime.api import oneshot
from noderuntime.api.client import ApiClient
from noderuntime.api.protocol import (
    MAX_ATTACHED_BYTES,
    MAX_MESSAGE_BYTES,
    TOO_LARGE,
    Attached,
    RawJson,
)
from noderuntime.api.server import ApiServer, Params, Route
from noderuntime.errors import ApiError, DaemonNotRunningError, FieldProblem, SpecError
from tests.unit.fake_socket import answers, peer


async def _echo(params: Params) -> Any:
    return {"got": params.get("x"), "list": [1, 2.5, None, "\u2603"]}


async def _text(params: Params) -> Any:
    text = 'a "quoted" [\n{row}\\ \u00e9 100%'
    return RawJson('"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"')


ATTACHMENT = b'[\n  {"a": "\\u2603 \\"x\\"\n"}\n]' * 50_000


async def _attach(params: Params) -> Any:
    return Attached(ATTACHMENT)


async def _bad(params: Params) -> Any:
    raise SpecError([FieldProblem(field="spec.image", message="required", line=3)])


ROUTES = {
    "echo": Route(_echo),
    "text": Route(_text),
    "attach": Route(_attach),
    "bad": Route(_bad),
}


@contextlib.asynccontextmanager
async def serving() -> AsyncIterator[Path]:
    with tempfile.TemporaryDirectory(prefix="nrs-", dir="/tmp") as tmp:
        async with ApiServer(Path(tmp) / "api.sock", ROUTES) as server:
            yield server.path


async def _both(path: Path, method: str, params: dict[str, Any] | None = None) -> list[Any]:
    """(result or exception) from each client."""
    out: list[Any] = []
    try:
        async with ApiClient(path) as client:
            out.append(await client.call(method, params))
    except Exception as exc:
        out.append(exc)
    try:
        out.append(await asyncio.to_thread(oneshot.call, path, method, params))
    except Exception as exc:
        out.append(exc)
    return out


def _same(a: Any, b: Any) -> None:
    if isinstance(a, Exception):
        assert type(a) is type(b) and str(a) == str(b) and a.code == b.code  # type: ignore[attr-defined]
    else:
        assert a == b


async def test_results_and_errors_are_those_of_the_asyncio_client() -> None:
    async with serving() as path:
        for method, params in [("echo", {"x": "y"}), ("text", None), ("bad", None), ("nope", {})]:
            _same(*await _both(path, method, params))
        assert (await _both(path, "text"))[1] == 'a "quoted" [\n{row}\\ \u00e9 100%'
        spec_error = (await _both(path, "bad"))[1]
        assert isinstance(spec_error, SpecError) and spec_error.problems[0].line == 3
    # The server gone: nothing answers.
    (a, b) = await _both(path, "echo")
    assert isinstance(b, DaemonNotRunningError) and "not running" in str(b)
    _same(a, b)


def test_an_oversized_request_is_refused_before_sending() -> None:
    with pytest.raises(ApiError, match="too large") as err:
        oneshot.call(Path("/nonexistent/api.sock"), "x", {"y": "a" * MAX_MESSAGE_BYTES})
    assert err.value.code == TOO_LARGE


async def test_an_attached_result_comes_as_bytes_to_the_client_that_asked() -> None:
    async with serving() as path:
        got = await asyncio.to_thread(oneshot.call, path, "attach", attached=True)
        assert isinstance(got, Attached) and got == ATTACHMENT
        # A node that answers a plain result (from before the route could attach) is read as one.
        got = await asyncio.to_thread(oneshot.call, path, "echo", {"x": 1}, attached=True)
        assert got["got"] == 1


def test_an_attachment_too_large_or_cut_short() -> None:
    too_large = b'{"id":1,"ok":true,"result":{"attached_bytes":%d}}\n' % (MAX_ATTACHED_BYTES + 1)
    with peer(answers(too_large)) as path, pytest.raises(ApiError) as err:
        oneshot.call(path, "x", attached=True)
    assert err.value.code == "bad_response"
    cut = b'{"id":1,"ok":true,"result":{"attached_bytes":10}}\nabc'
    with peer(answers(cut)) as path, pytest.raises(DaemonNotRunningError, match="closed the"):
        oneshot.call(path, "x", attached=True)
    with peer(answers(cut + b"defghij")) as path:
        assert oneshot.call(path, "x", attached=True) == b"abcdefghij"


def test_a_closed_cut_or_oversized_answer() -> None:
    with peer(answers(b"")) as path, pytest.raises(DaemonNotRunningError, match="closed the"):
        oneshot.call(path, "x")
    with peer(answers(b'{"id":1,"ok":tr')) as path, pytest.raises(ApiError) as err:
        oneshot.call(path, "x")
    assert err.value.code == "bad_response"
    with peer(answers(b"x" * (MAX_MESSAGE_BYTES + 2))) as path, pytest.raises(ApiError) as err:
        oneshot.call(path, "x")
    assert err.value.code == "message_too_large"
