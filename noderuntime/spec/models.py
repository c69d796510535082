"""The workload document as frozen pydantic models, and its canonical stored form.

Field names on the wire (YAML, stored JSON, the control API) are camelCase; Python attributes are
snake_case. ``docs/workload-spec.md`` is the user-facing reference of every field.
"""

from __future__ import annotations

import enum
import hashlib
import json
import re
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from noderuntime.spec.values import (
    API_VERSION,
    DEFAULT_PROBE_INTERVAL_S,
    DEFAULT_PROBE_RETRIES,
    DEFAULT_PROBE_TIMEOUT_S,
    DEFAULT_STOP_TIMEOUT_S,
    KIND,
    AbsolutePath,
    ApiVersion,
    Capability,
    Cpus,
    DevicePermissions,
    Duration,
    EnvName,
    HostIp,
    HostNamespace,
    HttpPath,
    Image,
    Kind,
    LabelKey,
    LabelValue,
    Loc,
    MemoryBytes,
    Name,
    PortNumber,
    PositiveDuration,
    ProbeInterval,
    Replicas,
    Retries,
    StopTimeoutS,
    Text,
    User,
    UserLabelKey,
    VolumeName,
    describe,
    fail,
    format_seconds,
    none_as_empty_dict,
    none_as_empty_list,
    raise_at,
    restart_policy_spelling,
)

SPEC_HASH_CHARS = 16
_WILDCARD_IPS = frozenset({"", "0.0.0.0", "::"})
# ASCII digits only (str.isdigit also takes '²' and '٣'); enough of them to say "at most 65535".
_PORT_DIGITS_RE = re.compile(r"[0-9]{1,10}\Z")


class _Model(BaseModel):
    model_config = ConfigDict(
        frozen=True, extra="forbid", populate_by_name=True, allow_inf_nan=False
    )


class RestartPolicy(enum.Enum):
    """What happens when the container exits. Persisted: never change the values."""

    ALWAYS = "always"
    ON_FAILURE = "on-failure"
    NEVER = "never"


class Metadata(_Model):
    """Identity of a workload. The name is unique in the fleet."""

    name: Name = Field(description="DNS label: 1-63 of a-z, 0-9 and '-'")
    labels: Annotated[dict[UserLabelKey, LabelValue], BeforeValidator(none_as_empty_dict)] = Field(
        default_factory=dict, description="copied onto the container"
    )


def _port_short_form(value: Any) -> Any:
    """Read compose's "[[IP:]HOST:]CONTAINER[/PROTOCOL]" form into the object form."""
    if isinstance(value, bool):
        fail("port", f"expected a port, got {describe(value)}")
    if isinstance(value, int):
        return {"containerPort": value}
    if not isinstance(value, str):
        return value
    usage = (
        f"invalid port {describe(value)}: write CONTAINER, HOST:CONTAINER or IP:HOST:CONTAINER, "
        'optionally ending in /tcp or /udp (e.g. "8080:80", "127.0.0.1:53:53/udp")'
    )
    text = value.strip()
    out: dict[str, Any] = {}
    if "/" in text:
        text, protocol = text.rsplit("/", 1)
        out["protocol"] = protocol.lower()
    if text.startswith("["):  # [IPv6]:HOST:CONTAINER
        ip, bracket, rest = text[1:].partition("]")
        parts = [ip, *rest[1:].split(":")]
        if not bracket or not rest.startswith(":") or len(parts) != 3:
            fail("port", usage)
    else:
        parts = text.split(":")
        if len(parts) > 3:
            fail("port", usage + "; put an IPv6 address in brackets: [::1]:8080:80")
    if any("-" in p for p in parts[-2:]):
        fail("port", f"invalid port {value!r}: port ranges are not supported; list each port")
    *front, container = parts
    if not _PORT_DIGITS_RE.match(container):
        fail("port", usage)
    out["containerPort"] = int(container)
    if front:
        host = front[-1]
        if host and not _PORT_DIGITS_RE.match(host):
            fail("port", usage)
        if host:
            out["hostPort"] = int(host)
    if len(front) == 2:
        out["hostIP"] = front[0]
    return out


