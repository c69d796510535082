"""Health probes run by noderuntime itself (Podman 4.3's own need systemd timers).

One task per (workload, container, start, probe) target. A task reports "starting" at once,
waits out the start period, then probes every interval: a success makes the workload
"healthy", ``retries`` consecutive failures make it "unhealthy". Only transitions are reported.
A container that restarts (new start time) or is replaced gets a fresh task, because the
reconciler forgets health on every start.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from noderuntime.runtime.base import ContainerRuntime, ObservedContainer, ProbeKind, ProbeSpec

STARTING = "starting"
HEALTHY = "healthy"
UNHEALTHY = "unhealthy"
DETAIL_MAX_CHARS = 300
HTTP_STATUS_LINE_MAX_BYTES = 1024
LOOPBACK = "127.0.0.1"

Target = tuple[str, ObservedContainer, ProbeSpec]
RESULTS_KEPT = 20
TargetKey = tuple[str, str, float | None, ProbeSpec]


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    detail: str


class HealthMonitor:
    """``async with HealthMonitor(...)``; call :meth:`refresh` whenever targets may have changed."""

    def __init__(
        self,
        *,
        runtime: ContainerRuntime,
        targets: Callable[[], Iterable[Target]],
        on_change: Callable[[str, str | None, str | None], None],
        log: logging.Logger,
    ) -> None:
        self._runtime = runtime
        self._targets = targets
        self._on_change = on_change
        self._log = log
        self._tasks: dict[TargetKey, asyncio.Task[None]] = {}
        self._probed: set[str] = set()
        self._open = False
        # Recent probe results per workload, for `describe` and the TUI (memory-bounded).
        self._results: dict[str, collections.deque[dict[str, object]]] = {}
        # Probe results since start, per (workload, ok), for metrics.
        self.result_counts: collections.Counter[tuple[str, bool]] = collections.Counter()

    async def __aenter__(self) -> HealthMonitor:
        self._open = True
        self.refresh()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._open = False
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def recent_results(self, workload: str) -> list[dict[str, object]]:
        """The last probe results of ``workload``, oldest first: ts, ok, detail, duration_ms,
        consecutive_failures."""
        return list(self._results.get(workload, ()))

    @property
    def watching(self) -> list[TargetKey]:
        return list(self._tasks)

    def refresh(self) -> None:
        """Start tasks for new targets and cancel those whose target is gone. Cheap; sync."""
        if not self._open:
            return
        wanted = {
            (name, c.id, c.started_at, probe): (name, c, probe)
            for name, c, probe in self._targets()
        }
        for key in [k for k in self._tasks if k not in wanted]:
            self._tasks.pop(key).cancel()
        probed = {key[0] for key in wanted}
        # Not probed any more (stopped, crashed, deleted): its last verdict no longer holds.
        for name in sorted(self._probed - probed):
            self._notify(name, None, None)
        for name in [n for n in self._results if n not in probed and n not in self._probed]:
            del self._results[name]
        self._probed = probed
        for key, (name, container, probe) in wanted.items():
            if key not in self._tasks:
                # Reported here, not in the task: status says "starting" as soon as we know.
                self._report(name, STARTING, None)
                self._tasks[key] = asyncio.create_task(
                    self._watch(name, container, probe), name=f"health-{name}"
                )

    # --- one target ------------------------------------------------------------------------

    async def _watch(self, name: str, container: ObservedContainer, probe: ProbeSpec) -> None:
        await asyncio.sleep(_start_period_left(container, probe))
        status, failures = STARTING, 0
        while True:
            started = time.monotonic()
            result = await self._probe(container, probe)
            failures = 0 if result.ok else failures + 1
            self._record(name, result, time.monotonic() - started, failures)
            new = HEALTHY if result.ok else (UNHEALTHY if failures >= probe.retries else status)
            if new != status:
                status = new
                self._report(name, status, result.detail)
            await asyncio.sleep(max(0.0, probe.interval_s - (time.monotonic() - started)))

    def _record(self, name: str, result: ProbeResult, took_s: float, failures: int) -> None:
        ring = self._results.setdefault(name, collections.deque(maxlen=RESULTS_KEPT))
        self.result_counts[(name, result.ok)] += 1
        ring.append(
            {
                "ts": time.time(),
                "ok": result.ok,
                "detail": result.detail,
                "duration_ms": round(took_s * 1000, 1),
                "consecutive_failures": failures,
            }
        )

    def _report(self, name: str, status: str, detail: str | None) -> None:
        log = self._log.warning if status == UNHEALTHY else self._log.info
        log("workload %s: health is now %s%s", name, status, f" ({detail})" if detail else "")
        self._notify(name, status, detail)

    def _notify(self, name: str, status: str | None, detail: str | None) -> None:
        try:
            self._on_change(name, status, detail)
        except Exception:  # a listener's bug must not stop probing
            self._log.exception("health listener failed for workload %s", name)

    async def _probe(self, container: ObservedContainer, probe: ProbeSpec) -> ProbeResult:
        try:
            async with asyncio.timeout(probe.timeout_s):
                return await self._run_probe(container, probe)
        except TimeoutError:
            return ProbeResult(
                False, f"{probe.kind.value} probe timed out after {probe.timeout_s:g}s"
            )
        except Exception as exc:  # a probe failure is a result, never an error of the task
            return ProbeResult(False, _truncate(f"{probe.kind.value} probe failed: {exc}"))

    async def _run_probe(self, container: ObservedContainer, probe: ProbeSpec) -> ProbeResult:
        match probe.kind:
            case ProbeKind.EXEC:
                return await self._exec_probe(container, probe)
            case ProbeKind.HTTP:
                return await _connect_probe(container, probe, _http_check)
            case ProbeKind.TCP:
                return await _connect_probe(container, probe, _tcp_check)
        return ProbeResult(False, f"unknown probe kind {probe.kind}")

    async def _exec_probe(self, container: ObservedContainer, probe: ProbeSpec) -> ProbeResult:
        result = await self._runtime.exec(container.id, list(probe.command), probe.timeout_s)
        output = _truncate(result.output.strip())
        if result.exit_code == 0:
            return ProbeResult(True, output)
        return ProbeResult(False, _truncate(f"exit code {result.exit_code}: {output}".rstrip(": ")))


# --- network probes (pure functions of the container and probe) ------------------------------


def probe_addresses(container: ObservedContainer, port: int) -> list[tuple[str, int]]:
    """Where ``port`` inside the container can be reached: its IP, then a published host port."""
    out: list[tuple[str, int]] = []
    if container.ip_address:
        out.append((container.ip_address, port))
    for p in container.ports:
        if p.container_port == port and p.protocol == "tcp" and p.host_port:
            host = p.host_ip if p.host_ip not in ("", "0.0.0.0", "::") else LOOPBACK
            out.append((host, p.host_port))
    if not out:  # host networking: the port is the host's
        out.append((LOOPBACK, port))
    return out


async def _connect_probe(
    container: ObservedContainer,
    probe: ProbeSpec,
    check: Callable[[str, int, ProbeSpec], Awaitable[ProbeResult]],
) -> ProbeResult:
    if probe.port is None:
        return ProbeResult(False, f"{probe.kind.value} probe has no port")
    errors = []
    for host, port in probe_addresses(container, probe.port):
        try:
            return await check(host, port, probe)
        except OSError as exc:  # unreachable here; the next address may work
            errors.append(f"{host}:{port}: {exc.strerror or exc}")
    return ProbeResult(False, _truncate("cannot connect to " + "; ".join(errors)))


async def _tcp_check(host: str, port: int, probe: ProbeSpec) -> ProbeResult:
    _, writer = await asyncio.open_connection(host, port)
    await _close(writer)
    return ProbeResult(True, f"connected to {host}:{port}")


async def _http_check(host: str, port: int, probe: ProbeSpec) -> ProbeResult:
    tls = _insecure_tls() if probe.scheme == "https" else None
    reader, writer = await asyncio.open_connection(host, port, ssl=tls)
    try:
        path = probe.path if probe.path.startswith("/") else "/" + probe.path
        request = (
            f"GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\n"
            "User-Agent: noderuntime-health\r\nConnection: close\r\n\r\n"
        )
        writer.write(request.encode("latin-1"))
        await writer.drain()
        line = await reader.readline()
    finally:
        await _close(writer)
    status_line = line[:HTTP_STATUS_LINE_MAX_BYTES].decode("latin-1").strip()
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        return ProbeResult(False, _truncate(f"GET {path}: not an HTTP answer: {status_line!r}"))
    code = int(parts[1])
    return ProbeResult(200 <= code < 400, _truncate(f"GET {path}: {status_line}"))


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError, ssl.SSLError):
        await writer.wait_closed()


def _insecure_tls() -> ssl.SSLContext:
    # Liveness, not identity: appliances serve self-signed certificates on their own IPs.
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _start_period_left(container: ObservedContainer, probe: ProbeSpec) -> float:
    # Measured from the container's start, so an adopted container does not wait again.
    if probe.start_period_s <= 0:
        return 0.0
    if container.started_at is None:
        return probe.start_period_s
    return max(
        0.0, min(probe.start_period_s, container.started_at + probe.start_period_s - time.time())
    )


def _truncate(text: str) -> str:
    return text if len(text) <= DETAIL_MAX_CHARS else text[: DETAIL_MAX_CHARS - 1] + "…"
