"""The Prometheus endpoint (``metricsAddress``; issue 12 §3): GET /metrics in text format 0.0.4.

Off by default; only a node configured with an address imports prometheus-client (+1.2 MB RSS
over the node's own imports, measured; a node without metrics pays nothing).

What is served, all read at scrape time from what the node already keeps (no extra writes):

- node: workloads by phase, restarts per workload, probe results per workload and outcome,
  reconcile pass duration (histogram, observed by the loop), store size, commits and their
  total seconds (commit latency = sum / count), sync counters and rejections by reason, peers up;
- at a hub, from the fleet view's data (``noderuntime.fleetops``): nodes up and known by site,
  workloads by phase by site, and rollouts in progress by workload and state.

:func:`families` is pure over a :class:`Sample`; :class:`MetricsServer` gathers the sample (the
store's size needs an await) and serves it over a minimal asyncio HTTP/1.0 responder (no
aiohttp: its import alone costs ~15 MB, docs/architecture.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from noderuntime.config.model import split_host_port

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MAX_REQUEST_HEAD_BYTES = 8 * 1024
REQUEST_TIMEOUT_S = 5.0
# Reconcile passes: an idle pass takes ~1-3 ms, one that starts containers seconds.
PASS_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


@dataclass(frozen=True)
class Sample:
    """What one scrape reports; plain values gathered from the node's parts."""

    node: str
    site: str
    phases: Mapping[str, int]
    restarts: Mapping[str, int]
    probes: Mapping[tuple[str, bool], int]
    store_size_bytes: int
    store_commits: int
    store_commit_seconds: float
    sync_counters: Mapping[str, int] | None = None  # None: the node does not sync
    sync_rejections: Mapping[str, int] = field(default_factory=dict)
    peers_up: int = 0
    # Hub only (None elsewhere): fleet_sites as fleetops.view.site_summaries gives them.
    fleet_sites: Sequence[Mapping[str, Any]] | None = None
    rollouts: Mapping[str, Mapping[str, Any]] | None = None


def families(s: Sample) -> list[Metric]:
    """The metric families of one sample (pure)."""
    out: list[Metric] = []
    g = GaugeMetricFamily(
        "noderuntime_workloads", "Workloads on this node by phase", labels=["phase"]
    )
    for phase, n in sorted(s.phases.items()):
        g.add_metric([phase], n)
    out.append(g)
    c = CounterMetricFamily(
        "noderuntime_workload_restarts", "Restarts made by noderuntime", labels=["workload"]
    )
    for name, n in sorted(s.restarts.items()):
        c.add_metric([name], n)
    out.append(c)
    c = CounterMetricFamily(
        "noderuntime_probe_results",
        "Health probe results since the node started",
        labels=["workload", "result"],
    )
    for (name, ok), n in sorted(s.probes.items()):
        c.add_metric([name, "success" if ok else "failure"], n)
    out.append(c)
    out.append(
        GaugeMetricFamily(
            "noderuntime_store_size_bytes", "State database size", value=s.store_size_bytes
        )
    )
    out.append(
        CounterMetricFamily(
            "noderuntime_store_commits", "Durable commits (group-committed)", value=s.store_commits
        )
    )
    out.append(
        CounterMetricFamily(
            "noderuntime_store_commit_seconds",
            "Seconds spent in commits, fsync included (latency = this / commits)",
            value=s.store_commit_seconds,
        )
    )
    if s.sync_counters is not None:
        for name, n in sorted(s.sync_counters.items()):
            out.append(
                CounterMetricFamily(f"noderuntime_sync_{name}", f"Sync counter {name}", value=n)
            )
        c = CounterMetricFamily(
            "noderuntime_sync_rejections", "Messages refused, by reason", labels=["reason"]
        )
        for reason, n in sorted(s.sync_rejections.items()):
            c.add_metric([reason], n)
        out.append(c)
        out.append(
            GaugeMetricFamily(
                "noderuntime_peers_up",
                "Peers heard within their heartbeat timeout",
                value=s.peers_up,
            )
        )
    if s.fleet_sites is not None:
        out.extend(_fleet_families(s.fleet_sites, s.rollouts or {}))
    return out


