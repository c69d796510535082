"""An in-memory :class:`~noderuntime.runtime.base.ContainerRuntime`, with failures on demand.

A test seam that ships with the package, as httpx ships ``MockTransport``: it implements the
real interface and keeps its lifecycle contracts (names are unique, starting a running
container is a no-op, removing a missing one too, list returns only this node's labelled
containers), so code above the runtime can be tested in milliseconds and benchmarked without
Podman. It is not imported by the daemon.

What can be made to go wrong, each the way Podman shows it:

- ``fail_create`` / ``fail_start``: the next call(s), or every call, raise a given error. A
  failed start leaves the container ``created``, as Podman 4.3 does after an OCI runtime error.
- ``die``: a running container exits with a code (``finished_at`` = the clock's now).
- ``go_down`` / ``come_back``: every call raises RuntimeUnavailableError; event streams end.
- ``lose_events``: events are dropped without a word (a stream that silently missed them).
- images: missing (``remove_image``), pullable from the fake registry (``registry``), pulls
  held in progress until ``release_pull``, pulls that fail (``fail_pull``).
- ``reboot``: every container stops as a host reboot stops it (finished before ``boot_time``).

Times come from an injected clock (``ManualClock`` in tests), never from sleeping.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field

from noderuntime.errors import (
    ContainerError,
    ImageNotFoundError,
    RuntimeUnavailableError,
)
from noderuntime.runtime.base import (
    LABEL_MANAGED,
    LABEL_NODE,
    LABEL_SPEC_HASH,
    LABEL_WORKLOAD,
    ContainerEvent,
    ContainerSpec,
    ContainerState,
    ExecResult,
    ImageInfo,
    ObservedContainer,
    RuntimeInfo,
)

# What Podman 4.3 with runc said when the host had no usable cgroup mount (issue 9, §3).
OCI_CREATE_FAILED = (
    "OCI runtime error: runc: runc create failed: unable to start container process: "
    "no cgroup mount found in mountinfo"
)
# Exit code of a container stopped with SIGTERM (128 + 15).
SIGTERM_EXIT_CODE = 143


class ManualClock:
    """A clock that moves only when told to: back-offs are tested by advancing it."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


@dataclass
class FakeContainer:
    """One container held by the fake; mutable, unlike what ``list_containers`` hands out."""

    id: str
    spec: ContainerSpec
    state: ContainerState = ContainerState.CREATED
    exit_code: int | None = None
    started_at: float | None = None
    finished_at: float | None = None
    logs: list[str] = field(default_factory=list)

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.spec.labels)

    def observed(self) -> ObservedContainer:
        labels = self.labels
        return ObservedContainer(
            id=self.id,
            name=self.spec.name,
            workload=labels.get(LABEL_WORKLOAD, ""),
            spec_hash=labels.get(LABEL_SPEC_HASH, ""),
            state=self.state,
            image=self.spec.image,
            exit_code=self.exit_code,
            started_at=self.started_at,
            finished_at=self.finished_at,
            ip_address="10.88.0.2" if self.state is ContainerState.RUNNING else None,
            labels=labels,
            ports=self.spec.ports,
        )


@dataclass
class _Failure:
    """An injected failure: raised ``times`` more times (None: always) for matching names."""

    error: BaseException
    times: int | None
    name: str | None  # container name; None: any

    def take(self, name: str) -> BaseException | None:
        if self.name is not None and self.name != name:
            return None
        if self.times is not None:
            if self.times <= 0:
                return None
            self.times -= 1
        return self.error


