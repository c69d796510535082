"""The :class:`ContainerRuntime` over Podman's libpod REST API, spoken directly.

Requests go through :mod:`noderuntime.runtime.unixhttp`, a small asyncio HTTP/1.1 client on the
service's unix socket: no thread pool, one connection per request, a bounded timeout per call
(pulls excepted: they take what they take, bounded only by a stall timeout between progress
lines, and cancelling the caller ends them). Streams (events, logs) are the same client reading
a response incrementally, so cancelling a consumer closes its connection at once. We do not use
the PyPI ``podman`` package: importing it (requests, urllib3, rich...) cost the daemon ~14 MB of
RSS, see docs/architecture.md. Foreign errors are translated here, at the boundary, into
noderuntime's tree.
"""

from __future__ import annotations

import asyncio
import json
import re
import struct
import urllib.parse
from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from typing import Any

from noderuntime.errors import (
    ContainerError,
    ImageArchiveError,
    ImageNotFoundError,
    NodeRuntimeError,
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
    PortMapping,
    RuntimeInfo,
)
from noderuntime.runtime.images import parse_images
from noderuntime.runtime.unixhttp import Body, ProtocolError, Response, UnixHttpClient

# Podman 4.3 serves /v4.0.0/ upwards (its MinAPIVersion); the libpod API is what we speak.
API_PREFIX = "/v4.0.0/libpod"
REQUEST_TIMEOUT_S = 30.0
# Create and start may wait on storage, networking and conmon: more time before we call it hung.
SLOW_REQUEST_TIMEOUT_S = 120.0
# Extra time a stop may take on top of the container's own stop timeout before we call Podman hung.
STOP_GRACE_S = 30.0
CPU_PERIOD_US = 100_000
EXEC_TIMEOUT_EXIT_CODE = 124  # what coreutils `timeout` returns; people recognise it
EXEC_OUTPUT_MAX_CHARS = 64 * 1024
_ERROR_BODY_MAX_BYTES = 64 * 1024
_FRAME_HEADER = struct.Struct(">BxxxL")
_FRACTION = re.compile(r"\.(\d+)")
# What the Podman API accepts as a named volume; anything else is a host path (bind mount).
_NAMED_VOLUME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*\Z")
# Exec sessions (health probes!) and attaches change nothing the reconciler looks at.
_IGNORED_EVENT_PREFIXES = ("exec", "attach", "health_status")
_UNREACHABLE_HINT = "is `podman system service` running?"
# Errors that mean the service is not there (or went away mid-answer). TimeoutError is an
# OSError too: it is handled before these wherever it means something else.
_TRANSPORT_ERRORS = (OSError, asyncio.IncompleteReadError)


class _HttpStatusError(Exception):
    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.body = body


def _q(segment: str) -> str:
    """A container id or name as one path segment."""
    return urllib.parse.quote(segment, safe="")


