"""The container runtime behind one interface.

The reconciler only ever talks to a :class:`ContainerRuntime`. The Podman adapter implements it
over the Podman REST API; tests may implement it in memory. Lifecycle contracts are written on
the methods so every implementation behaves the same.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol

# Labels every managed container carries. Persisted on containers: never rename.
LABEL_MANAGED = "io.noderuntime.managed"
LABEL_NODE = "io.noderuntime.node"
LABEL_WORKLOAD = "io.noderuntime.workload"
LABEL_SPEC_HASH = "io.noderuntime.spec-hash"


class ContainerState(enum.Enum):
    """Container states as Podman reports them (wire values: do not renumber)."""

    CREATED = "created"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPING = "stopping"
    EXITED = "exited"
    STOPPED = "stopped"
    DEAD = "dead"
    UNKNOWN = "unknown"

    @classmethod
    def parse(cls, value: str | None) -> ContainerState:
        try:
            return cls((value or "").lower())
        except ValueError:
            return cls.UNKNOWN


@dataclass(frozen=True)
class PortMapping:
    container_port: int
    host_port: int | None = None
    protocol: str = "tcp"  # "tcp" | "udp"
    host_ip: str = ""


@dataclass(frozen=True)
class VolumeMount:
    target: str  # path inside the container
    source: str  # named volume name, or absolute host path
    kind: str = "volume"  # "volume" | "bind"
    read_only: bool = False


@dataclass(frozen=True)
class ContainerSpec:
    """Everything the runtime needs to create one container; derived from a workload spec."""

    name: str
    image: str
    command: tuple[str, ...] = ()  # replaces the image entrypoint when non-empty
    args: tuple[str, ...] = ()  # replaces the image CMD when non-empty
    env: tuple[tuple[str, str], ...] = ()
    ports: tuple[PortMapping, ...] = ()
    volumes: tuple[VolumeMount, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    cpus: float | None = None
    memory_bytes: int | None = None
    working_dir: str | None = None
    user: str | None = None
    stop_timeout_s: int = 10
    # Privilege (fleet policy decides what a spec may ask for; this is what was allowed).
    privileged: bool = False
    host_network: bool = False
    host_pid: bool = False
    host_ipc: bool = False
    cap_add: tuple[str, ...] = ()  # capability names without CAP_, or ALL
    cap_drop: tuple[str, ...] = ()
    devices: tuple[str, ...] = ()  # "HOST:CONTAINER:PERMISSIONS"
    read_only_rootfs: bool = False
    no_new_privileges: bool = True


@dataclass(frozen=True)
class ObservedContainer:
    """One container as the runtime sees it right now. Times are Unix epoch seconds."""

    id: str
    name: str
    workload: str
    spec_hash: str
    state: ContainerState
    image: str = ""
    exit_code: int | None = None
    started_at: float | None = None
    finished_at: float | None = None
    ip_address: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    # Published ports: health probes fall back to 127.0.0.1:host_port when the IP is unusable.
    ports: tuple[PortMapping, ...] = ()


@dataclass(frozen=True)
class ImageInfo:
    """One image in the engine's store."""

    id: str
    names: tuple[str, ...]  # "localhost/busybox:1"; empty for an untagged image
    size_bytes: int
    created: float | None = None  # Unix epoch seconds


@dataclass(frozen=True)
class RuntimeInfo:
    version: str
    api_version: str
    oci_runtime: str
    cgroup_version: str
    host: str


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    output: str


@dataclass(frozen=True)
class ContainerEvent:
    """A hint that something changed; consumers re-read fresh state, never trust the payload."""

    container_id: str
    workload: str
    action: str


class ContainerRuntime(Protocol):
    """What the reconciler needs from a container engine.

    Every method raises :class:`~noderuntime.errors.RuntimeUnavailableError` when the engine
    cannot be reached, :class:`~noderuntime.errors.ImageNotFoundError` when an image is
    missing, and :class:`~noderuntime.errors.ContainerError` when the engine refuses.
    """

    async def info(self) -> RuntimeInfo:
        """Engine version and host facts. Cheap; used as a liveness check."""
        ...

    async def list_containers(self, node_id: str) -> list[ObservedContainer]:
        """Every container labelled as managed by ``node_id`` (running or not).

        Containers of other nodes on the same engine are never returned.
        """
        ...

    async def image_present(self, image: str) -> bool: ...

    async def pull_image(self, image: str, *, stall_timeout_s: float | None = None) -> None:
        """Pull ``image``; raises ImageNotFoundError if no registry has it.

        No overall timeout: a big image on a slow link takes what it takes. A pull that shows
        no progress for ``stall_timeout_s`` (None: no limit) raises ImageNotFoundError.
        Cancelling the caller ends the pull.
        """
        ...

    async def list_images(self) -> list[ImageInfo]:
        """Every image in the engine's store, tagged or not."""
        ...

    async def load_image(self, chunks: AsyncIterator[bytes], size_bytes: int) -> list[str]:
        """Load a docker or OCI image archive of ``size_bytes`` read from ``chunks``; returns
        the names it added. Raises ImageArchiveError if the engine cannot read the archive."""
        ...

    async def create(self, spec: ContainerSpec) -> str:
        """Create (not start) a container; returns its id. Fails if the name is taken."""
        ...

    async def start(self, container_id: str) -> None:
        """Start a created or exited container. Starting a running one is a no-op."""
        ...

    async def stop(self, container_id: str, timeout_s: int) -> None:
        """SIGTERM, then SIGKILL after ``timeout_s``. Stopping a stopped one is a no-op."""
        ...

    async def remove(self, container_id: str) -> None:
        """Force-remove (stopping it if needed). Removing a missing container is a no-op."""
        ...

    async def exec(self, container_id: str, command: list[str], timeout_s: float) -> ExecResult:
        """Run ``command`` in a running container; a timeout yields a non-zero exit code."""
        ...

    def events(self, node_id: str) -> AsyncIterator[ContainerEvent]:
        """Container events for ``node_id``'s containers until cancelled.

        Ends (raising RuntimeUnavailableError) if the engine goes away; callers reconnect.
        """
        ...

    def logs(
        self, container_id: str, *, follow: bool, tail: int | None, timestamps: bool = False
    ) -> AsyncIterator[str]:
        """Log lines (stdout and stderr interleaved, without trailing newline).

        ``timestamps``: each line starts with the time it was written, RFC 3339 and a space
        (as Podman writes it: local offset, nanoseconds)."""
        ...


class ProbeKind(enum.Enum):
    EXEC = "exec"
    HTTP = "http"
    TCP = "tcp"


@dataclass(frozen=True)
class ProbeSpec:
    """A health probe run by noderuntime itself (Podman 4.3's own needs systemd timers)."""

    kind: ProbeKind
    command: tuple[str, ...] = ()  # exec
    port: int | None = None  # http, tcp: port inside the container
    path: str = "/"  # http
    scheme: str = "http"  # http
    interval_s: float = 10.0
    timeout_s: float = 3.0
    retries: int = 3  # consecutive failures before the container counts as unhealthy
    start_period_s: float = 0.0  # failures in this window after start do not count
