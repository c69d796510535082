"""Start and supervise `podman system service` on the node's own socket.

The service is only Podman's API front end: containers belong to conmon and outlive it. So
restarting it is cheap and safe, and it must never outlive the node (it would hold the socket
and keep a stale configuration): the child asks the kernel for SIGTERM when its parent dies.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import ctypes.util
import logging
import os
import signal
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from noderuntime.errors import RuntimeUnavailableError

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 5.0
READY_POLL_S = 0.05
RESTART_BACKOFF_INITIAL_S = 0.5
RESTART_BACKOFF_MAX_S = 30.0
# A child that served this long before dying starts a new failure streak (and a new log line).
STABLE_AFTER_S = 30.0
STDERR_TAIL_LINES = 40
STDERR_LINE_MAX_CHARS = 500

_PR_SET_PDEATHSIG = 1


def _load_prctl() -> Callable[..., int] | None:
    # Resolved in the parent: the child between fork and exec should only call, never load.
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name, use_errno=True)
    except OSError:
        return None
    prctl: Callable[..., int] = libc.prctl
    return prctl


_PRCTL = _load_prctl()


def _die_with_parent_hook() -> Callable[[], None] | None:
    """A preexec_fn that makes the child receive SIGTERM when the node dies (even on kill -9)."""
    prctl = _PRCTL
    if prctl is None:
        return None
    parent = os.getpid()

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # the node died before prctl took effect
            os._exit(1)

    return hook


class PodmanService:
    """``async with PodmanService(path, log=...)``: a supervised `podman system service`.

    Entering starts it and waits until the socket accepts connections; a child that dies, or
    that cannot start at all, is (re)started with capped back-off for as long as the node runs,
    so a node whose Podman is broken keeps serving its API and recovers once Podman can start
    (``healthy`` and ``last_error`` say how it stands); leaving terminates it.
    """

    def __init__(
        self,
        socket_path: str,
        *,
        podman_bin: str = "podman",
        log: logging.Logger,
        start_timeout_s: float = START_TIMEOUT_S,
    ) -> None:
        self.socket_path = socket_path
        self._bin = podman_bin
        self._log = log
        self._start_timeout_s = start_timeout_s
        self._proc: asyncio.subprocess.Process | None = None
        self._stderr_task: asyncio.Task[None] | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
        self._started_at = 0.0
        self.restarts = 0
        self.healthy = False
        self.last_error: str | None = None
        # Called each time a child starts serving (lets the reconciler retry at once).
        self.on_ready: Callable[[], None] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def stderr_tail(self) -> str:
        return "\n".join(self._stderr_tail)

    # --- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> PodmanService:
        try:
            await self._start()
        except RuntimeUnavailableError as exc:
            self._log.error("podman system service cannot start (will keep trying): %s", exc)
        else:
            self._log.info(
                "podman system service (pid %s) listening on %s", self.pid, self.socket_path
            )
        self._supervisor = asyncio.create_task(self._supervise(), name="podman-service")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        await self._terminate()
        self.healthy = False
        # Whatever sits there and is not a socket was never ours (we failed to start because of it).
        with contextlib.suppress(RuntimeUnavailableError):
            _remove_socket(self.socket_path)

    # --- one child -------------------------------------------------------------------------

    async def _start(self) -> None:
        """Start a child and wait until it serves; raises RuntimeUnavailableError if it doesn't."""
        self._stderr_tail.clear()
        try:
            _remove_socket(self.socket_path)
        except RuntimeUnavailableError as exc:
            self._fail_start(str(exc))
        Path(self.socket_path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._proc = await asyncio.create_subprocess_exec(
                self._bin,
                "system",
                "service",
                "--time=0",
                f"unix://{self.socket_path}",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                preexec_fn=_die_with_parent_hook(),
                # Ctrl-C on the node's terminal is the node's to handle; it stops us in order.
                start_new_session=True,
            )
        except OSError as exc:
            self._fail_start(f"cannot run {self._bin!r} ({exc}); install Podman or set podmanBin")
        self._started_at = time.monotonic()
        assert self._proc.stderr is not None
        self._stderr_task = asyncio.create_task(self._drain_stderr(self._proc.stderr))
        if not await self._wait_ready():
            code = self._proc.returncode
            await self._terminate()
            self._fail_start(
                f"podman system service exited with code {code} before listening on "
                f"{self.socket_path}"
                if code is not None
                else f"podman system service did not start listening on {self.socket_path} "
                f"within {self._start_timeout_s:g} s"
            )
        # last_error stays: it says why the previous child went away.
        self.healthy = True
        if self.on_ready is not None:
            self.on_ready()

    def _fail_start(self, message: str) -> NoReturn:
        tail = self.stderr_tail
        # The last stderr line is usually Podman's own reason; the whole tail goes to the log.
        self.last_error = message + (f": {self._stderr_tail[-1]}" if tail else "")
        self.healthy = False
        raise RuntimeUnavailableError(
            message + (f"; its stderr ends with:\n{tail}" if tail else "")
        )

    async def _wait_ready(self) -> bool:
        assert self._proc is not None
        deadline = time.monotonic() + self._start_timeout_s
        while time.monotonic() < deadline:
            if self._proc.returncode is not None:
                await self._stderr_done()
                return False
            if await _accepts_connections(self.socket_path):
                return True
            await asyncio.sleep(READY_POLL_S)
        return False

    async def _drain_stderr(self, stream: asyncio.StreamReader) -> None:
        # Read everything so a chatty podman never blocks on a full pipe; keep only the tail.
        while True:
            try:
                line = await stream.readline()
            except ValueError:  # a line longer than the reader's limit
                continue
            if not line:
                return
            self._stderr_tail.append(
                line.decode("utf-8", "replace").rstrip()[:STDERR_LINE_MAX_CHARS]
            )

    async def _stderr_done(self) -> None:
        if self._stderr_task is not None:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                async with asyncio.timeout(1.0):
                    await asyncio.shield(self._stderr_task)

    async def _terminate(self) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(STOP_TIMEOUT_S):
                    await proc.wait()
            except TimeoutError:
                self._log.warning("podman system service ignored SIGTERM; killing it")
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        if self._stderr_task is not None:
            self._stderr_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._stderr_task

    # --- supervision -----------------------------------------------------------------------

    async def _supervise(self) -> None:
        streak = 0 if self.healthy else 1
        while True:
            if self.healthy:
                assert self._proc is not None
                code = await self._proc.wait()
                await self._stderr_done()
                self.healthy = False
                ran_s = time.monotonic() - self._started_at
                if ran_s >= STABLE_AFTER_S:
                    streak = 0
                streak += 1
                self.last_error = f"podman system service exited with code {code}" + (
                    f": {self._stderr_tail[-1]}" if self._stderr_tail else ""
                )
                if streak == 1:
                    self._log.warning("%s; restarting it\n%s", self.last_error, self.stderr_tail)
            await asyncio.sleep(_backoff_s(streak))
            if not await self._restart(streak):
                streak += 1

    async def _restart(self, streak: int) -> bool:
        self.restarts += 1
        try:
            await self._start()
        except RuntimeUnavailableError as exc:
            if streak == 1:
                self._log.warning("restarting podman system service failed: %s", exc)
            return False
        self._log.info(
            "podman system service started (pid %s, attempt %d)", self.pid, self.restarts
        )
        return True


def _backoff_s(streak: int) -> float:
    return float(min(RESTART_BACKOFF_MAX_S, RESTART_BACKOFF_INITIAL_S * 2 ** (streak - 1)))


async def _accepts_connections(path: str) -> bool:
    try:
        _, writer = await asyncio.open_unix_connection(path)
    except OSError:
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


def _remove_socket(path: str) -> None:
    """Remove a socket left by a previous child; refuse to delete anything that isn't one."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise RuntimeUnavailableError(
            f"{path} exists and is not a socket; move it away so Podman can listen there"
        )
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