def _fleet_families(
    sites: Sequence[Mapping[str, Any]], rollouts: Mapping[str, Mapping[str, Any]]
) -> Iterable[Metric]:
    up = GaugeMetricFamily("noderuntime_fleet_nodes_up", "Nodes up, by site", labels=["site"])
    total = GaugeMetricFamily("noderuntime_fleet_nodes", "Nodes known, by site", labels=["site"])
    wl = GaugeMetricFamily(
        "noderuntime_fleet_workloads", "Workloads by site and phase", labels=["site", "phase"]
    )
    for s in sites:
        site = str(s.get("site") or "")
        up.add_metric([site], int(s["nodes_up"]))
        total.add_metric([site], int(s["nodes_total"]))
        for phase, n in sorted(dict(s.get("workloads") or {}).items()):
            wl.add_metric([site, str(phase)], int(n))
    ro = GaugeMetricFamily(
        "noderuntime_fleet_rollout",
        "Rollouts not yet ended: 1 per workload in its state; wave is the highest released",
        labels=["workload", "state", "wave"],
    )
    for name, r in sorted(rollouts.items()):
        ro.add_metric([name, str(r.get("state")), str(r.get("wave"))], 1)
    return [up, total, wl, ro]


class _SampleCollector:
    """Hands prometheus-client the families of the sample taken for the current scrape."""

    def __init__(self) -> None:
        self.sample: Sample | None = None

    def collect(self) -> Iterable[Metric]:
        return families(self.sample) if self.sample is not None else []


class MetricsServer:
    """``async with MetricsServer(address, gather)``: serves /metrics until the block ends.

    ``gather`` takes the sample at each scrape. Scrapes are served one at a time (a lock):
    a scrape is cheap, and a flood of them must not multiply the work.
    """

    def __init__(
        self, address: str, gather: Callable[[], Awaitable[Sample]], *, log: logging.Logger
    ) -> None:
        self.host, self.port = split_host_port(address)
        self._gather = gather
        self._log = log
        self._registry = CollectorRegistry(auto_describe=False)
        self._collector = _SampleCollector()
        self._registry.register(self._collector)
        self.pass_seconds = Histogram(
            "noderuntime_reconcile_pass_seconds",
            "Duration of reconcile passes",
            buckets=PASS_BUCKETS_S,
            registry=self._registry,
        )
        self._server: asyncio.Server | None = None
        self._lock = asyncio.Lock()

    async def __aenter__(self) -> MetricsServer:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        sock = self._server.sockets[0].getsockname()
        self.port = int(sock[1])
        self._log.info("metrics on http://%s:%d/metrics", self.host, self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    async def render(self) -> bytes:
        async with self._lock:
            self._collector.sample = await self._gather()
            try:
                return generate_latest(self._registry)
            finally:
                self._collector.sample = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                head = await reader.readuntil(b"\r\n\r\n")
            if len(head) > MAX_REQUEST_HEAD_BYTES:
                raise ValueError("request head too large")
            method, _, rest = head.partition(b" ")
            path = rest.partition(b" ")[0].partition(b"?")[0]
            if method != b"GET":
                status, body, ctype = "405 Method Not Allowed", b"GET only\n", "text/plain"
            elif path != b"/metrics":
                status, body, ctype = "404 Not Found", b"see /metrics\n", "text/plain"
            else:
                status, body, ctype = "200 OK", await self.render(), CONTENT_TYPE
            writer.write(
                f"HTTP/1.0 {status}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (
            TimeoutError,
            ValueError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            ConnectionError,
        ):
            pass
        except Exception:
            self._log.exception("metrics scrape failed")
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