class PodmanRuntime:
    """Podman behind the ContainerRuntime protocol. Constructing it connects to nothing."""

    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path
        self._http = UnixHttpClient(socket_path, API_PREFIX)

    async def close(self) -> None:
        """Nothing to release: connections live as long as their request or stream."""

    # --- plumbing ----------------------------------------------------------------------------

    async def _request(
        self,
        method: str,
        path: str,
        what: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        timeout_s: float = REQUEST_TIMEOUT_S,
        container: str = "",
        image: str = "",
        accept: tuple[int, ...] = (),
    ) -> Response:
        """One request; statuses >= 400 not in ``accept`` raise translated errors."""
        try:
            resp = await self._http.request(
                method, path, params=params, body=body, timeout_s=timeout_s
            )
        except TimeoutError as exc:
            raise RuntimeUnavailableError(
                f"Podman at {self.socket_path} did not answer within {timeout_s:g}s ({what}); "
                + _UNREACHABLE_HINT
            ) from exc
        except _TRANSPORT_ERRORS as exc:
            raise self._unreachable(exc, what) from exc
        if resp.status >= 400 and resp.status not in accept:
            raise self._refused(resp.status, resp.body, what, container=container, image=image)
        return resp

    def _unreachable(self, exc: BaseException, what: str) -> RuntimeUnavailableError:
        verb = "went away" if isinstance(exc, ProtocolError | EOFError) else "is unreachable"
        return RuntimeUnavailableError(
            f"Podman at {self.socket_path} {verb} ({what}): "
            f"{exc or type(exc).__name__}; {_UNREACHABLE_HINT}"
        )

    def _refused(
        self, status: int, body: bytes, what: str, *, container: str = "", image: str = ""
    ) -> NodeRuntimeError:
        detail = _body_message(body.decode("utf-8", "replace"), status)
        if image and (status == 404 or _says_no_image(detail)):
            return ImageNotFoundError(f"image {image} not found on {self.socket_path}: {detail}")
        subject = f" container {container[:12]}" if container else ""
        return ContainerError(f"Podman refused to {what}{subject}: {detail}")

    async def _stream_error_body(self, status: int, body: Body) -> _HttpStatusError:
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                data = await body.read_all(_ERROR_BODY_MAX_BYTES)
        except (TimeoutError, *_TRANSPORT_ERRORS):
            data = b""
        return _HttpStatusError(status, data)

    # --- facts -------------------------------------------------------------------------------

    async def info(self) -> RuntimeInfo:
        resp = await self._request("GET", "/info", "read engine info")
        return parse_info(resp.json() or {})

    async def list_containers(self, node_id: str) -> list[ObservedContainer]:
        wanted = {LABEL_NODE: node_id, LABEL_MANAGED: "true"}
        filters = {"label": [f"{k}={v}" for k, v in wanted.items()]}
        resp = await self._request(
            "GET",
            "/containers/json",
            "list containers",
            params={"all": "true", "filters": json.dumps(filters)},
        )
        out = []
        for summary in resp.json() or ():
            labels = summary.get("Labels") or {}
            if any(labels.get(k) != v for k, v in wanted.items()):
                continue  # belt and braces: label filters have had OR semantics in some versions
            cid = str(summary["Id"])
            inspected = await self._request(
                "GET", f"/containers/{_q(cid)}/json", "inspect", container=cid, accept=(404,)
            )
            if inspected.status == 404:
                continue  # removed between list and inspect
            out.append(parse_inspect(inspected.json()))
        return out

    async def image_present(self, image: str) -> bool:
        resp = await self._request(
            "GET",
            f"/images/{urllib.parse.quote(image, safe='/:@')}/exists",
            "check for image",
            accept=(404,),  # 404 is the answer "no", not an error
        )
        return resp.status != 404

    async def pull_image(self, image: str, *, stall_timeout_s: float | None = None) -> None:
        """Pull with no overall timeout (an image takes what it takes); cancel to give up.

        ``stall_timeout_s`` bounds the wait for the response and between two progress lines:
        a registry connection that stalls would otherwise hold the pull forever.
        """
        what = "pull image"
        errors: list[str] = []
        stalled = asyncio.timeout(None)
        try:
            async with stalled:
                self._arm(stalled, stall_timeout_s)
                async with self._http.stream(
                    "POST", "/images/pull", params={"reference": image}
                ) as resp:
                    if resp.status >= 400:
                        raise await self._stream_error_body(resp.status, resp.body)
                    # Podman answers 200 and reports a failed pull inside the progress stream.
                    self._arm(stalled, stall_timeout_s)
                    while line := await resp.body.readline():
                        self._arm(stalled, stall_timeout_s)
                        if error := _pull_error(line):
                            errors.append(error)
        except _HttpStatusError as exc:
            detail = _body_message(exc.body.decode("utf-8", "replace"), exc.status)
            raise ImageNotFoundError(
                f"could not pull image {image} through {self.socket_path}: {detail}"
            ) from exc
        except TimeoutError as exc:
            if stalled.expired():
                raise ImageNotFoundError(
                    f"pull of image {image} made no progress for {stall_timeout_s:g}s and was "
                    "cancelled (stalled registry connection?)"
                ) from exc
            raise self._unreachable(exc, what) from exc  # connecting
        except _TRANSPORT_ERRORS as exc:
            raise self._unreachable(exc, what) from exc
        reason = errors[-1] if errors else None
        if reason is not None or not await self.image_present(image):
            raise ImageNotFoundError(
                f"could not pull image {image} through {self.socket_path}: "
                f"{reason or 'Podman reported no error, but the image is not there'}"
            )

    @staticmethod
    def _arm(cm: asyncio.Timeout, stall_timeout_s: float | None) -> None:
        """Push the stall deadline out: the pull just showed a sign of life."""
        if stall_timeout_s is not None:
            cm.reschedule(asyncio.get_running_loop().time() + stall_timeout_s)

    async def list_images(self) -> list[ImageInfo]:
        resp = await self._request("GET", "/images/json", "list images")
        return parse_images(resp.json() or ())

    async def load_image(self, chunks: AsyncIterator[bytes], size_bytes: int) -> list[str]:
        """POST the archive to Podman's load endpoint; no overall timeout (a big archive from a
        slow stick takes what it takes), cancel to give up."""
        what = "load an image archive"
        try:
            async with self._http.upload(
                "/images/load", chunks, size_bytes, content_type="application/x-tar"
            ) as resp:
                data = await resp.body.read_all(_ERROR_BODY_MAX_BYTES)
        except _TRANSPORT_ERRORS as exc:  # TimeoutError here: connecting took too long
            raise self._unreachable(exc, what) from exc
        if resp.status >= 400:
            detail = _body_message(data.decode("utf-8", "replace"), resp.status)
            raise ImageArchiveError(f"Podman could not load the archive: {detail}")
        try:
            names = json.loads(data).get("Names") or []
        except (ValueError, AttributeError):
            names = []
        return [str(n) for n in names]

    # --- lifecycle ---------------------------------------------------------------------------

    async def create(self, spec: ContainerSpec) -> str:
        resp = await self._request(
            "POST",
            "/containers/create",
            f"create container {spec.name}",
            body=create_body(spec),
            timeout_s=SLOW_REQUEST_TIMEOUT_S,
            image=spec.image,
        )
        return str(resp.json()["Id"])

    async def start(self, container_id: str) -> None:
        # 304: already running, which is what was asked for.
        await self._request(
            "POST",
            f"/containers/{_q(container_id)}/start",
            "start",
            timeout_s=SLOW_REQUEST_TIMEOUT_S,
            container=container_id,
        )

    async def stop(self, container_id: str, timeout_s: int) -> None:
        # 304: already stopped; 404: gone. Either way it is not running.
        await self._request(
            "POST",
            f"/containers/{_q(container_id)}/stop",
            "stop",
            params={"timeout": str(timeout_s)},
            timeout_s=timeout_s + STOP_GRACE_S,
            container=container_id,
            accept=(404,),
        )

    async def remove(self, container_id: str) -> None:
        # Named volumes are kept (v=false): they hold the workload's data across re-creates.
        await self._request(
            "DELETE",
            f"/containers/{_q(container_id)}",
            "remove",
            params={"force": "true", "v": "false"},
            timeout_s=SLOW_REQUEST_TIMEOUT_S,
            container=container_id,
            accept=(404,),
        )

    async def exec(self, container_id: str, command: list[str], timeout_s: float) -> ExecResult:
        try:
            # Each step has its own bound; this bounds the whole call.
            async with asyncio.timeout(timeout_s + 5.0):
                return await self._exec(container_id, command, timeout_s)
        except TimeoutError:
            return _exec_timed_out(timeout_s)

    async def _exec(self, container_id: str, command: list[str], timeout_s: float) -> ExecResult:
        what = "exec in"
        created = await self._request(
            "POST",
            f"/containers/{_q(container_id)}/exec",
            what,
            body={"AttachStdout": True, "AttachStderr": True, "Cmd": command},
            container=container_id,
        )
        exec_id = _q(str(created.json()["Id"]))
        output = bytearray()
        keep = EXEC_OUTPUT_MAX_CHARS * 4  # bytes enough for the last N characters of UTF-8
        try:
            async with (
                asyncio.timeout(timeout_s),
                self._http.stream(
                    "POST", f"/exec/{exec_id}/start", body={"Detach": False, "Tty": False}
                ) as resp,
            ):
                if resp.status >= 400:
                    raise await self._stream_error_body(resp.status, resp.body)
                async for _fd, data in _frames(resp.body):
                    output += data
                    if len(output) > 2 * keep:
                        del output[:-keep]
        except TimeoutError:
            # Podman 4.3 cannot kill an exec session; it finishes on its own.
            return _exec_timed_out(timeout_s)
        except _HttpStatusError as exc:
            raise self._refused(exc.status, exc.body, what, container=container_id) from exc
        except _TRANSPORT_ERRORS as exc:
            raise self._unreachable(exc, what) from exc
        inspected = await self._request(
            "GET", f"/exec/{exec_id}/json", what, container=container_id
        )
        code = (inspected.json() or {}).get("ExitCode")
        return ExecResult(
            exit_code=int(code) if code is not None else -1,
            output=output.decode("utf-8", "replace")[-EXEC_OUTPUT_MAX_CHARS:],
        )

    # --- streams -----------------------------------------------------------------------------

    async def events(self, node_id: str) -> AsyncIterator[ContainerEvent]:
        what = "read the event stream"
        filters = {"type": ["container"], "label": [f"{LABEL_NODE}={node_id}"]}
        params = {"stream": "true", "filters": json.dumps(filters)}
        try:
            async with self._http.stream("GET", "/events", params=params) as resp:
                if resp.status >= 400:
                    raise await self._stream_error_body(resp.status, resp.body)
                while line := await resp.body.readline():
                    event = _parse_event(line)
                    if event is not None:
                        yield event
            # Podman never ends an event stream on its own: EOF means the service went away.
            raise ProtocolError("the event stream ended")
        except _HttpStatusError as exc:
            raise self._refused(exc.status, exc.body, what) from exc
        except _TRANSPORT_ERRORS as exc:  # TimeoutError here: connecting took too long
            raise self._unreachable(exc, what) from exc

    async def logs(
        self, container_id: str, *, follow: bool, tail: int | None, timestamps: bool = False
    ) -> AsyncIterator[str]:
        what = "read logs of"
        params = {
            "stdout": "true",
            "stderr": "true",
            "follow": "true" if follow else "false",
            "tail": "all" if tail is None else str(tail),
            "timestamps": "true" if timestamps else "false",
        }
        # No read timeout: with follow, Podman 4.3 sends not even headers until the container
        # writes something. Cancelling the consumer closes the connection.
        try:
            async with self._http.stream(
                "GET", f"/containers/{_q(container_id)}/logs", params=params
            ) as resp:
                if resp.status >= 400:
                    raise await self._stream_error_body(resp.status, resp.body)
                async for line in _log_lines(resp.body):
                    yield line
        except _HttpStatusError as exc:
            raise self._refused(exc.status, exc.body, what, container=container_id) from exc
        except _TRANSPORT_ERRORS as exc:
            raise self._unreachable(exc, what) from exc


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