class Port(_Model):
    """A container port, optionally published on the host."""

    container_port: PortNumber = Field(alias="containerPort")
    host_port: PortNumber | None = Field(
        default=None, alias="hostPort", description="not set: Podman picks a free host port"
    )
    protocol: Literal["tcp", "udp"] = "tcp"
    host_ip: HostIp = Field(
        default="", alias="hostIP", description="address to bind on the host; empty: all"
    )


PortItem = Annotated[
    Port, BeforeValidator(_port_short_form, json_schema_input_type=Port | str | int)
]


class Volume(_Model):
    """A named Podman volume or a host directory, mounted into the container."""

    mount_path: AbsolutePath = Field(alias="mountPath")
    name: VolumeName | None = Field(default=None, description="named volume (created if missing)")
    host_path: AbsolutePath | None = Field(
        default=None, alias="hostPath", description="bind-mount this host path"
    )
    read_only: bool = Field(default=False, alias="readOnly")

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if (self.name is None) == (self.host_path is None):
            fail(
                "volume_source",
                "set exactly one of name (a named volume) or hostPath (a host directory)",
            )
        if self.mount_path == "/":
            raise_at("Volume", [(("mountPath",), "cannot mount over '/'", self.mount_path)])
        return self


class SecretRef(_Model):
    """A fleet secret the container sees: a file (``path``) in a tmpfs, or a variable (``env``)."""

    name: Name = Field(description="a secret set with `noderuntime secret set`")
    path: AbsolutePath | None = Field(
        default=None, description="a read-only file (mode 0400) at this path in the container"
    )
    env: EnvName | None = Field(
        default=None, description="an environment variable (needs spec.command and /bin/sh)"
    )

    @model_validator(mode="after")
    def _one_target(self) -> Self:
        if (self.path is None) == (self.env is None):
            fail("secret_target", "set exactly one of path (a file) or env (a variable)")
        if self.path is not None and self.path.rstrip("/") in ("", SECRET_ENV_DIR):
            raise_at("SecretRef", [(("path",), "cannot mount a secret there", self.path)])
        return self


# Where env secrets are read from inside the container (the entrypoint wrapper's directory).
SECRET_ENV_DIR = "/run/noderuntime-secrets"


def _device_short_form(value: Any) -> Any:
    """Read Podman's "HOST[:CONTAINER[:PERMISSIONS]]" form into the object form."""
    if not isinstance(value, str):
        return value
    parts = value.split(":")
    if len(parts) > 3:
        fail("device", f"invalid device {value!r}: write HOST[:CONTAINER[:PERMISSIONS]]")
    out: dict[str, Any] = {"hostPath": parts[0]}
    if len(parts) > 1 and parts[1]:
        out["containerPath"] = parts[1]
    if len(parts) > 2:
        out["permissions"] = parts[2]
    return out


class Device(_Model):
    """A host device node made available inside the container (fleet policy must allow it)."""

    host_path: AbsolutePath = Field(alias="hostPath", description="e.g. /dev/dri/renderD128")
    container_path: AbsolutePath | None = Field(
        default=None, alias="containerPath", description="not set: the same as hostPath"
    )
    permissions: DevicePermissions = Field(default="rwm", description="a subset of rwm")


DeviceItem = Annotated[
    Device, BeforeValidator(_device_short_form, json_schema_input_type=Device | str)
]


class Capabilities(_Model):
    """Linux capabilities added to or dropped from Podman's default set."""

    add: Annotated[list[Capability], BeforeValidator(none_as_empty_list)] = Field(
        default_factory=list, description="each needs fleet policy"
    )
    drop: Annotated[list[Capability], BeforeValidator(none_as_empty_list)] = Field(
        default_factory=list, description="ALL drops every capability"
    )


