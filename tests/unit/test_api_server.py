"""The control API server against hostile clients (issue 10, "Control API"; issue 9, 13).

A real ApiServer on a unix socket, driven with raw bytes where a well-behaved client could not
send them.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import stat
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from noderuntime.api.client import ApiClient
from noderuntime.api.lines import SMALL_REQUEST_BYTES, LineBudget
from noderuntime.api.protocol import MAX_MESSAGE_BYTES, TOO_LARGE, encode
from noderuntime.api.server import (
    ACTOR_PARAM,
    ApiServer,
    Params,
    Peer,
    Route,
    may_write,
    supplementary_groups,
)
from noderuntime.cli.main import main
from noderuntime.errors import ApiError, PermissionDeniedError


async def _echo(params: Params) -> Any:
    return {"actor": params.get(ACTOR_PARAM), "size": len(json.dumps(params))}


ROUTES = {"read": Route(_echo), "write": Route(_echo, write=True)}


@contextlib.asynccontextmanager
async def serving(**kw: Any) -> AsyncIterator[ApiServer]:
    with tempfile.TemporaryDirectory(prefix="nrs-", dir="/tmp") as tmp:
        async with ApiServer(Path(tmp) / "api.sock", ROUTES, **kw) as server:
            yield server


@contextlib.asynccontextmanager
async def raw(
    server: ApiServer,
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_unix_connection(str(server.path), limit=MAX_MESSAGE_BYTES)
    try:
        yield reader, writer
    finally:
        writer.close()


async def _ask(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, line: bytes) -> Any:
    writer.write(line)
    await writer.drain()
    return json.loads(await reader.readline())


def _request(method: str, params: dict[str, Any]) -> bytes:
    return encode({"v": 1, "id": 7, "method": method, "params": params})


async def test_deeply_nested_json_is_a_bad_request_not_an_internal_error() -> None:
    async with serving() as server, raw(server) as (r, w):
        for nested in (b"[" * 100_000, b"[" * 5_000 + b"]" * 5_000, b'{"a":' * 3_000):
            line = b'{"v": 1, "id": 7, "method": "read", "params": {"x": ' + nested + b"}}\n"
            answer = await _ask(r, w, line)
            assert answer["error"]["code"] == "bad_request", answer
            assert "nested deeper" in answer["error"]["message"]
        assert (await _ask(r, w, _request("read", {})))["ok"]


async def test_an_oversized_line_is_answered_as_too_large_and_the_connection_goes_on() -> None:
    async with serving() as server, raw(server) as (r, w):
        big = _request("read", {"x": "a" * (MAX_MESSAGE_BYTES + 1024)})
        answer = await _ask(r, w, big)
        assert answer["error"]["code"] == TOO_LARGE
        assert str(MAX_MESSAGE_BYTES) in answer["error"]["message"]
        # The rest of the line was read and dropped: the next request is understood.
        assert (await _ask(r, w, _request("read", {})))["ok"]
        assert server.budget.used == 0


async def test_large_unfinished_lines_share_one_budget_and_small_requests_pass() -> None:
    async with serving() as server:
        server.budget = LineBudget(limit=3 * SMALL_REQUEST_BYTES)
        unfinished = b'{"v": 1, "id": 1, "method": "read", "params": {"x": "'
        unfinished += b"a" * (2 * SMALL_REQUEST_BYTES)
        async with raw(server) as (r1, w1), raw(server) as (r2, w2), raw(server) as (r3, w3):
            w1.write(unfinished)
            await w1.drain()
            for _ in range(1000):  # readiness poll: until the server has buffered it
                if server.budget.used > 2 * SMALL_REQUEST_BYTES:
                    break
                await asyncio.sleep(0.01)
            assert server.budget.used > 2 * SMALL_REQUEST_BYTES
            # A second large line does not fit beside the first: refused, not buffered.
            w2.write(unfinished)
            await w2.drain()
            answer = json.loads(await r2.readline())
            assert answer["error"]["code"] == "busy"
            assert server.budget.used <= server.budget.limit
            # An ordinary request needs no budget.
            assert (await _ask(r3, w3, _request("read", {})))["ok"]
            # The first line, finished, is served and gives its budget back.
            w1.write(b'"}}\n')
            await w1.drain()
            assert json.loads(await r1.readline())["ok"]
        assert server.budget.used == 0


async def test_a_pin_is_checked_only_where_it_authorises_something() -> None:
    checked: list[str] = []

    def authenticate(technician: str, pin: str) -> str:
        checked.append(technician)
        raise PermissionDeniedError("unknown technician or wrong PIN")

    async with serving(authenticate=authenticate) as server, raw(server) as (r, w):
        auth = {"technician": "alice", "pin": "0000"}
        for _ in range(10):  # a reader guessing: nothing is checked, nobody is locked out
            answer = await _ask(r, w, _request("read", {"auth": auth}))
            assert answer["ok"] and answer["result"]["actor"] is None
        assert checked == []
        answer = await _ask(r, w, _request("write", {"auth": auth}))
        assert answer["error"]["code"] == "permission_denied"
        assert checked == ["alice"]


async def test_the_client_refuses_an_oversized_request_before_sending_it() -> None:
    with tempfile.TemporaryDirectory(prefix="nrs-", dir="/tmp") as tmp:
        # Nothing listens there: had it tried to send, this would be "node not running".
        client = ApiClient(Path(tmp) / "api.sock")
        with pytest.raises(ApiError, match="too large") as err:
            await client.call("workloads.apply", {"yaml": "a" * MAX_MESSAGE_BYTES})
        assert err.value.code == TOO_LARGE
        with pytest.raises(ApiError, match="too large"):
            async for _ in client.stream("workloads.logs", {"x": "a" * MAX_MESSAGE_BYTES}):
                pass


def test_apply_of_a_50_mb_file_is_too_large_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NODERUNTIME_AS", raising=False)
    node = tmp_path / "n"
    assert main(["--data-dir", str(node), "init", "--node-id", "n1", "--site", "s"]) == 0
    capsys.readouterr()
    big = tmp_path / "big.yaml"
    big.write_bytes(b"# padding\n" * (5 * 1024 * 1024))
    assert main(["--data-dir", str(node), "apply", "-f", str(big)]) == 2
    err = capsys.readouterr().err
    assert "too large" in err and "nothing was sent" in err


async def test_an_api_socket_path_that_is_a_file_is_refused_not_deleted(tmp_path: Path) -> None:
    from noderuntime.errors import ConfigError

    precious = tmp_path / "identity.key"
    precious.write_text("do not delete")
    link = tmp_path / "link.sock"
    link.symlink_to(precious)
    for path in (precious, link):
        with pytest.raises(ConfigError, match="not a socket"):
            async with ApiServer(path, ROUTES):
                pass
    assert precious.read_text() == "do not delete" and link.is_symlink()


# --- who may use the socket (issue 13 §4): a read group, and writes for an admin group -------

READ_GID, ADMIN_GID, NOBODY = 4242, 4243, 65534
CLIENT = """
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1])
except OSError as exc:
    print(json.dumps({"connect": exc.errno}))
    sys.exit()