def create_body(spec: ContainerSpec) -> dict[str, Any]:
    """The libpod SpecGenerator JSON of ``POST /containers/create`` for ``spec``.

    No restart policy and no health check: noderuntime supervises both itself.
    """
    body: dict[str, Any] = {
        "name": spec.name,
        "image": spec.image,
        "labels": dict(spec.labels),
        "env": dict(spec.env),
        "stop_timeout": spec.stop_timeout_s,
    }
    if spec.command:
        body["entrypoint"] = list(spec.command)
    if spec.args:
        body["command"] = list(spec.args)
    if spec.ports:
        body["portmappings"] = _port_mappings(spec)
    named, mounts = _volumes(spec)
    if named:
        body["volumes"] = named
    if mounts:
        body["mounts"] = mounts
    limits: dict[str, Any] = {}
    if spec.cpus is not None:
        # Podman 4.3 ignores nano-CPUs in a SpecGenerator; quota/period says the same thing.
        limits["cpu"] = {
            "period": CPU_PERIOD_US,
            "quota": max(1000, int(spec.cpus * CPU_PERIOD_US)),
        }
    if spec.memory_bytes is not None:
        limits["memory"] = {"limit": spec.memory_bytes}
    if limits:
        body["resource_limits"] = limits
    if spec.working_dir:
        body["work_dir"] = spec.working_dir
    if spec.user:
        body["user"] = spec.user
    body.update(_privilege(spec))
    return body


