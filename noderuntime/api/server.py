"""The control API server: a route table with read/write permission per route.

Who may do what (docs/security.md, "Control socket"):

- The socket is created with mode 0600: only the daemon's user (root on an appliance) can
  connect. If the host has a ``noderuntime`` group (:data:`READ_GROUP`), the socket is given
  to it with mode 0660: its members may connect and use every read route.
- Write routes also check the peer's credentials (SO_PEERCRED, taken by the kernel at
  connect): uid 0, the daemon's own uid, or a member of the ``noderuntime-admin`` group
  (:data:`ADMIN_GROUP`; primary group, or a supplementary one read from
  ``/proc/<pid>/status``). Anyone else gets ``permission_denied``, whatever PIN they send.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import json
import logging
import os
import socket
import stat
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from noderuntime.api.lines import READ_CHUNK_BYTES, LineBudget, LineReader, Refused
from noderuntime.api.protocol import API_VERSION, decode, encode
from noderuntime.audit.chain import AuditKind
from noderuntime.audit.log import NullAudit, Ride, RideSink
from noderuntime.config.model import check_socket_path
from noderuntime.errors import ConfigError, LockedOutError, NodeRuntimeError, PermissionDeniedError
from noderuntime.sqlitedb import COMMIT_RIDERS

Params = dict[str, Any]
# Set by the server after checking a request's "auth"; handlers attribute changes to it.
ACTOR_PARAM = "_actor"
# Params a write's audit entry names (which thing it touched). Values (specs, env, PINs,
# secrets) are never audited: the audit log is exported to a SIEM.
AUDITED_PARAMS = ("name", "workload", "field", "node", "site", "rollout", "technician")
Handler = Callable[[Params], Awaitable[Any]]
StreamHandler = Callable[[Params], AsyncIterator[Any]]


@dataclass(frozen=True)
class Route:
    handler: Handler | None = None
    stream: StreamHandler | None = None
    write: bool = False
    doc: str = ""
    # Work the route can do ahead of its first call (caches), run in the background once the
    # server listens: never delays readiness, and a failure is logged, never fatal.
    warm: Callable[[], Awaitable[None]] | None = None


# Host groups the daemon looks up at start (``grp``); either may be absent.
READ_GROUP = "noderuntime"
ADMIN_GROUP = "noderuntime-admin"


def host_group(name: str) -> int | None:
    """The gid of group ``name`` on this host, or None if it has none."""
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        return None


@dataclass(frozen=True)
class Peer:
    """Who is on the other end of a connection, as the kernel saw it at connect."""

    pid: int
    uid: int
    gid: int


def peer_cred(sock: socket.socket | None) -> Peer | None:
    if sock is None:
        return None
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return None
    pid, uid, gid = struct.unpack("3i", creds)
    return Peer(int(pid), int(uid), int(gid))


def peer_uid(sock: socket.socket | None) -> int | None:
    peer = peer_cred(sock)
    return peer.uid if peer is not None else None


def supplementary_groups(pid: int) -> frozenset[int]:
    """The groups of process ``pid`` (its ``Groups:`` line), or none if it cannot be read.

    Read after connect: a client that exits and whose pid is reused by then could be judged by
    the new process's groups. Only group membership rides on this; uid 0 and the daemon's uid
    come from SO_PEERCRED alone.
    """
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Groups:"):
                    return frozenset(int(g) for g in line.split()[1:] if g.isdigit())
    except OSError:
        pass
    return frozenset()


def may_write(peer: Peer | None, *, daemon_uid: int, admin_gid: int | None) -> bool:
    """Root, the daemon's user, or a member of the admin group (if the host has one)."""
    if peer is None:
        return False
    if peer.uid in (0, daemon_uid):
        return True
    if admin_gid is None:
        return False
    return peer.gid == admin_gid or admin_gid in supplementary_groups(peer.pid)


async def _socket_in_use(path: Path) -> bool:
    try:
        async with asyncio.timeout(1.0):
            _r, w = await asyncio.open_unix_connection(str(path))
    except (OSError, TimeoutError):
        return False
    w.close()
    with contextlib.suppress(OSError):
        await w.wait_closed()
    return True