class FakeRuntime:
    """In-memory ContainerRuntime. ``calls`` records (method, argument) for every call made."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        images: Iterable[str] = (),
        registry: Iterable[str] = (),
    ) -> None:
        self.clock = clock
        self.containers: dict[str, FakeContainer] = {}
        self.images: set[str] = set(images)
        # Images a pull can fetch; pulling anything else fails as "not found".
        self.registry: set[str] = set(registry)
        self.reachable = True
        self.events_lost = False
        self.calls: list[tuple[str, str]] = []
        self._ids = itertools.count(1)
        self._create_failures: list[_Failure] = []
        self._start_failures: list[_Failure] = []
        self._pull_failures: dict[str, BaseException] = {}
        self._held_pulls: dict[str, asyncio.Event] = {}
        self._subscribers: list[asyncio.Queue[ContainerEvent | None]] = []

    # --- failures and happenings, for tests ----------------------------------------------------

    def fail_create(
        self,
        error: BaseException | None = None,
        *,
        times: int | None = 1,
        name: str | None = None,
    ) -> None:
        """The next ``times`` creates (None: every one) of ``name`` (None: any) raise ``error``."""
        err = error if error is not None else ContainerError(OCI_CREATE_FAILED)
        self._create_failures.append(_Failure(err, times, name))

    def fail_start(
        self,
        error: BaseException | None = None,
        *,
        times: int | None = 1,
        name: str | None = None,
    ) -> None:
        """Starts fail like an OCI runtime error: the container stays ``created``."""
        err = error if error is not None else ContainerError(OCI_CREATE_FAILED)
        self._start_failures.append(_Failure(err, times, name))

    def heal(self) -> None:
        """Forget every injected create, start and pull failure."""
        self._create_failures.clear()
        self._start_failures.clear()
        self._pull_failures.clear()

    def die(self, workload: str, exit_code: int = 1) -> str:
        """The workload's running container exits with ``exit_code``; returns its id."""
        c = self.running(workload)
        c.state = ContainerState.EXITED
        c.exit_code = exit_code
        c.finished_at = self.clock()
        self._emit(c, "died")
        return c.id

    def reboot(self, boot_time: float) -> None:
        """The host went down at ``boot_time`` - 1: every running container ended with it."""
        for c in self.containers.values():
            if c.state is ContainerState.RUNNING:
                c.state = ContainerState.EXITED
                c.exit_code = SIGTERM_EXIT_CODE
                c.finished_at = boot_time - 1

    def go_down(self) -> None:
        """Podman becomes unreachable: every call fails, event streams end."""
        self.reachable = False
        for q in self._subscribers:
            q.put_nowait(None)

    def come_back(self) -> None:
        self.reachable = True

    def lose_events(self, lost: bool = True) -> None:
        self.events_lost = lost

    def hold_pull(self, image: str) -> None:
        """Pulls of ``image`` stay in progress until :meth:`release_pull`."""
        self._held_pulls.setdefault(image, asyncio.Event())

    def release_pull(self, image: str) -> None:
        event = self._held_pulls.pop(image, None)
        if event is not None:
            event.set()

    def fail_pull(self, image: str, error: BaseException | None = None) -> None:
        self._pull_failures[image] = error or ImageNotFoundError(
            f"could not pull image {image}: manifest unknown"
        )

    def remove_image(self, image: str) -> None:
        self.images.discard(image)

    def add_container(
        self,
        spec: ContainerSpec,
        *,
        state: ContainerState = ContainerState.RUNNING,
        started_at: float | None = None,
        finished_at: float | None = None,
        exit_code: int | None = None,
    ) -> str:
        """A container that was there before (e.g. made by a previous run of the node)."""
        cid = self._new_id()
        self.containers[cid] = FakeContainer(
            cid,
            spec,
            state=state,
            started_at=started_at if started_at is not None else self.clock(),
            finished_at=finished_at,
            exit_code=exit_code,
        )
        self.images.add(spec.image)
        return cid

    # --- queries, for tests --------------------------------------------------------------------

    def of(self, workload: str) -> list[FakeContainer]:
        return [c for c in self.containers.values() if c.labels.get(LABEL_WORKLOAD) == workload]

    def running(self, workload: str) -> FakeContainer:
        (c,) = [c for c in self.of(workload) if c.state is ContainerState.RUNNING]
        return c

    def count(self, method: str) -> int:
        return sum(1 for m, _ in self.calls if m == method)

    # --- ContainerRuntime ----------------------------------------------------------------------

    async def info(self) -> RuntimeInfo:
        self._call("info", "")
        return RuntimeInfo("4.3.1-fake", "4.3.1", "runc", "v2", "fake")

    async def list_containers(self, node_id: str) -> list[ObservedContainer]:
        self._call("list_containers", node_id)
        return [
            c.observed()
            for c in self.containers.values()
            if c.labels.get(LABEL_MANAGED) == "true" and c.labels.get(LABEL_NODE) == node_id
        ]

    async def image_present(self, image: str) -> bool:
        self._call("image_present", image)
        return image in self.images

    async def pull_image(self, image: str, *, stall_timeout_s: float | None = None) -> None:
        self._call("pull_image", image)
        held = self._held_pulls.get(image)
        if held is not None:
            await held.wait()
        self._check_reachable()
        if image in self._pull_failures:
            raise self._pull_failures[image]
        if image not in self.registry:
            raise ImageNotFoundError(f"could not pull image {image}: not found in any registry")
        self.images.add(image)

    async def list_images(self) -> list[ImageInfo]:
        self._call("list_images", "")
        return [ImageInfo(id=f"sha256:{i}", names=(i,), size_bytes=0) for i in sorted(self.images)]

    async def load_image(self, chunks: AsyncIterator[bytes], size_bytes: int) -> list[str]:
        """Loads the archive's text as one image name per line (tests write such files)."""
        self._call("load_image", str(size_bytes))
        self._check_reachable()
        data = b"".join([c async for c in chunks])
        names = [n for n in data.decode("utf-8", "replace").split() if n]
        self.images.update(names)
        return names

    async def create(self, spec: ContainerSpec) -> str:
        self._call("create", spec.name)
        for failure in self._create_failures:
            if (err := failure.take(spec.name)) is not None:
                raise err
        if spec.image not in self.images:
            raise ImageNotFoundError(f"image {spec.image} not known")
        if any(c.spec.name == spec.name for c in self.containers.values()):
            raise ContainerError(f"container name {spec.name} is already in use")
        cid = self._new_id()
        self.containers[cid] = FakeContainer(cid, spec)
        return cid

    async def start(self, container_id: str) -> None:
        self._call("start", container_id)
        c = self._get(container_id)
        if c.state is ContainerState.RUNNING:
            return
        for failure in self._start_failures:
            if (err := failure.take(c.spec.name)) is not None:
                raise err
        c.state = ContainerState.RUNNING
        c.started_at = self.clock()
        c.exit_code = None
        self._emit(c, "start")

    async def stop(self, container_id: str, timeout_s: int) -> None:
        self._call("stop", container_id)
        c = self.containers.get(container_id)
        if c is None or c.state is not ContainerState.RUNNING:
            return
        c.state = ContainerState.EXITED
        c.exit_code = SIGTERM_EXIT_CODE
        c.finished_at = self.clock()
        self._emit(c, "died")

    async def remove(self, container_id: str) -> None:
        self._call("remove", container_id)
        c = self.containers.pop(container_id, None)
        if c is not None:
            self._emit(c, "remove")

    async def exec(self, container_id: str, command: list[str], timeout_s: float) -> ExecResult:
        self._call("exec", container_id)
        c = self._get(container_id)
        if c.state is not ContainerState.RUNNING:
            raise ContainerError(f"container {container_id} is not running")
        return ExecResult(0, "")

    async def events(self, node_id: str) -> AsyncIterator[ContainerEvent]:
        self._call("events", node_id)
        queue: asyncio.Queue[ContainerEvent | None] = asyncio.Queue()
        self._subscribers.append(queue)
        try:
            while True:
                event = await queue.get()
                if event is None:
                    raise RuntimeUnavailableError("fake runtime: the event stream ended")
                yield event
        finally:
            self._subscribers.remove(queue)

    async def logs(
        self, container_id: str, *, follow: bool, tail: int | None, timestamps: bool = False
    ) -> AsyncIterator[str]:
        self._call("logs", container_id)
        c = self._get(container_id)
        lines = c.logs
        # The fake keeps no time per line: every line carries the container's start.
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ ", time.gmtime(c.started_at or 0))
        for line in lines[-tail:] if tail else lines:
            yield stamp + line if timestamps else line

    # --- internals -------------------------------------------------------------------------------

    def _call(self, method: str, arg: str) -> None:
        self.calls.append((method, arg))
        self._check_reachable()

    def _check_reachable(self) -> None:
        if not self.reachable:
            raise RuntimeUnavailableError("fake runtime: cannot connect to Podman")

    def _new_id(self) -> str:
        return f"{next(self._ids):064x}"

    def _get(self, container_id: str) -> FakeContainer:
        c = self.containers.get(container_id)
        if c is None:
            raise ContainerError(f"no such container {container_id}")
        return c

    def _emit(self, c: FakeContainer, action: str) -> None:
        if self.events_lost:
            return
        event = ContainerEvent(c.id, c.labels.get(LABEL_WORKLOAD, ""), action)
        for q in self._subscribers:
            q.put_nowait(event)