def _privilege(spec: ContainerSpec) -> dict[str, Any]:
    """The SpecGenerator's privilege fields; only those that differ from Podman's defaults."""
    out: dict[str, Any] = {}
    if spec.privileged:
        out["privileged"] = True
    for field, on in (("netns", spec.host_network), ("pidns", spec.host_pid)):
        if on:
            out[field] = {"nsmode": "host"}
    if spec.host_ipc:
        out["ipcns"] = {"nsmode": "host"}
    if spec.cap_add:
        out["cap_add"] = [_capability(c) for c in spec.cap_add]
    if spec.cap_drop:
        out["cap_drop"] = [_capability(c) for c in spec.cap_drop]
    if spec.devices:
        # Podman reads each path as HOST[:CONTAINER[:PERMISSIONS]] (DevicesFromPath).
        out["devices"] = [{"path": d} for d in spec.devices]
    if spec.read_only_rootfs:
        out["read_only_filesystem"] = True
    if spec.no_new_privileges:
        out["no_new_privileges"] = True
    return out


def _capability(name: str) -> str:
    return name if name == "ALL" else "CAP_" + name


def _port_mappings(spec: ContainerSpec) -> list[dict[str, Any]]:
    out = []
    for p in spec.ports:
        mapping: dict[str, Any] = {"container_port": p.container_port, "protocol": p.protocol}
        if p.host_port is not None:
            mapping["host_port"] = p.host_port
        if p.host_ip:
            mapping["host_ip"] = p.host_ip
        out.append(mapping)
    return out


