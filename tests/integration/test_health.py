"""HealthMonitor running exec, http and tcp probes against real containers."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from podman_helpers import (
    ensure_service,
    eventually,
    remove_node_containers,
    spec,
    unique,
)

from noderuntime.runtime.base import (
    ContainerState,
    ObservedContainer,
    PortMapping,
    ProbeKind,
    ProbeSpec,
)
from noderuntime.runtime.health import HealthMonitor, probe_addresses
from noderuntime.runtime.podman import PodmanRuntime
from tests.ports import free_port

pytestmark = pytest.mark.podman

LOG = logging.getLogger("test-health")
PORT = 8080
SERVE = f"mkdir -p /www && echo ok > /www/index.html && httpd -p {PORT} -h /www && exec sleep 3600"
FAST = {"interval_s": 0.2, "timeout_s": 2.0, "retries": 2}
PROBES = {
    "exec": ProbeSpec(
        ProbeKind.EXEC,
        command=("wget", "-q", "-O", "/dev/null", f"http://127.0.0.1:{PORT}/"),
        **FAST,
    ),  # type: ignore[arg-type]
    "http": ProbeSpec(ProbeKind.HTTP, port=PORT, path="/index.html", **FAST),  # type: ignore[arg-type]
    "tcp": ProbeSpec(ProbeKind.TCP, port=PORT, **FAST),  # type: ignore[arg-type]
}
Target = tuple[str, ObservedContainer, ProbeSpec]


class Recorder:
    """Stands in for Reconciler.set_health: the health the workload has now, and its history."""

    def __init__(self) -> None:
        self.health: dict[str, str | None] = {}
        self.details: dict[str, str | None] = {}
        self.history: list[tuple[str, str | None]] = []

    def __call__(self, workload: str, health: str | None, detail: str | None = None) -> None:
        self.health[workload] = health
        self.details[workload] = detail
        self.history.append((workload, health))

    async def all_are(self, names: list[str], health: str) -> bool:
        return all(self.health.get(n) == health for n in names)


@pytest.fixture
async def runtime(podman_service_socket: Path) -> AsyncIterator[PodmanRuntime]:
    started = ensure_service(podman_service_socket)
    rt = PodmanRuntime(str(podman_service_socket))
    yield rt
    await rt.close()
    if started is not None:
        started.terminate()
        started.wait(10)


@pytest.fixture
def node_id() -> Iterator[str]:
    nid = unique("node")
    yield nid
    remove_node_containers(nid)


async def running(
    rt: PodmanRuntime, node_id: str, image: str, *, ports: tuple[PortMapping, ...] = ()
) -> ObservedContainer:
    cid = await rt.create(spec(node_id, "web", image, "sh", "-c", SERVE, ports=ports))
    await rt.start(cid)

    async def up() -> ObservedContainer | None:
        c = next((c for c in await rt.list_containers(node_id) if c.id == cid), None)
        return c if c is not None and c.state is ContainerState.RUNNING else None

    return await eventually(up, what="container running")


async def test_exec_http_tcp_probes_turn_healthy_then_unhealthy(
    runtime: PodmanRuntime, node_id: str, busybox_image: str
) -> None:
    container = await running(runtime, node_id, busybox_image)
    targets: list[Target] = [(name, container, probe) for name, probe in PROBES.items()]
    rec = Recorder()
    names = list(PROBES)
    async with HealthMonitor(
        runtime=runtime, targets=lambda: targets, on_change=rec, log=LOG
    ) as monitor:
        assert all(rec.history.count((n, "starting")) == 1 for n in names)
        await eventually(lambda: rec.all_are(names, "healthy"), what="all probes healthy")

        result = await runtime.exec(container.id, ["killall", "httpd"], 10)
        assert result.exit_code == 0, result.output
        await eventually(lambda: rec.all_are(names, "unhealthy"), what="all probes unhealthy")
        assert "exit code" in (rec.details["exec"] or "")
        assert "cannot connect" in (rec.details["tcp"] or "")

        # Probes keep running (no task died on a failure): bringing httpd back heals them.
        await runtime.exec(container.id, ["httpd", "-p", str(PORT), "-h", "/www"], 10)
        await eventually(lambda: rec.all_are(names, "healthy"), what="healthy again")
        assert len(monitor.watching) == 3


async def test_http_falls_back_to_the_published_port(
    runtime: PodmanRuntime, node_id: str, busybox_image: str
) -> None:
    host_port = free_port()
    container = await running(
        runtime, node_id, busybox_image, ports=(PortMapping(PORT, host_port),)
    )
    # As if the container's own IP were unusable (e.g. not routable from the host).
    hidden = dataclasses.replace(container, ip_address=None)
    assert probe_addresses(hidden, PORT) == [("127.0.0.1", host_port)]
    rec = Recorder()
    targets: list[Target] = [("http", hidden, PROBES["http"])]
    async with HealthMonitor(runtime=runtime, targets=lambda: targets, on_change=rec, log=LOG):
        await eventually(lambda: rec.all_are(["http"], "healthy"), what="healthy via host port")


async def test_targets_that_go_away_or_change_are_cancelled(
    runtime: PodmanRuntime, node_id: str, busybox_image: str
) -> None:
    container = await running(runtime, node_id, busybox_image)
    slow = dataclasses.replace(PROBES["tcp"], start_period_s=3600.0)
    targets: list[Target] = [("tcp", container, PROBES["tcp"]), ("slow", container, slow)]
    rec = Recorder()
    async with HealthMonitor(
        runtime=runtime, targets=lambda: targets, on_change=rec, log=LOG
    ) as monitor:
        await eventually(lambda: rec.all_are(["tcp"], "healthy"), what="healthy")
        # The start period holds back the first probe.
        assert rec.health["slow"] == "starting"
        old = set(monitor.watching)

        # Same workload, restarted container (new start time): a fresh task, starting over.
        restarted = dataclasses.replace(container, started_at=(container.started_at or 0) + 1)
        targets[:] = [("tcp", restarted, PROBES["tcp"])]
        monitor.refresh()
        assert len(monitor.watching) == 1 and not set(monitor.watching) & old
        assert rec.history.count(("tcp", "starting")) == 2
        await eventually(lambda: rec.all_are(["tcp"], "healthy"), what="healthy again")

        targets.clear()
        monitor.refresh()
        assert monitor.watching == []
        assert rec.health == {"tcp": None, "slow": None}  # no verdict without a probe
    await asyncio.sleep(0)


async def test_probe_errors_never_escape(runtime: PodmanRuntime, node_id: str) -> None:
    # A container that does not exist: exec raises ContainerError, connects fail.
    ghost = ObservedContainer(
        id="0" * 64, name="ghost", workload="ghost", spec_hash="", state=ContainerState.RUNNING
    )
    ghost = dataclasses.replace(ghost, ip_address="127.0.0.1")
    one_try = {"interval_s": 0.1, "timeout_s": 1.0, "retries": 1}
    targets: list[Target] = [
        ("exec", ghost, ProbeSpec(ProbeKind.EXEC, command=("true",), **one_try)),  # type: ignore[arg-type]
        ("http", ghost, ProbeSpec(ProbeKind.HTTP, port=1, **one_try)),  # type: ignore[arg-type]
    ]
    rec = Recorder()
    async with HealthMonitor(
        runtime=runtime, targets=lambda: targets, on_change=rec, log=LOG
    ) as monitor:
        await eventually(lambda: rec.all_are(["exec", "http"], "unhealthy"), what="unhealthy")
        assert "0" * 12 in (rec.details["exec"] or "")  # the error names the container
        await asyncio.sleep(0.5)
        assert len(monitor.watching) == 2
        assert all(not t.done() for t in monitor._tasks.values())