class SecurityContext(_Model):
    """How much of the host's privilege the container gets; the defaults grant the least."""

    privileged: bool = Field(default=False, description="every capability and device: policy")
    capabilities: Capabilities | None = None
    read_only_root_filesystem: bool = Field(default=False, alias="readOnlyRootFilesystem")
    run_as_non_root: bool = Field(
        default=False, alias="runAsNonRoot", description="user must be set and not root"
    )
    no_new_privileges: bool = Field(
        default=True, alias="noNewPrivileges", description="setuid binaries gain nothing"
    )

    @field_validator("capabilities")
    @classmethod
    def _empty_capabilities_is_unset(cls, value: Capabilities | None) -> Capabilities | None:
        return value if value is not None and (value.add or value.drop) else None


DEFAULT_SECURITY_CONTEXT = SecurityContext()


class ExecProbe(_Model):
    command: Annotated[list[Text], Field(min_length=1)]


class HttpProbe(_Model):
    port: PortNumber
    path: HttpPath = "/"
    scheme: Literal["http", "https"] = "http"


class TcpProbe(_Model):
    port: PortNumber


class HealthCheck(_Model):
    """A probe noderuntime runs against the container; exactly one of exec, http, tcp."""

    exec: ExecProbe | None = None
    http: HttpProbe | None = None
    tcp: TcpProbe | None = None
    interval_s: ProbeInterval = Field(default=DEFAULT_PROBE_INTERVAL_S, alias="interval")
    timeout_s: PositiveDuration = Field(
        default=DEFAULT_PROBE_TIMEOUT_S, alias="timeout", description="at most interval"
    )
    retries: Retries = Field(
        default=DEFAULT_PROBE_RETRIES,
        description="consecutive failures before the container counts as unhealthy",
    )
    start_period_s: Duration = Field(
        default=0.0, alias="startPeriod", description="failures this soon after start don't count"
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        problems: list[tuple[Loc, str, Any]] = []
        kinds = [k for k in ("exec", "http", "tcp") if getattr(self, k) is not None]
        if len(kinds) != 1:
            found = f" (found {' and '.join(kinds)})" if kinds else ""
            problems.append(((), f"set exactly one of exec, http or tcp{found}", kinds))
        if self.timeout_s > self.interval_s:
            problems.append(
                (
                    ("timeout",),
                    f"must be at most the interval ({format_seconds(self.interval_s)}), "
                    f"got {format_seconds(self.timeout_s)}",
                    self.timeout_s,
                )
            )
        if problems:
            raise_at("HealthCheck", problems)
        return self


class Resources(_Model):
    """Limits Podman enforces on the container."""

    cpus: Cpus | None = Field(default=None, description="CPU cores, e.g. 0.5")
    memory_bytes: MemoryBytes | None = Field(
        default=None, alias="memory", description="bytes, or a quantity like 256Mi, 1Gi, 512M"
    )


class PlacementScope(enum.Enum):
    """Where ``replicas`` is counted. Persisted: never change the values."""

    SITE = "site"


class Placement(_Model):
    """Run ``replicas`` instances per site among its eligible nodes, at most one per node."""

    scope: PlacementScope = Field(description="site: the nodes of one site share the instances")
    replicas: Replicas = Field(description="instances per site, 1-64; 1 is a singleton")


class WorkloadSpec(_Model):
    """What to run and how; every field but image has a default."""

    image: Image
    command: list[Text] | None = Field(default=None, description="replaces the image ENTRYPOINT")
    args: list[Text] | None = Field(default=None, description="replaces the image CMD")
    env: Annotated[dict[EnvName, Text], BeforeValidator(none_as_empty_dict)] = Field(
        default_factory=dict
    )
    ports: Annotated[list[PortItem], BeforeValidator(none_as_empty_list)] = Field(
        default_factory=list
    )
    volumes: Annotated[list[Volume], BeforeValidator(none_as_empty_list)] = Field(
        default_factory=list
    )
    restart_policy: Annotated[RestartPolicy, BeforeValidator(restart_policy_spelling)] = Field(
        default=RestartPolicy.ALWAYS, alias="restartPolicy"
    )
    health_check: HealthCheck | None = Field(default=None, alias="healthCheck")
    resources: Resources | None = None
    node_selector: Annotated[dict[LabelKey, LabelValue], BeforeValidator(none_as_empty_dict)] = (
        Field(
            default_factory=dict,
            alias="nodeSelector",
            description="run only on nodes that have all these labels",
        )
    )
    placement: Placement | None = Field(
        default=None, description="not set: every selected node runs the workload"
    )
    working_dir: AbsolutePath | None = Field(default=None, alias="workingDir")
    user: User | None = None
    stop_timeout_s: StopTimeoutS = Field(
        default=DEFAULT_STOP_TIMEOUT_S,
        alias="stopTimeoutSeconds",
        description="seconds between SIGTERM and SIGKILL",
    )
    # None rather than []: a spec written before secrets existed keeps its hash.
    secrets: list[SecretRef] | None = Field(
        default=None, description="fleet secrets as files in a tmpfs or environment variables"
    )

    @field_validator("secrets")
    @classmethod
    def _unique_secret_targets(cls, refs: list[SecretRef] | None) -> list[SecretRef] | None:
        problems: list[tuple[Loc, str, Any]] = []
        seen: dict[str, int] = {}
        for i, ref in enumerate(refs or []):
            field_name = "path" if ref.path is not None else "env"
            target = f"{field_name}:{ref.path or ref.env}"
            j = seen.setdefault(target, i)
            if j != i:
                problems.append(
                    ((i, field_name), f"already used by secrets[{j}]", ref.path or ref.env)
                )
        if problems:
            raise_at("secrets", problems)
        return refs or None

    @model_validator(mode="after")
    def _secrets_fit(self) -> Self:
        problems: list[tuple[Loc, str, Any]] = []
        mounts = {v.mount_path for v in self.volumes}
        for i, ref in enumerate(self.secrets or []):
            if ref.path is not None and ref.path in mounts:
                problems.append(
                    ((i, "path"), "is also a volume's mountPath; use another path", ref.path)
                )
            if ref.env is not None and not self.command:
                # The value must not reach Podman's container config (on disk): a wrapper reads
                # it from the tmpfs and execs the command, which therefore must be known.
                problems.append(
                    (
                        (i, "env"),
                        "an env secret needs spec.command (the entrypoint is wrapped to read "
                        "the value from a tmpfs)",
                        ref.env,
                    )
                )
            if ref.env is not None and ref.env in self.env:
                problems.append(((i, "env"), "is also set in spec.env", ref.env))
        if problems:
            raise_at("secrets", problems)
        return self

    # Issue 13 §4: each of these widens what the container may do to its host, so each needs
    # an operator-signed fleet policy (noderuntime.spec.policy). Not set and false are one
    # spelling, so specs written before these fields existed keep their hash.
    host_network: HostNamespace = Field(default=None, alias="hostNetwork")
    host_pid: HostNamespace = Field(default=None, alias="hostPID")
    host_ipc: HostNamespace = Field(default=None, alias="hostIPC")
    security_context: SecurityContext | None = Field(default=None, alias="securityContext")
    devices: Annotated[list[DeviceItem] | None, BeforeValidator(none_as_empty_list)] = None

    @field_validator("security_context")
    @classmethod
    def _default_context_is_unset(cls, value: SecurityContext | None) -> SecurityContext | None:
        return None if value == DEFAULT_SECURITY_CONTEXT else value

    @field_validator("devices")
    @classmethod
    def _no_devices_is_unset(cls, value: list[Device] | None) -> list[Device] | None:
        return value or None

    @model_validator(mode="after")
    def _non_root_needs_a_user(self) -> Self:
        context = self.security_context
        if context is not None and context.run_as_non_root and not is_non_root(self.user):
            # The image's own user is not known where the spec is checked (the operator's
            # machine, before any pull), so the user must be named here.
            raise_at(
                "WorkloadSpec",
                [
                    (
                        ("securityContext", "runAsNonRoot"),
                        "needs user set to a UID other than 0 (or a name other than root)",
                        True,
                    )
                ],
            )
        return self

    @field_validator("command", "args")
    @classmethod
    def _empty_is_unset(cls, value: list[str] | None) -> list[str] | None:
        # The runtime treats an empty command like none; one spelling keeps the hash stable.
        return value or None

    @field_validator("resources")
    @classmethod
    def _empty_resources_is_unset(cls, value: Resources | None) -> Resources | None:
        if value is not None and value.cpus is None and value.memory_bytes is None:
            return None
        return value

    @field_validator("ports")
    @classmethod
    def _unique_host_ports(cls, ports: list[Port]) -> list[Port]:
        problems: list[tuple[Loc, str, Any]] = []
        for i, port in enumerate(ports):
            if port.host_port is None:
                continue
            for j, other in enumerate(ports[:i]):
                if (
                    other.host_port == port.host_port
                    and other.protocol == port.protocol
                    and _addresses_overlap(other.host_ip, port.host_ip)
                ):
                    problems.append(
                        (
                            (i, "hostPort"),
                            f"host port {port.host_port}/{port.protocol} is already "
                            f"published by ports[{j}]",
                            port.host_port,
                        )
                    )
                    break
        if problems:
            raise_at("ports", problems)
        return ports

    @field_validator("volumes")
    @classmethod
    def _unique_mount_paths(cls, volumes: list[Volume]) -> list[Volume]:
        first: dict[str, int] = {}
        first_named: dict[str, int] = {}
        problems: list[tuple[Loc, str, Any]] = []
        for i, volume in enumerate(volumes):
            j = first.setdefault(volume.mount_path, i)
            if j != i:
                problems.append(
                    (
                        (i, "mountPath"),
                        f"mount path {volume.mount_path!r} is already used by volumes[{j}]",
                        volume.mount_path,
                    )
                )
            if volume.name is None:
                continue
            j = first_named.setdefault(volume.name, i)
            if j != i:
                # Podman's create API takes each named volume once per container.
                problems.append(
                    (
                        (i, "name"),
                        f"volume {volume.name!r} is already mounted by volumes[{j}]; "
                        "a named volume can be mounted once per container",
                        volume.name,
                    )
                )
        if problems:
            raise_at("volumes", problems)
        return volumes


def is_root_user(user: str | None) -> bool:
    """True for a user that is explicitly root: ``0``, ``root``, ``0:GID``, ``root:GROUP``."""
    return user is not None and user.partition(":")[0] in ("0", "root")


def is_non_root(user: str | None) -> bool:
    return user is not None and not is_root_user(user)


def _addresses_overlap(a: str, b: str) -> bool:
    # A wildcard bind holds the port on every address, so it clashes with any other bind.
    return a == b or a in _WILDCARD_IPS or b in _WILDCARD_IPS


class Workload(_Model):
    """One workload document: ``apiVersion``, ``kind``, ``metadata`` and ``spec``."""

    api_version: ApiVersion = Field(default=API_VERSION, alias="apiVersion")
    kind: Kind = KIND
    metadata: Metadata
    spec: WorkloadSpec


def canonical_dict(workload: Workload) -> dict[str, Any]:
    """The stored form: JSON types, wire names, every default written out.

    Optional fields that are not set are left out rather than written as null, so adding an
    optional field to the schema later changes neither stored specs nor their hashes.
    """
    return workload.model_dump(mode="json", by_alias=True, exclude_none=True)


def spec_hash(workload: Workload) -> str:
    """Identifies what the container is built from: the spec plus the labels, not the name."""
    canonical = canonical_dict(workload)
    # Placement says where instances run, not what they are: changing replicas must not restart
    # the instances already running.
    spec = {k: v for k, v in canonical["spec"].items() if k != "placement"}
    payload = {"labels": canonical["metadata"]["labels"], "spec": spec}
    encoded = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(encoded).hexdigest()[:SPEC_HASH_CHARS]


def json_schema() -> dict[str, Any]:
    """JSON Schema of a workload document (wire names), for docs, editors and tools."""
    return Workload.model_json_schema(by_alias=True)