class ApiServer:
    def __init__(
        self,
        path: Path,
        routes: dict[str, Route],
        *,
        authenticate: Callable[[str, str], str] | None = None,
        log: logging.Logger | None = None,
        audit: RideSink | None = None,
        read_gid: int | None = None,
        admin_gid: int | None = None,
    ) -> None:
        """``read_gid``: the socket's group (mode 0660), else 0600; ``admin_gid``: members
        may call write routes too."""
        self.path = path
        self.routes = routes
        self.read_gid = read_gid
        self.admin_gid = admin_gid
        # (technician, pin) -> principal, raising PermissionDeniedError.
        self.authenticate = authenticate
        # Every write route call (done or refused) and every PIN check goes in.
        self.audit: RideSink = audit or NullAudit()
        self._log = log or logging.getLogger(__name__)
        self._server: asyncio.AbstractServer | None = None
        self._conns: set[asyncio.Task[Any]] = set()
        self._warming: asyncio.Task[None] | None = None
        self.requests = 0
        # Unfinished large requests of every connection together (see api/lines.py).
        self.budget = LineBudget()

    async def __aenter__(self) -> ApiServer:
        check_socket_path(self.path)
        if self.path.is_symlink() or self.path.exists():
            # Only ever remove a stale socket: apiSocket comes from node.yaml, which a restored
            # or edited config may point at any file, and the node runs as root.
            if not stat.S_ISSOCK(self.path.lstat().st_mode):
                raise ConfigError(
                    f"apiSocket {self.path} exists and is not a socket; "
                    "move it away or fix apiSocket in node.yaml"
                )
            if await _socket_in_use(self.path):
                raise ConfigError(
                    f"another noderuntime is already serving {self.path}; "
                    "stop it first or use a different --data-dir"
                )
            self.path.unlink()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        old = os.umask(0o177)  # the socket is never accessible to others, not even briefly
        try:
            self._server = await asyncio.start_unix_server(
                self._serve, path=str(self.path), limit=READ_CHUNK_BYTES
            )
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)
        if self.read_gid is not None:
            os.chown(self.path, -1, self.read_gid)
            os.chmod(self.path, 0o660)
        self._warming = asyncio.create_task(self._warm(), name="api-warm")
        return self

    async def _warm(self) -> None:
        for name, route in self.routes.items():
            if route.warm is None:
                continue
            try:
                await route.warm()
            except Exception:  # a cache not warmed is filled by the first call instead
                self._log.exception("warming %s failed", name)

    async def __aexit__(self, *exc: object) -> None:
        if self._warming is not None:
            self._warming.cancel()
            await asyncio.wait([self._warming])  # its CancelledError stays its own
            self._warming = None
        if self._server is not None:
            self._server.close()
            for task in list(self._conns):
                task.cancel()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._conns.add(task)
        peer = peer_cred(writer.get_extra_info("socket"))
        lines = LineReader(reader, self.budget)
        try:
            while True:
                line = await lines.read()
                if line is None:
                    return
                if isinstance(line, Refused):
                    # Answer now: the sender may be blocked writing the rest, which is dropped.
                    error = {"code": line.code, "message": line.message}
                    await self._send(writer, {"id": None, "ok": False, "error": error})
                    if not await lines.discard_line():
                        return
                    continue
                try:
                    await self._handle(line.data, peer, writer)
                finally:
                    lines.release(line)
        except (ConnectionError, asyncio.CancelledError, TimeoutError):
            pass
        finally:
            if task is not None:
                self._conns.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _send(self, writer: asyncio.StreamWriter, message: dict[str, Any]) -> None:
        writer.write(encode(message))
        await writer.drain()

    async def _handle(self, line: bytes, peer: Peer | None, writer: asyncio.StreamWriter) -> None:
        self.requests += 1
        uid = peer.uid if peer is not None else None
        req_id: Any = None
        audited: _Audited | None = None
        try:
            try:
                req = decode(line)
            except (ValueError, json.JSONDecodeError) as exc:
                raise _BadRequest(f"request is not a JSON object: {exc}") from exc
            req_id = req.get("id")
            version = req.get("v", API_VERSION)
            if version != API_VERSION:
                raise _BadRequest(
                    f"API version {version} is not supported by this node (it speaks "
                    f"{API_VERSION}); use a matching noderuntime CLI"
                )
            method = req.get("method")
            route = self.routes.get(method) if isinstance(method, str) else None
            if route is None:
                raise _BadRequest(f"unknown method {method!r}", code="unknown_method")
            params = req.get("params") or {}
            if not isinstance(params, dict):
                raise _BadRequest("params must be an object")
            if route.write:
                audited = _Audited(str(method), uid, params)
            if route.write and not may_write(
                peer, daemon_uid=os.getuid(), admin_gid=self.admin_gid
            ):
                raise PermissionDeniedError(
                    f"{method} changes the node; run it as root, as the daemon's user or as a "
                    f"member of the {ADMIN_GROUP!r} group"
                )
            params = dict(params)
            auth = params.pop("auth", None)
            params.pop(ACTOR_PARAM, None)  # only the server may set who acts
            # A PIN authorises a change, so it is checked on write routes only: checked on a
            # read route, it would let anyone who may read lock a technician out by guessing.
            if auth is not None and route.write:
                if not isinstance(auth, dict) or self.authenticate is None:
                    raise _BadRequest("auth must be {technician, pin}")
                params[ACTOR_PARAM] = self._login(
                    str(auth.get("technician", "")), str(auth.get("pin", "")), uid
                )
                if audited is not None:
                    audited.actor = params[ACTOR_PARAM]
            if route.stream is not None:
                async for item in route.stream(params):
                    await self._send(writer, {"id": req_id, "item": item})
                result = None
            else:
                assert route.handler is not None
                result = await self._call(route.handler, params, audited)
            if audited is not None and not audited.ridden:
                self._audit_write(audited, None)
            await self._send(writer, {"id": req_id, "ok": True, "result": result})
        except (ConnectionError, asyncio.CancelledError):
            raise
        except NodeRuntimeError as exc:
            if audited is not None:
                self._audit_write(audited, exc.code)
            await self._send(writer, {"id": req_id, "ok": False, "error": exc.to_dict()})
        except _BadRequest as exc:
            if audited is not None:
                self._audit_write(audited, exc.code)
            await self._send(
                writer,
                {"id": req_id, "ok": False, "error": {"code": exc.code, "message": str(exc)}},
            )
        except Exception as exc:
            if audited is not None:
                self._audit_write(audited, "internal")
            self._log.exception("control API handler failed")
            await self._send(
                writer,
                {
                    "id": req_id,
                    "ok": False,
                    "error": {
                        "code": "internal",
                        "message": f"internal error: {type(exc).__name__}: {exc}",
                    },
                },
            )

    def _login(self, technician: str, pin: str, uid: int | None) -> str:
        """Check a PIN, auditing the attempt (ok, failed or locked out) under the name tried."""
        assert self.authenticate is not None
        actor = f"technician:{technician}"
        try:
            principal = self.authenticate(technician, pin)
        except LockedOutError as exc:
            self.audit.record(AuditKind.LOGIN, actor, outcome="locked", uid=uid, reason=str(exc))
            raise
        except PermissionDeniedError as exc:
            self.audit.record(AuditKind.LOGIN, actor, outcome="failed", uid=uid, reason=str(exc))
            raise
        self.audit.record(AuditKind.LOGIN, principal, outcome="ok", uid=uid)
        return principal

    async def _call(self, handler: Handler, params: Params, audited: _Audited | None) -> Any:
        """Run ``handler``; a write's entry (outcome ok) rides the first commit it queues, so
        the write and its entry are durable together (audit/log.py, ``ride``). A write that
        fails after committing is then audited twice: ok, then refused with the error."""
        if audited is None:
            return await handler(params)
        actor, fields = _audit_fields(audited, None)
        ride: Ride | None = self.audit.ride(AuditKind.API_WRITE, actor, **fields)
        if ride is None:
            return await handler(params)
        token = COMMIT_RIDERS.set(ride)
        try:
            return await handler(params)
        finally:
            COMMIT_RIDERS.reset(token)
            ride.close()
            audited.ridden = ride.chained

    def _audit_write(self, audited: _Audited, error: str | None) -> None:
        actor, fields = _audit_fields(audited, error)
        self.audit.record(AuditKind.API_WRITE, actor, **fields)


def _audit_fields(audited: _Audited, error: str | None) -> tuple[str, dict[str, Any]]:
    """A write's audit entry: who (actor) and what (method, uid, named params, outcome)."""
    actor = audited.actor or (f"uid:{audited.uid}" if audited.uid is not None else "unknown")
    fields: dict[str, Any] = {"method": audited.method, "uid": audited.uid}
    fields.update(
        (k, v) for k, v in audited.params.items() if k in AUDITED_PARAMS and isinstance(v, str)
    )
    fields["outcome"] = "ok" if error is None else "refused"
    if error is not None:
        fields["error"] = error
    return actor, fields


@dataclass
class _Audited:
    """A write route call being handled: what its audit entry will say."""

    method: str
    uid: int | None
    params: Params
    actor: str | None = None
    ridden: bool = False  # its ok entry was chained with the write's commit


class _BadRequest(Exception):
    def __init__(self, message: str, code: str = "bad_request") -> None:
        super().__init__(message)
        self.code = code