def _volumes(spec: ContainerSpec) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Named volumes (the SpecGenerator's ``volumes``) and bind mounts (its ``mounts``)."""
    named: dict[str, dict[str, Any]] = {}
    mounts: list[dict[str, Any]] = []
    for v in spec.volumes:
        if v.kind == "bind" or not _NAMED_VOLUME.match(v.source):
            mounts.append(
                {
                    "type": "bind",
                    "source": v.source,
                    "destination": v.target,
                    "options": ["ro"] if v.read_only else [],
                }
            )
            continue
        if v.source in named:
            raise ContainerError(
                f"container {spec.name}: volume {v.source} is mounted twice "
                f"({named[v.source]['Dest']} and {v.target}); Podman's API allows one mount each"
            )
        named[v.source] = {
            "Name": v.source,
            "Dest": v.target,
            "Options": ["ro" if v.read_only else "rw"],
        }
    return list(named.values()), mounts


def _parse_event(line: bytes) -> ContainerEvent | None:
    line = line.strip()
    if not line:
        return None
    try:
        raw = json.loads(line)
    except ValueError:
        return None  # a torn line while the service dies; the stream ends next
    if not isinstance(raw, dict):
        return None
    # Podman 4.3 calls a container's exit "died" (Docker: "die"); passed on as sent.
    action = str(raw.get("Action") or raw.get("status") or "")
    if action.startswith(_IGNORED_EVENT_PREFIXES):
        return None
    actor = raw.get("Actor") or {}
    attrs = actor.get("Attributes") or {}
    return ContainerEvent(
        container_id=str(actor.get("ID") or raw.get("id") or ""),
        workload=str(attrs.get(LABEL_WORKLOAD, "")),
        action=action,
    )


async def _frames(body: Body) -> AsyncIterator[tuple[int, bytes]]:
    """(fd, data) of a multiplexed stream (8-byte headers: fd, 3 zero bytes, big-endian size)."""
    while True:
        header = await body.readexactly(_FRAME_HEADER.size)
        if len(header) < _FRAME_HEADER.size:
            return
        fd, length = _FRAME_HEADER.unpack(header)
        yield fd, await body.readexactly(length)


async def _log_lines(body: Body) -> AsyncIterator[str]:
    """Lines of Podman's multiplexed log stream (stdout and stderr)."""
    partial: dict[int, bytes] = {}
    async for fd, chunk in _frames(body):
        data = partial.pop(fd, b"") + chunk
        *lines, rest = data.split(b"\n")
        if rest:
            partial[fd] = rest
        for line in lines:
            yield line.decode("utf-8", "replace")
    for rest in partial.values():
        yield rest.decode("utf-8", "replace")


# --- error helpers ---------------------------------------------------------------------------


def _says_no_image(detail: str) -> bool:
    text = detail.lower()
    return "image not known" in text or "no such image" in text or "image not found" in text


def _body_message(body: str, status: int) -> str:
    """Podman's error message (``message``, plus ``cause`` when it adds something)."""
    try:
        data = json.loads(body)
    except ValueError:
        return body.strip() or f"HTTP {status}"
    if isinstance(data, dict):
        message = str(data.get("message") or "")
        cause = str(data.get("cause") or "")
        if message and cause and cause not in message:
            return f"{message} ({cause})"
        return message or cause or body.strip() or f"HTTP {status}"
    return body.strip() or f"HTTP {status}"


def _pull_error(line: bytes) -> str | None:
    try:
        data = json.loads(line)
    except ValueError:
        return None
    error = data.get("error") if isinstance(data, dict) else None
    return str(error) if error else None


def _exec_timed_out(timeout_s: float) -> ExecResult:
    return ExecResult(EXEC_TIMEOUT_EXIT_CODE, f"timed out after {timeout_s:g}s")
