"""The :class:`ContainerRuntime` over Podman's REST API (the PyPI ``podman`` package).

The package is synchronous (requests): every call runs in a small pool of our own, so a hung
Podman can block at most that pool, never the event loop's default executor. Streams (events,
logs) run in their own threads (:mod:`noderuntime.runtime.threadstream`) so they can be
interrupted. Foreign errors are translated here, at the boundary, into noderuntime's tree.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import http.client
import json
import re
import struct
import types
import urllib.parse
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, TypeVar

import podman
import requests
from podman import errors as podman_errors

from noderuntime.errors import (
    ContainerError,
    ImageNotFoundError,
    NodeRuntimeError,
    RuntimeUnavailableError,
)
from noderuntime.runtime import threadstream
from noderuntime.runtime.base import (
    LABEL_MANAGED,
    LABEL_NODE,
    LABEL_SPEC_HASH,
    LABEL_WORKLOAD,
    ContainerEvent,
    ContainerSpec,
    ContainerState,
    ExecResult,
    ObservedContainer,
    PortMapping,
    RuntimeInfo,
)

T = TypeVar("T")

POOL_THREADS = 6
# Health probes exec often and may hang until their timeout: they get threads of their own.
EXEC_POOL_THREADS = 4
REQUEST_TIMEOUT_S = 60.0
# Extra time a stop may take on top of the container's own stop timeout before we call Podman hung.
STOP_GRACE_S = 30.0
PULL_TIMEOUT_S = 900.0
CPU_PERIOD_US = 100_000
EXEC_TIMEOUT_EXIT_CODE = 124  # what coreutils `timeout` returns; people recognise it
EXEC_OUTPUT_MAX_CHARS = 64 * 1024
_FRAME_HEADER = struct.Struct(">BxxxL")
_FRACTION = re.compile(r"\.(\d+)")
# Exec sessions (health probes!) and attaches change nothing the reconciler looks at.
_IGNORED_EVENT_PREFIXES = ("exec", "attach", "health_status")
_UNREACHABLE_HINT = "is `podman system service` running?"


class PodmanRuntime:
    """Podman behind the ContainerRuntime protocol. Constructing it connects to nothing."""

    def __init__(self, socket_path: str, *, pool_threads: int = POOL_THREADS) -> None:
        self.socket_path = socket_path
        self._client = podman.PodmanClient(
            base_url="unix://" + socket_path, timeout=REQUEST_TIMEOUT_S
        )
        self._pool = ThreadPoolExecutor(pool_threads, thread_name_prefix="podman")
        self._exec_pool = ThreadPoolExecutor(EXEC_POOL_THREADS, thread_name_prefix="podman-exec")

    async def close(self) -> None:
        for pool in (self._pool, self._exec_pool):
            pool.shutdown(wait=False, cancel_futures=True)
        self._client.close()  # type: ignore[no-untyped-call]  # podman-py leaves it untyped

    # --- plumbing ----------------------------------------------------------------------------

    async def _call(
        self,
        what: str,
        fn: Callable[[], T],
        *,
        container: str = "",
        image: str = "",
        pool: ThreadPoolExecutor | None = None,
    ) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(pool or self._pool, fn)
        except NodeRuntimeError:
            raise
        except (podman_errors.PodmanError, requests.RequestException, OSError) as exc:
            raise self._translate(exc, what, container=container, image=image) from exc

    def _translate(
        self, exc: BaseException, what: str, *, container: str = "", image: str = ""
    ) -> NodeRuntimeError:
        if _is_unreachable(exc):
            return RuntimeUnavailableError(
                f"Podman at {self.socket_path} is unreachable ({what}): {_root_message(exc)}; "
                + _UNREACHABLE_HINT
            )
        detail = _explain(exc)
        if image and (isinstance(exc, podman_errors.ImageNotFound) or _says_no_image(detail)):
            return ImageNotFoundError(f"image {image} not found on {self.socket_path}: {detail}")
        subject = f" container {container[:12]}" if container else ""
        return ContainerError(f"Podman refused to {what}{subject}: {detail}")

    def _container(self, container_id: str) -> Any:
        # A model without the inspect round-trip `containers.get` would make.
        return self._client.containers.prepare_model({"Id": container_id})

    # --- facts -------------------------------------------------------------------------------

    async def info(self) -> RuntimeInfo:
        data = await self._call("read engine info", self._client.info)
        return parse_info(data)

    async def list_containers(self, node_id: str) -> list[ObservedContainer]:
        return await self._call("list containers", functools.partial(self._list, node_id))

    def _list(self, node_id: str) -> list[ObservedContainer]:
        wanted = {LABEL_NODE: node_id, LABEL_MANAGED: "true"}
        # podman-py mangles a dict of lists; its "key=value" list form builds the right JSON.
        filters = [f"label={k}={v}" for k, v in wanted.items()]
        out = []
        for summary in self._client.containers.list(all=True, filters=filters):
            labels = summary.attrs.get("Labels") or {}
            if any(labels.get(k) != v for k, v in wanted.items()):
                continue  # belt and braces: label filters have had OR semantics in some versions
            resp = self._client.api.get(f"/containers/{summary.id}/json")
            if resp.status_code == 404:
                continue  # removed between list and inspect
            resp.raise_for_status()
            out.append(parse_inspect(resp.json()))
        return out

    async def image_present(self, image: str) -> bool:
        return await self._call(
            "check for image", functools.partial(self._client.images.exists, image), image=image
        )

    async def pull_image(self, image: str) -> None:
        await self._call("pull image", functools.partial(self._pull, image), image=image)

    def _pull(self, image: str) -> None:
        try:
            resp = self._client.api.post(
                "/images/pull", params={"reference": image}, timeout=PULL_TIMEOUT_S
            )
            resp.raise_for_status()
        except podman_errors.APIError as exc:
            if _is_unreachable(exc):
                raise
            raise ImageNotFoundError(
                f"could not pull image {image} through {self.socket_path}: {_explain(exc)}"
            ) from exc
        # Podman answers 200 and reports a failed pull inside the progress stream.
        errors = [_pull_error(line) for line in resp.iter_lines() if line]
        reason = next((e for e in reversed(errors) if e), None)
        if reason is not None or not self._client.images.exists(image):
            raise ImageNotFoundError(
                f"could not pull image {image} through {self.socket_path}: "
                f"{reason or 'Podman reported no error, but the image is not there'}"
            )

    # --- lifecycle ---------------------------------------------------------------------------

    async def create(self, spec: ContainerSpec) -> str:
        kwargs = create_kwargs(spec)

        def create() -> str:
            return str(self._client.containers.create(spec.image, **kwargs).id)

        return await self._call(f"create container {spec.name}", create, image=spec.image)

    async def start(self, container_id: str) -> None:
        await self._call("start", self._container(container_id).start, container=container_id)

    async def stop(self, container_id: str, timeout_s: int) -> None:
        def stop() -> None:
            resp = self._client.api.post(
                f"/containers/{container_id}/stop",
                params={"timeout": timeout_s},
                timeout=timeout_s + STOP_GRACE_S,
            )
            if resp.status_code in (304, 404):
                return  # already stopped, or gone: either way it is not running
            resp.raise_for_status()

        await self._call("stop", stop, container=container_id)

    async def remove(self, container_id: str) -> None:
        def remove() -> None:
            with contextlib.suppress(podman_errors.NotFound):
                # Named volumes are kept: they hold the workload's data across re-creates.
                self._client.containers.remove(container_id, force=True)

        await self._call("remove", remove, container=container_id)

    async def exec(self, container_id: str, command: list[str], timeout_s: float) -> ExecResult:
        run = functools.partial(self._exec, container_id, command, timeout_s)
        try:
            # The request timeout bounds each read; this bounds the whole call.
            return await asyncio.wait_for(
                self._call("exec in", run, container=container_id, pool=self._exec_pool),
                timeout_s + 5.0,
            )
        except TimeoutError:
            return _exec_timed_out(timeout_s)

    def _exec(self, container_id: str, command: list[str], timeout_s: float) -> ExecResult:
        api = self._client.api
        body = {"AttachStdout": True, "AttachStderr": True, "Cmd": command}
        resp = api.post(f"/containers/{container_id}/exec", data=json.dumps(body))
        resp.raise_for_status()
        exec_id = resp.json()["Id"]
        try:
            started = api.post(
                f"/exec/{exec_id}/start",
                data=json.dumps({"Detach": False, "Tty": False}),
                timeout=timeout_s,
            )
        except podman_errors.APIError as exc:
            if _caused_by(exc, requests.Timeout | TimeoutError):
                # Podman 4.3 cannot kill an exec session; it finishes on its own.
                return _exec_timed_out(timeout_s)
            raise
        started.raise_for_status()
        output = b"".join(podman.api.frames(started)).decode("utf-8", "replace")
        inspected = api.get(f"/exec/{exec_id}/json")
        inspected.raise_for_status()
        code = inspected.json().get("ExitCode")
        return ExecResult(
            exit_code=int(code) if code is not None else -1,
            output=output[-EXEC_OUTPUT_MAX_CHARS:],
        )

    # --- streams -----------------------------------------------------------------------------

    async def events(self, node_id: str) -> AsyncIterator[ContainerEvent]:
        filters = {"type": ["container"], "label": [f"{LABEL_NODE}={node_id}"]}
        query = urllib.parse.urlencode({"stream": "true", "filters": json.dumps(filters)})
        path = f"{self._client.api.path_prefix}events?{query}"
        events = threadstream.stream(
            self.socket_path, path, _parse_events, name=f"podman-events-{node_id}"
        )
        try:
            async for event in events:
                yield event
        except (OSError, http.client.HTTPException, threadstream.HttpStatusError) as exc:
            raise self._stream_error(exc, "read the event stream") from exc
        finally:
            await events.aclose()

    async def logs(
        self, container_id: str, *, follow: bool, tail: int | None
    ) -> AsyncIterator[str]:
        params = {
            "stdout": "true",
            "stderr": "true",
            "follow": "true" if follow else "false",
            "tail": "all" if tail is None else str(tail),
        }
        query = urllib.parse.urlencode(params)
        path = f"{self._client.api.path_prefix}containers/{container_id}/logs?{query}"
        lines = threadstream.stream(
            self.socket_path, path, _parse_log_lines, name=f"podman-logs-{container_id[:12]}"
        )
        try:
            async for line in lines:
                yield line
        except (OSError, http.client.HTTPException, threadstream.HttpStatusError) as exc:
            raise self._stream_error(exc, "read logs of", container_id) from exc
        finally:
            await lines.aclose()

    def _stream_error(self, exc: BaseException, what: str, container: str = "") -> NodeRuntimeError:
        if isinstance(exc, threadstream.HttpStatusError):
            subject = f" container {container[:12]}" if container else ""
            return ContainerError(f"Podman refused to {what}{subject}: {_body_message(exc.body)}")
        return RuntimeUnavailableError(
            f"Podman at {self.socket_path} went away ({what}): {exc or type(exc).__name__}; "
            + _UNREACHABLE_HINT
        )


# --- parsing Podman's answers (pure) ----------------------------------------------------------


def parse_info(data: Mapping[str, Any]) -> RuntimeInfo:
    host = data.get("host") or {}
    version = data.get("version") or {}
    return RuntimeInfo(
        version=str(version.get("Version", "")),
        api_version=str(version.get("APIVersion", "")),
        oci_runtime=str((host.get("ociRuntime") or {}).get("name", "")),
        cgroup_version=str(host.get("cgroupVersion", "")),
        host=str(host.get("hostname", "")),
    )


def parse_inspect(data: Mapping[str, Any]) -> ObservedContainer:
    """An ObservedContainer from ``GET /containers/{id}/json``."""
    state = data.get("State") or {}
    config = data.get("Config") or {}
    labels = dict(config.get("Labels") or {})
    started = parse_time(state.get("StartedAt"))
    finished = parse_time(state.get("FinishedAt"))
    net = data.get("NetworkSettings") or {}
    return ObservedContainer(
        id=str(data["Id"]),
        name=str(data.get("Name", "")).lstrip("/"),
        workload=labels.get(LABEL_WORKLOAD, ""),
        spec_hash=labels.get(LABEL_SPEC_HASH, ""),
        state=ContainerState.parse(state.get("Status")),
        image=str(data.get("ImageName") or config.get("Image") or ""),
        # Podman reports 0 for a container that never ran; that is no exit code.
        exit_code=int(state.get("ExitCode", 0)) if finished is not None else None,
        started_at=started,
        finished_at=finished,
        ip_address=_ip_address(net),
        labels=labels,
        ports=_published_ports(net.get("Ports") or {}),
    )


def parse_time(value: Any) -> float | None:
    """Epoch seconds from Podman's RFC 3339 times; None for Go's zero time ("never")."""
    if not value or not isinstance(value, str) or value.startswith("0001-01-01"):
        return None
    # fromisoformat takes at most microseconds; Podman sends nanoseconds.
    text = _FRACTION.sub(lambda m: "." + m.group(1)[:6].ljust(6, "0"), value, count=1)
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def _ip_address(net: Mapping[str, Any]) -> str | None:
    if net.get("IPAddress"):
        return str(net["IPAddress"])
    for network in (net.get("Networks") or {}).values():
        if network and network.get("IPAddress"):
            return str(network["IPAddress"])
    return None


def _published_ports(ports: Mapping[str, Any]) -> tuple[PortMapping, ...]:
    out = []
    for key, bindings in ports.items():
        port, _, proto = str(key).partition("/")
        for binding in bindings or ():
            host_port = binding.get("HostPort")
            out.append(
                PortMapping(
                    container_port=int(port),
                    host_port=int(host_port) if host_port else None,
                    protocol=proto or "tcp",
                    host_ip=str(binding.get("HostIp") or ""),
                )
            )
    return tuple(out)


def create_kwargs(spec: ContainerSpec) -> dict[str, Any]:
    """Keyword arguments of podman-py's ``containers.create`` for ``spec``.

    No restart policy and no health check: noderuntime supervises both itself.
    """
    kw: dict[str, Any] = {
        "name": spec.name,
        "labels": dict(spec.labels),
        "environment": dict(spec.env),
        "stop_timeout": spec.stop_timeout_s,
        "detach": True,
    }
    if spec.command:
        kw["entrypoint"] = list(spec.command)
    if spec.args:
        kw["command"] = list(spec.args)
    if spec.ports:
        kw["ports"] = _port_kwargs(spec)
    named, mounts = _volume_kwargs(spec)
    if named:
        kw["volumes"] = named
    if mounts:
        kw["mounts"] = mounts
    if spec.cpus is not None:
        # podman-py drops nano_cpus; quota/period says the same thing.
        kw["cpu_period"] = CPU_PERIOD_US
        kw["cpu_quota"] = max(1000, int(spec.cpus * CPU_PERIOD_US))
    if spec.memory_bytes is not None:
        kw["mem_limit"] = spec.memory_bytes
    if spec.working_dir:
        kw["working_dir"] = spec.working_dir
    if spec.user:
        kw["user"] = spec.user
    return kw


def _port_kwargs(spec: ContainerSpec) -> dict[str, list[dict[str, Any]]]:
    ports: dict[str, list[dict[str, Any]]] = {}
    for p in spec.ports:
        host: dict[str, Any] = {}
        if p.host_port is not None:
            host["port"] = p.host_port
        if p.host_ip:
            host["ip"] = p.host_ip
        ports.setdefault(f"{p.container_port}/{p.protocol}", []).append(host)
    return ports


def _volume_kwargs(spec: ContainerSpec) -> tuple[dict[str, dict[str, str]], list[dict[str, Any]]]:
    named: dict[str, dict[str, str]] = {}
    mounts: list[dict[str, Any]] = []
    for v in spec.volumes:
        if v.kind == "bind":
            mounts.append(
                {"type": "bind", "source": v.source, "target": v.target, "read_only": v.read_only}
            )
            continue
        if v.source in named:
            raise ContainerError(
                f"container {spec.name}: volume {v.source} is mounted twice "
                f"({named[v.source]['bind']} and {v.target}); Podman's API allows one mount each"
            )
        named[v.source] = {"bind": v.target, "mode": "ro" if v.read_only else "rw"}
    return named, mounts


def _parse_events(resp: http.client.HTTPResponse) -> Iterator[ContainerEvent]:
    for line in iter(resp.readline, b""):
        line = line.strip()
        if not line:
            continue
        try:
            raw = json.loads(line)
        except ValueError:
            continue  # a torn line while the service dies; the stream ends next
        action = str(raw.get("Action") or raw.get("status") or "")
        if action.startswith(_IGNORED_EVENT_PREFIXES):
            continue
        actor = raw.get("Actor") or {}
        attrs = actor.get("Attributes") or {}
        yield ContainerEvent(
            container_id=str(actor.get("ID") or raw.get("id") or ""),
            workload=str(attrs.get(LABEL_WORKLOAD, "")),
            action=action,
        )
    # Podman never ends an event stream on its own: EOF means the service went away.
    raise ConnectionResetError("the event stream ended")


def _parse_log_lines(resp: http.client.HTTPResponse) -> Iterator[str]:
    """Lines of Podman's multiplexed log stream (8-byte frame headers, stdout and stderr)."""
    partial: dict[int, bytes] = {}
    while True:
        header = resp.read(_FRAME_HEADER.size)
        if len(header) < _FRAME_HEADER.size:
            break
        fd, length = _FRAME_HEADER.unpack(header)
        data = partial.pop(fd, b"") + resp.read(length)
        *lines, rest = data.split(b"\n")
        if rest:
            partial[fd] = rest
        for line in lines:
            yield line.decode("utf-8", "replace")
    for rest in partial.values():
        yield rest.decode("utf-8", "replace")