for method in ("read", "write"):
    s.sendall(json.dumps({"v": 1, "id": 1, "method": method}).encode() + b"\\n")
    print(s.makefile().readline().strip())
"""


async def _as_user(path: Path, gid: int, extra: list[int]) -> list[dict[str, Any]]:
    proc = await asyncio.create_subprocess_exec(
        "/usr/bin/python3", "-c", CLIENT, str(path),
        user=NOBODY, group=gid, extra_groups=extra, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await proc.communicate()
    return [json.loads(line) for line in out.decode().splitlines()]


def test_who_may_write() -> None:
    me = os.getpid()
    assert ADMIN_GID not in supplementary_groups(me)  # the groups of the test's own process
    assert may_write(Peer(me, 0, 0), daemon_uid=1000, admin_gid=None)
    assert may_write(Peer(me, 1000, 1000), daemon_uid=1000, admin_gid=None)
    assert not may_write(Peer(me, 1001, 1001), daemon_uid=1000, admin_gid=None)
    assert may_write(Peer(me, 1001, ADMIN_GID), daemon_uid=1000, admin_gid=ADMIN_GID)
    assert not may_write(Peer(me, 1001, 1001), daemon_uid=1000, admin_gid=ADMIN_GID)
    assert not may_write(None, daemon_uid=1000, admin_gid=ADMIN_GID)


@pytest.mark.skipif(os.geteuid() != 0, reason="changes uid and gid of a client: needs root")
async def test_the_read_group_reads_and_only_the_admin_group_writes() -> None:
    with tempfile.TemporaryDirectory(prefix="nrs-", dir="/tmp") as tmp:
        os.chmod(tmp, 0o755)  # a socket outside the (0700) data dir, as /run/noderuntime
        path = Path(tmp) / "api.sock"
        async with ApiServer(path, ROUTES, read_gid=READ_GID, admin_gid=ADMIN_GID):
            st = path.stat()
            assert (stat.S_IMODE(st.st_mode), st.st_gid) == (0o660, READ_GID)
            reader = await _as_user(path, READ_GID, [])
            assert reader[0]["ok"] is True
            assert reader[1]["error"]["code"] == "permission_denied"
            assert "noderuntime-admin" in reader[1]["error"]["message"]
            admin = await _as_user(path, READ_GID, [ADMIN_GID])
            assert [a["ok"] for a in admin] == [True, True]
            stranger = await _as_user(path, NOBODY, [])
            assert stranger == [{"connect": errno.EACCES}]
        async with ApiServer(path, ROUTES):  # no group on the host: 0600 as before
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
            assert await _as_user(path, READ_GID, [ADMIN_GID]) == [{"connect": errno.EACCES}]
