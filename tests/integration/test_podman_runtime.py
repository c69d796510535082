"""PodmanRuntime and PodmanService against a real Podman (no mocks)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from podman_helpers import (
    ensure_service,
    eventually,
    pid_alive,
    remove_node_containers,
    socket_accepts,
    spec,
    unique,
)

from noderuntime.errors import ContainerError, ImageNotFoundError, RuntimeUnavailableError
from noderuntime.runtime.base import (
    LABEL_MANAGED,
    ContainerEvent,
    ContainerState,
    ObservedContainer,
    PortMapping,
    VolumeMount,
)
from noderuntime.runtime.podman import PodmanRuntime
from noderuntime.runtime.service import PodmanService
from tests.ports import free_port

pytestmark = pytest.mark.podman

LOG = logging.getLogger("test-podman")


@pytest.fixture
def socket_path(podman_service_socket: Path) -> Iterator[str]:
    started = ensure_service(podman_service_socket)
    yield str(podman_service_socket)
    if started is not None:
        started.terminate()
        started.wait(10)


@pytest.fixture
async def runtime(socket_path: str) -> AsyncIterator[PodmanRuntime]:
    rt = PodmanRuntime(socket_path)
    yield rt
    await rt.close()


@pytest.fixture
def node_id() -> Iterator[str]:
    nid = unique("node")
    yield nid
    remove_node_containers(nid)


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    # Unix socket paths are limited to 107 bytes: not under pytest's tmp_path.
    path = Path(tempfile.mkdtemp(prefix="nrt-", dir="/tmp"))
    yield path
    subprocess.run(["rm", "-rf", str(path)], check=False)


async def observed(rt: PodmanRuntime, node_id: str, cid: str) -> ObservedContainer | None:
    return next((c for c in await rt.list_containers(node_id) if c.id == cid), None)


async def wait_state(
    rt: PodmanRuntime, node_id: str, cid: str, state: ContainerState
) -> ObservedContainer:
    async def probe() -> ObservedContainer | None:
        c = await observed(rt, node_id, cid)
        return c if c is not None and c.state is state else None

    return await eventually(probe, what=f"{cid[:12]} {state.value}")


# --- runtime --------------------------------------------------------------------------------


async def test_info_reports_engine_facts(runtime: PodmanRuntime) -> None:
    info = await runtime.info()
    assert info.version and info.api_version and info.oci_runtime and info.host
    assert info.cgroup_version in ("v1", "v2")


async def test_container_lifecycle_with_labels_env_ports_and_mounts(
    runtime: PodmanRuntime, node_id: str, busybox_image: str, short_tmp: Path
) -> None:
    (short_tmp / "hello").write_text("from the host\n")
    host_port = free_port()
    volume = unique("vol")
    s = spec(
        node_id,
        "web",
        busybox_image,
        "sh",
        "-c",
        "mkdir -p /www && echo ok > /www/index.html && httpd -p 8080 -h /www && exec sleep 3600",
        env=(("GREETING", "hi there"),),
        ports=(PortMapping(8080, host_port),),
        volumes=(
            VolumeMount("/data", volume),
            VolumeMount("/host", str(short_tmp), kind="bind", read_only=True),
        ),
        labels=(("team", "edge"),),
        cpus=0.5,
        memory_bytes=64 * 1024 * 1024,
        working_dir="/data",
    )
    try:
        cid = await runtime.create(s)
        created = await observed(runtime, node_id, cid)
        assert created is not None and created.state is ContainerState.CREATED
        assert created.exit_code is None and created.started_at is None

        await runtime.start(cid)
        await runtime.start(cid)  # starting a running container is a no-op
        c = await wait_state(runtime, node_id, cid, ContainerState.RUNNING)
        assert (c.name, c.workload, c.spec_hash) == (s.name, "web", "h-web")
        assert c.labels["team"] == "edge" and c.labels[LABEL_MANAGED] == "true"
        assert c.image.endswith(busybox_image.split("/")[-1])
        assert c.started_at is not None and c.finished_at is None and c.exit_code is None
        assert c.ip_address
        assert PortMapping(8080, host_port, "tcp", "") in c.ports

        env = await runtime.exec(cid, ["sh", "-c", 'echo "$GREETING in $(pwd)"'], 10)
        assert (env.exit_code, env.output.strip()) == (0, "hi there in /data")
        mounted = await runtime.exec(cid, ["cat", "/host/hello"], 10)
        assert mounted.output.strip() == "from the host"
        read_only = await runtime.exec(cid, ["touch", "/host/nope"], 10)
        assert read_only.exit_code != 0
        writable = await runtime.exec(cid, ["touch", "/data/yes"], 10)
        assert writable.exit_code == 0

        await runtime.stop(cid, 1)
        await runtime.stop(cid, 1)  # stopping a stopped container is a no-op
        stopped = await wait_state(runtime, node_id, cid, ContainerState.EXITED)
        assert stopped.finished_at is not None and stopped.exit_code is not None

        await runtime.remove(cid)
        await runtime.remove(cid)  # removing a missing container is a no-op
        await runtime.stop(cid, 1)
        assert await observed(runtime, node_id, cid) is None
    finally:
        remove_node_containers(node_id)
        await asyncio.to_thread(
            subprocess.run, ["podman", "volume", "rm", "-f", volume], capture_output=True
        )


async def test_command_replaces_entrypoint_and_args_replace_cmd(
    runtime: PodmanRuntime, node_id: str, busybox_image: str
) -> None:
    cid = await runtime.create(spec(node_id, "echo", busybox_image, "echo", args=("one", "two")))
    await runtime.start(cid)
    await wait_state(runtime, node_id, cid, ContainerState.EXITED)
    assert [line async for line in runtime.logs(cid, follow=False, tail=None)] == ["one two"]


async def test_other_nodes_and_unmanaged_containers_are_invisible(
    runtime: PodmanRuntime, node_id: str, busybox_image: str
) -> None:
    other = unique("node")
    try:
        mine = await runtime.create(spec(node_id, "a", busybox_image, "sleep", "60"))
        await runtime.create(spec(other, "a", busybox_image, "sleep", "60"))
        await runtime.create(
            spec(node_id, "b", busybox_image, "sleep", "60", labels=((LABEL_MANAGED, "false"),))
        )
        assert [c.id for c in await runtime.list_containers(node_id)] == [mine]
        assert [c.workload for c in await runtime.list_containers(other)] == ["a"]
    finally:
        remove_node_containers(other)


async def test_exit_code_of_a_failing_container(
    runtime: PodmanRuntime, node_id: str, busybox_image: str
) -> None:
    cid = await runtime.create(spec(node_id, "fail", busybox_image, "sh", "-c", "exit 7"))
    await runtime.start(cid)
    c = await wait_state(runtime, node_id, cid, ContainerState.EXITED)
    assert c.exit_code == 7
    # No ordering check: for a container that exits at once Podman may record finish < start.
    assert c.started_at is not None and c.finished_at is not None


async def test_events_arrive_for_start_and_die_and_stop_on_cancel(
    runtime: PodmanRuntime, node_id: str, busybox_image: str
) -> None:
    seen: list[ContainerEvent] = []

    async def collect() -> None:
        async for event in runtime.events(node_id):
            seen.append(event)

    task = asyncio.create_task(collect())
    try:
        # The subscription must be live before the container starts: retry with new ones.
        async def started_and_died() -> bool:
            cid = await runtime.create(
                spec(node_id, unique("ev"), busybox_image, "sh", "-c", "sleep 0.3; exit 3")
            )
            await runtime.start(cid)
            for _ in range(50):
                actions = {e.action for e in seen if e.container_id == cid}
                if "start" in actions and actions & {"died", "die"}:
                    return True
                await asyncio.sleep(0.1)
            return False

        assert await eventually(started_and_died, what="start and died events")
        assert all(e.workload.startswith("nrtest-ev-") for e in seen)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)


async def test_logs_with_tail_and_follow_cancel_cleanly(
    runtime: PodmanRuntime, node_id: str, busybox_image: str
) -> None:
    script = "for i in 1 2 3 4 5; do echo line$i; done; echo oops >&2; exec sleep 3600"
    cid = await runtime.create(spec(node_id, "logs", busybox_image, "sh", "-c", script))
    await runtime.start(cid)

    async def all_lines() -> list[str] | None:
        lines = [line async for line in runtime.logs(cid, follow=False, tail=None)]
        return lines if len(lines) == 6 else None

    lines = await eventually(all_lines, what="six log lines")
    assert lines[:5] == [f"line{i}" for i in range(1, 6)] and "oops" in lines
    assert len([line async for line in runtime.logs(cid, follow=False, tail=2)]) == 2

    # Following a container that writes nothing: Podman sends no headers; cancel must not hang.
    follow = runtime.logs(cid, follow=True, tail=0)
    pending = asyncio.create_task(anext(follow))  # type: ignore[arg-type]
    await asyncio.sleep(0.3)
    pending.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(pending, 10)
    await asyncio.wait_for(follow.aclose(), 10)  # type: ignore[attr-defined]

    # Following a chatty one: lines arrive as they are written.
    ticker = await runtime.create(
        spec(
            node_id,
            "tick",
            busybox_image,
            "sh",
            "-c",
            "i=0; while true; do i=$((i+1)); echo t$i; sleep 0.1; done",
        )
    )
    await runtime.start(ticker)
    got: list[str] = []

    async def read() -> None:
        async for line in runtime.logs(ticker, follow=True, tail=None):
            got.append(line)

    reader = asyncio.create_task(read())
    await eventually(lambda: _ready(len(got) >= 5), what="five followed lines")
    reader.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(reader, 10)
    assert got[:3] == ["t1", "t2", "t3"]


async def _ready(value: bool) -> bool:
    return value


async def test_exec_exit_code_output_and_timeout(
    runtime: PodmanRuntime, node_id: str, busybox_image: str
) -> None:
    cid = await runtime.create(spec(node_id, "exec", busybox_image, "sleep", "3600"))
    await runtime.start(cid)
    await wait_state(runtime, node_id, cid, ContainerState.RUNNING)
    ok = await runtime.exec(cid, ["sh", "-c", "echo out; echo err >&2"], 10)
    assert ok.exit_code == 0 and "out" in ok.output and "err" in ok.output
    failed = await runtime.exec(cid, ["sh", "-c", "exit 5"], 10)
    assert failed.exit_code == 5
    slow = await runtime.exec(cid, ["sleep", "30"], 0.5)
    assert slow.exit_code != 0 and "timed out" in slow.output
    await runtime.stop(cid, 1)
    with pytest.raises(ContainerError, match=cid[:12]):
        await runtime.exec(cid, ["true"], 5)


async def test_missing_image_is_image_not_found(runtime: PodmanRuntime, node_id: str) -> None:
    image = f"localhost/{unique('missing')}:1"
    assert await runtime.image_present(image) is False
    with pytest.raises(ImageNotFoundError, match=image):
        await runtime.pull_image(image)
    with pytest.raises(ImageNotFoundError, match=image):
        await runtime.create(spec(node_id, "noimg", image, "true"))


async def test_refusals_are_container_errors(
    runtime: PodmanRuntime, node_id: str, busybox_image: str
) -> None:
    with pytest.raises(ContainerError, match="no-such-container"):
        await runtime.start("no-such-container")
    s = spec(node_id, "dup", busybox_image, "true")
    await runtime.create(s)
    with pytest.raises(ContainerError, match=r"already in use|exists"):
        await runtime.create(s)


async def test_unreachable_socket_is_runtime_unavailable(short_tmp: Path) -> None:
    path = str(short_tmp / "none.sock")
    rt = PodmanRuntime(path)
    try:
        for call in (rt.info(), rt.list_containers("x"), rt.start("abc"), rt.image_present("i")):
            with pytest.raises(RuntimeUnavailableError, match=path):
                await call
        with pytest.raises(RuntimeUnavailableError, match=path):
            async for _ in rt.events("x"):
                pass
        with pytest.raises(RuntimeUnavailableError, match=path):
            async for _ in rt.logs("abc", follow=True, tail=None):
                pass
    finally:
        await rt.close()


# --- supervised service -----------------------------------------------------------------------


async def test_service_starts_restarts_its_child_and_cleans_up(short_tmp: Path) -> None:
    sock = short_tmp / "podman.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(sock))  # a socket file nobody listens on, as a crash leaves behind
    stale.close()
    async with PodmanService(str(sock), log=LOG) as svc:
        assert svc.healthy and svc.restarts == 0 and svc.pid is not None
        first = svc.pid
        rt = PodmanRuntime(str(sock))
        try:
            await rt.info()
            events = rt.events(unique("node"))
            pending = asyncio.create_task(anext(events))  # type: ignore[arg-type]
            await asyncio.sleep(0.5)  # let the event subscription reach the service

            os.kill(first, signal.SIGKILL)
            # The event stream ends with the service: consumers learn to reconnect.
            with pytest.raises(RuntimeUnavailableError, match=str(sock)):
                await asyncio.wait_for(pending, 30)

            async def restarted() -> bool:
                return svc.restarts >= 1 and svc.healthy and svc.pid != first

            await eventually(restarted, what="service restarted")
            assert svc.last_error and "exited" in svc.last_error
            await eventually(lambda: _ready(pid_alive(first) is False), what="old child gone")
            assert (await rt.info()).version
        finally:
            await rt.close()
        child = svc.pid
    assert child is not None and not pid_alive(child)
    assert not sock.exists()


async def test_service_start_failures_are_reported_and_retried_not_raised(
    short_tmp: Path,
) -> None:
    # A node must keep serving when its Podman cannot start, so entering never raises.
    async with PodmanService(str(short_tmp / "a.sock"), podman_bin="no-such-podman", log=LOG) as s:
        assert not s.healthy and s.last_error and "no-such-podman" in s.last_error
    not_a_socket = short_tmp / "b.sock"
    not_a_socket.write_text("data")
    async with PodmanService(str(not_a_socket), log=LOG) as s:
        assert not s.healthy and s.last_error and "not a socket" in s.last_error
    assert not_a_socket.read_text() == "data"
    failing = short_tmp / "fail.sh"
    failing.write_text("#!/bin/sh\necho 'podman: cannot do it' >&2\nexit 3\n")
    failing.chmod(0o755)
    async with PodmanService(str(short_tmp / "c.sock"), podman_bin=str(failing), log=LOG) as s:
        assert not s.healthy and s.last_error
        assert "exited with code 3" in s.last_error and "cannot do it" in s.last_error
        first = s.restarts

        async def retried() -> bool:
            return s.restarts > first

        await eventually(retried, what="start retried in the background")
        assert not s.healthy


CHILD_SCRIPT = """
import asyncio, logging, sys
from noderuntime.runtime.service import PodmanService

async def main():
    async with PodmanService(sys.argv[1], log=logging.getLogger("child")) as svc:
        print(svc.pid, flush=True)
        await asyncio.Event().wait()

asyncio.run(main())
"""


def test_service_child_dies_when_the_node_is_killed_9(short_tmp: Path) -> None:
    sock = short_tmp / "podman.sock"
    node = subprocess.Popen(
        [sys.executable, "-c", CHILD_SCRIPT, str(sock)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    pid = None
    try:
        assert node.stdout is not None
        pid = int(node.stdout.readline())
        assert pid_alive(pid) and socket_accepts(sock)
        node.send_signal(signal.SIGKILL)
        node.wait(10)
        asyncio.run(eventually(lambda: _ready(not pid_alive(pid)), what="podman service gone"))
    finally:
        if node.poll() is None:
            node.kill()
        if pid is not None and pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