# --- error helpers ---------------------------------------------------------------------------


def _causes(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        yield cur
        cur = cur.__cause__ or cur.__context__


def _caused_by(exc: BaseException, kind: type[BaseException] | types.UnionType) -> bool:
    return any(isinstance(e, kind) for e in _causes(exc))


def _is_unreachable(exc: BaseException) -> bool:
    for e in _causes(exc):
        if isinstance(
            e, requests.ConnectionError | requests.Timeout | ConnectionError | TimeoutError
        ):
            return True
        if isinstance(e, FileNotFoundError):
            return True
        if isinstance(e, podman_errors.APIError) and "Unable to make connection" in str(e):
            return True
    return False


def _root_message(exc: BaseException) -> str:
    *_, root = _causes(exc)
    return str(root) or type(root).__name__


def _explain(exc: BaseException) -> str:
    explanation = getattr(exc, "explanation", None)
    return str(explanation or exc or type(exc).__name__)


def _says_no_image(detail: str) -> bool:
    text = detail.lower()
    return "image not known" in text or "no such image" in text or "image not found" in text


def _body_message(body: str) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        return body.strip()
    if isinstance(data, dict):
        return str(data.get("message") or data.get("cause") or body.strip())
    return body.strip()


def _pull_error(line: bytes) -> str | None:
    try:
        data = json.loads(line)
    except ValueError:
        return None
    error = data.get("error") if isinstance(data, dict) else None
    return str(error) if error else None


def _exec_timed_out(timeout_s: float) -> ExecResult:
    return ExecResult(EXEC_TIMEOUT_EXIT_CODE, f"timed out after {timeout_s:g}s")
