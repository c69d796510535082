"""Workload specs: the YAML users write, validated into frozen models.

A workload file holds one or more ``---``-separated documents::

    apiVersion: noderuntime/v1
    kind: Workload
    metadata: {name: web, labels: {tier: edge}}
    spec:
      image: localhost/busybox:1
      command: ["httpd", "-f", "-p", "8080"]
      env: {GREETING: hello}
      restartPolicy: always

Field names on the wire (YAML, stored JSON, the control API) are camelCase; Python attributes are
snake_case. ``docs/workload-spec.md`` is the user-facing reference of every field.

The rest of the system uses only the functions at the bottom of this module:
:func:`parse_workloads` (YAML from a user, problems reported by field path *and* line),
:func:`workload_from_dict` (canonical JSON from the store or the API), :func:`canonical_dict`,
:func:`spec_hash`, :func:`to_container_spec`, :func:`to_probe_spec` and :func:`json_schema`.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import hashlib
import ipaddress
import json
import math
import posixpath
import re
import types
import typing
from collections.abc import Callable, Mapping
from decimal import ROUND_CEILING, Decimal, InvalidOperation
from typing import Annotated, Any, Final, Literal, NoReturn, Self

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from noderuntime.errors import FieldProblem, SpecError
from noderuntime.runtime.base import (
    LABEL_MANAGED,
    LABEL_NODE,
    LABEL_SPEC_HASH,
    LABEL_WORKLOAD,
    ContainerSpec,
    PortMapping,
    ProbeKind,
    ProbeSpec,
    VolumeMount,
)

API_VERSION: Final = "noderuntime/v1"
KIND: Final = "Workload"

DEFAULT_STOP_TIMEOUT_S = 10
MAX_STOP_TIMEOUT_S = 3600
DEFAULT_PROBE_INTERVAL_S = 10.0
DEFAULT_PROBE_TIMEOUT_S = 3.0
DEFAULT_PROBE_RETRIES = 3
# Probes run inside the daemon on small edge boxes: a sub-second interval from a fleet spec
# would turn the health checker into a busy loop.
MIN_PROBE_INTERVAL_S = 1.0
# Podman refuses smaller memory limits ("minimum memory limit allowed is 6MB").
MIN_MEMORY_BYTES = 6 * 1024 * 1024
# User labels may not pose as the labels the runtime uses to find its own containers.
RESERVED_LABEL_PREFIX = "io.noderuntime."
SPEC_HASH_CHARS = 16
# A few nested aliases expand to billions of nodes, and an alias inside its own anchor nests
# forever; refuse such documents before anything walks them.
MAX_YAML_NODES = 100_000
MAX_YAML_DEPTH = 32

# Pseudo field names for problems that belong to no single field.
SYNTAX_FIELD = "(syntax)"
DOCUMENT_FIELD = "(document)"

_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_NAME_RE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_DNS_SUBDOMAIN_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_VOLUME_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_DURATION_PART_RE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|s|m|h)")
_PLAIN_NUMBER_RE = re.compile(r"^(\d+(?:\.\d*)?|\.\d+)$")
_MEMORY_RE = re.compile(r"^(\d+(?:\.\d*)?|\.\d+)([A-Za-z]*)$")
_PATH_IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")

_DURATION_UNITS_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
# Kubernetes quantity suffixes: decimal (k, M, G...) and binary (Ki, Mi, Gi...).
_MEMORY_UNITS = {
    "": 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "E": 10**18,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
}
_WILDCARD_IPS = frozenset({"", "0.0.0.0", "::"})

# A location in a document: keys and list indexes, as pydantic and the YAML tree spell them.
Loc = tuple[str | int, ...]


# --- scalar validators ----------------------------------------------------------------------
#
# Each raises PydanticCustomError with a complete, human message; pydantic attaches the location.


def _fail(kind: str, message: str) -> NoReturn:
    raise PydanticCustomError(kind, message)


def _describe(value: Any) -> str:
    """How a value reads to someone who wrote YAML or JSON."""
    if value is None:
        return "null (no value)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, str):
        text = value if len(value) <= 60 else value[:57] + "..."
        return repr(text)
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _format_seconds(seconds: float) -> str:
    return f"{seconds:g}s"


def _text(value: Any) -> Any:
    """Accept numbers where text is expected; refuse YAML's booleans and nulls.

    ``PORT: 8080`` means the text "8080" to everyone who writes it. ``DEBUG: yes`` and
    ``FOO:`` almost never mean the boolean or null that YAML reads, so they need quotes.
    """
    if isinstance(value, bool):
        word = "true" if value else "false"
        raise PydanticCustomError(
            "text_boolean",
            f'{word} is read as a boolean, not text; quote it: "{word}"',
            {"word": word},
        )
    if value is None:
        _fail("text_null", 'has no value (null); quote it, e.g. "" for an empty string')
    if isinstance(value, int | float):
        return str(value)
    return value


def _no_bool(value: Any) -> Any:
    # pydantic's lax mode reads true as 1; for a port or a count that is always a mistake.
    if isinstance(value, bool):
        _fail("number_type", f"expected a number, got {_describe(value)}")
    return value


def _none_as_empty_dict(value: Any) -> Any:
    # `env:` with every entry commented out is null in YAML; it means "none".
    return {} if value is None else value


def _none_as_empty_list(value: Any) -> Any:
    return [] if value is None else value


def _check_name(value: str) -> str:
    if len(value) > 63 or not _NAME_RE.match(value):
        _fail(
            "name",
            f"invalid name {value!r}: use 1-63 lowercase letters, digits and '-', "
            "starting and ending with a letter or digit",
        )
    return value


def _check_label_key(key: str) -> str:
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or len(prefix) > 253 or not _DNS_SUBDOMAIN_RE.match(prefix)):
        _fail(
            "label_key",
            f"invalid label key {key!r}: the prefix before '/' must be a DNS subdomain "
            "(lowercase letters, digits, '-' and '.'; at most 253 characters)",
        )
    if not name or len(name) > 63 or not _LABEL_NAME_RE.match(name):
        _fail(
            "label_key",
            f"invalid label key {key!r}: use 1-63 letters, digits, '-', '_' and '.', "
            "starting and ending with a letter or digit, optionally after a 'prefix/'",
        )
    return key


def _check_user_label_key(key: str) -> str:
    _check_label_key(key)
    if key.lower().startswith(RESERVED_LABEL_PREFIX):
        _fail(
            "label_reserved",
            f"label key {key!r} uses the reserved prefix {RESERVED_LABEL_PREFIX!r}; "
            "noderuntime sets those labels itself",
        )
    return key


def _check_label_value(value: str) -> str:
    if value and (len(value) > 63 or not _LABEL_NAME_RE.match(value)):
        _fail(
            "label_value",
            f"invalid label value {value!r}: use at most 63 letters, digits, '-', '_' and '.', "
            "starting and ending with a letter or digit (or leave it empty)",
        )
    return value


def _check_env_name(key: str) -> str:
    if not _ENV_NAME_RE.match(key):
        _fail(
            "env_name",
            f"invalid environment variable name {key!r}: use letters, digits and '_', "
            "not starting with a digit",
        )
    return key


def _check_image(value: str) -> str:
    if not value:
        _fail("image", "must not be empty; name an image such as localhost/busybox:1")
    if any(c.isspace() for c in value):
        _fail("image", f"invalid image {value!r}: an image reference contains no whitespace")
    return value


def _check_absolute_path(value: str) -> str:
    if not value.startswith("/") or "\0" in value:
        _fail("path", f"must be an absolute path (starting with '/'), got {value!r}")
    # Normalised so "/data/" and "/data" are the same mount and hash the same.
    return posixpath.normpath(value)


def _check_volume_name(value: str) -> str:
    if not _VOLUME_NAME_RE.match(value):
        _fail(
            "volume_name",
            f"invalid volume name {value!r}: use letters, digits, '_', '.' and '-', "
            "starting with a letter or digit",
        )
    return value


def _check_user(value: str) -> str:
    if not value or any(c.isspace() for c in value) or value.count(":") > 1:
        _fail("user", f"invalid user {value!r}: write USER, UID, USER:GROUP or UID:GID")
    return value


def _check_ip(value: str) -> str:
    if not value:
        return value
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        _fail("ip", f"invalid IP address {value!r}: write e.g. 127.0.0.1 or ::1, or leave it out")


def _check_http_path(value: str) -> str:
    if not value.startswith("/"):
        _fail("http_path", f"must start with '/', got {value!r}")
    return value


def _restart_policy_spelling(value: Any) -> Any:
    # Kubernetes users write Always/OnFailure/Never; the stored value stays the literal one.
    if isinstance(value, str):
        folded = value.strip().lower().replace("_", "-")
        return "on-failure" if folded == "onfailure" else folded
    return value


def _parse_duration(value: Any) -> float:
    accepted = "write seconds as a number, or a duration such as 500ms, 10s, 1m, 1h or 1m30s"
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        _fail("duration", f"expected a duration, got {_describe(value)}; {accepted}")
    if isinstance(value, str):
        text = value.strip()
        if _PLAIN_NUMBER_RE.match(text):
            seconds = float(text)
        else:
            parts = list(_DURATION_PART_RE.finditer(text))
            if not parts or "".join(p.group(0) for p in parts) != text:
                _fail("duration", f"invalid duration {value!r}; {accepted}")
            seconds = sum(float(p.group(1)) * _DURATION_UNITS_S[p.group(2)] for p in parts)
    else:
        seconds = float(value)
    if not math.isfinite(seconds) or seconds < 0:
        _fail("duration", f"invalid duration {value!r}: must be zero or more seconds")
    return seconds


def _at_least_s(minimum_s: float) -> Callable[[float], float]:
    def check(seconds: float) -> float:
        if seconds < minimum_s:
            _fail(
                "duration_min",
                f"must be at least {_format_seconds(minimum_s)}, got {_format_seconds(seconds)}",
            )
        return seconds

    return check


def _positive_s(seconds: float) -> float:
    if seconds <= 0:
        _fail("duration_min", "must be longer than 0s")
    return seconds


def _parse_memory(value: Any) -> int:
    accepted = (
        "write bytes, or a quantity such as 256Mi or 1Gi (powers of 1024) "
        "or 512M or 100k (powers of 1000)"
    )
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        _fail("memory", f"expected a memory size, got {_describe(value)}; {accepted}")
    if isinstance(value, str):
        match = _MEMORY_RE.match(value.strip())
        if not match:
            _fail("memory", f"invalid memory size {value!r}; {accepted}")
        number, suffix = match.groups()
        if suffix not in _MEMORY_UNITS:
            hint = ""
            if suffix.lower() in {"m", "g", "b", "kb", "mb", "gb"}:
                # Podman reads 512m as mebibytes, Kubernetes as milli-bytes: refuse to guess.
                hint = f" ({suffix!r} means different things to Podman and Kubernetes)"
            _fail("memory", f"invalid memory size {value!r}{hint}; {accepted}")
        try:
            exact = Decimal(number) * _MEMORY_UNITS[suffix]
        except InvalidOperation:
            _fail("memory", f"invalid memory size {value!r}; {accepted}")
        size = int(exact.to_integral_value(rounding=ROUND_CEILING))
    elif isinstance(value, float):
        if not value.is_integer():
            _fail("memory", f"invalid memory size {value!r}: bytes must be a whole number")
        size = int(value)
    else:
        size = value
    if size < MIN_MEMORY_BYTES:
        _fail(
            "memory_min",
            f"must be at least 6Mi ({MIN_MEMORY_BYTES} bytes), Podman's minimum; got {size} bytes",
        )
    return size


def _api_version(value: Any) -> Any:
    if value != API_VERSION:
        _fail("api_version", f"unsupported apiVersion {_describe(value)}; use {API_VERSION}")
    return value


def _kind(value: Any) -> Any:
    if value != KIND:
        _fail("kind", f"unsupported kind {_describe(value)}; use {KIND}")
    return value


def _raise_at(title: str, problems: list[tuple[Loc, str, Any]]) -> NoReturn:
    """Raise problems found across fields, each at its own location under the current one."""
    raise ValidationError.from_exception_data(
        title,
        [
            InitErrorDetails(type=PydanticCustomError("invalid", message), loc=loc, input=value)
            for loc, message, value in problems
        ],
    )


# --- annotated types --------------------------------------------------------------------------

Text = Annotated[str, BeforeValidator(_text, json_schema_input_type=str | int | float)]
Name = Annotated[str, BeforeValidator(_text), AfterValidator(_check_name)]
LabelKey = Annotated[str, AfterValidator(_check_label_key)]
UserLabelKey = Annotated[str, AfterValidator(_check_user_label_key)]
LabelValue = Annotated[
    str,
    BeforeValidator(_text, json_schema_input_type=str | int | float),
    AfterValidator(_check_label_value),
]
EnvName = Annotated[str, AfterValidator(_check_env_name)]
AbsolutePath = Annotated[str, AfterValidator(_check_absolute_path)]
PortNumber = Annotated[int, Field(ge=1, le=65535), BeforeValidator(_no_bool)]
Duration = Annotated[
    float, BeforeValidator(_parse_duration, json_schema_input_type=float | int | str)
]
MemoryBytes = Annotated[int, BeforeValidator(_parse_memory, json_schema_input_type=int | str)]


class _Model(BaseModel):
    model_config = ConfigDict(
        frozen=True, extra="forbid", populate_by_name=True, allow_inf_nan=False
    )


# --- models ---------------------------------------------------------------------------------


class RestartPolicy(enum.Enum):
    """What happens when the container exits. Persisted: never change the values."""

    ALWAYS = "always"
    ON_FAILURE = "on-failure"
    NEVER = "never"


class Metadata(_Model):
    """Identity of a workload. The name is unique in the fleet."""

    name: Name = Field(description="DNS label: 1-63 of a-z, 0-9 and '-'")
    labels: Annotated[dict[UserLabelKey, LabelValue], BeforeValidator(_none_as_empty_dict)] = Field(
        default_factory=dict, description="copied onto the container"
    )


def _port_short_form(value: Any) -> Any:
    """Read compose's "[[IP:]HOST:]CONTAINER[/PROTOCOL]" form into the object form."""
    if isinstance(value, bool):
        _fail("port", f"expected a port, got {_describe(value)}")
    if isinstance(value, int):
        return {"containerPort": value}
    if not isinstance(value, str):
        return value
    usage = (
        f"invalid port {value!r}: write CONTAINER, HOST:CONTAINER or IP:HOST:CONTAINER, "
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
            _fail("port", usage)
    else:
        parts = text.split(":")
        if len(parts) > 3:
            _fail("port", usage + "; put an IPv6 address in brackets: [::1]:8080:80")
    if any("-" in p for p in parts[-2:]):
        _fail("port", f"invalid port {value!r}: port ranges are not supported; list each port")
    *front, container = parts
    if not container.isdigit():
        _fail("port", usage)
    out["containerPort"] = int(container)
    if front:
        host = front[-1]
        if host and not host.isdigit():
            _fail("port", usage)
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
    host_ip: Annotated[str, AfterValidator(_check_ip)] = Field(
        default="", alias="hostIP", description="address to bind on the host; empty: all"
    )


PortItem = Annotated[
    Port, BeforeValidator(_port_short_form, json_schema_input_type=Port | str | int)
]


class Volume(_Model):
    """A named Podman volume or a host directory, mounted into the container."""

    mount_path: AbsolutePath = Field(alias="mountPath")
    name: Annotated[str, AfterValidator(_check_volume_name)] | None = Field(
        default=None, description="named volume (created if missing)"
    )
    host_path: AbsolutePath | None = Field(
        default=None, alias="hostPath", description="bind-mount this host path"
    )
    read_only: bool = Field(default=False, alias="readOnly")

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if (self.name is None) == (self.host_path is None):
            _fail(
                "volume_source",
                "set exactly one of name (a named volume) or hostPath (a host directory)",
            )
        if self.mount_path == "/":
            _raise_at("Volume", [(("mountPath",), "cannot mount over '/'", self.mount_path)])
        return self


class ExecProbe(_Model):
    command: Annotated[list[Text], Field(min_length=1)]


class HttpProbe(_Model):
    port: PortNumber
    path: Annotated[str, AfterValidator(_check_http_path)] = "/"
    scheme: Literal["http", "https"] = "http"


class TcpProbe(_Model):
    port: PortNumber


class HealthCheck(_Model):
    """A probe noderuntime runs against the container; exactly one of exec, http, tcp."""

    exec: ExecProbe | None = None
    http: HttpProbe | None = None
    tcp: TcpProbe | None = None
    interval_s: Annotated[Duration, AfterValidator(_at_least_s(MIN_PROBE_INTERVAL_S))] = Field(
        default=DEFAULT_PROBE_INTERVAL_S, alias="interval"
    )
    timeout_s: Annotated[Duration, AfterValidator(_positive_s)] = Field(
        default=DEFAULT_PROBE_TIMEOUT_S, alias="timeout", description="at most interval"
    )
    retries: Annotated[int, Field(ge=1), BeforeValidator(_no_bool)] = Field(
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
                    f"must be at most the interval ({_format_seconds(self.interval_s)}), "
                    f"got {_format_seconds(self.timeout_s)}",
                    self.timeout_s,
                )
            )
        if problems:
            _raise_at("HealthCheck", problems)
        return self


class Resources(_Model):
    """Limits Podman enforces on the container."""

    cpus: Annotated[float, Field(gt=0), BeforeValidator(_no_bool)] | None = Field(
        default=None, description="CPU cores, e.g. 0.5"
    )
    memory_bytes: MemoryBytes | None = Field(
        default=None, alias="memory", description="bytes, or a quantity like 256Mi, 1Gi, 512M"
    )


class WorkloadSpec(_Model):
    """What to run and how; every field but image has a default."""

    image: Annotated[str, AfterValidator(_check_image)]
    command: list[Text] | None = Field(default=None, description="replaces the image ENTRYPOINT")
    args: list[Text] | None = Field(default=None, description="replaces the image CMD")
    env: Annotated[dict[EnvName, Text], BeforeValidator(_none_as_empty_dict)] = Field(
        default_factory=dict
    )
    ports: Annotated[list[PortItem], BeforeValidator(_none_as_empty_list)] = Field(
        default_factory=list
    )
    volumes: Annotated[list[Volume], BeforeValidator(_none_as_empty_list)] = Field(
        default_factory=list
    )
    restart_policy: Annotated[RestartPolicy, BeforeValidator(_restart_policy_spelling)] = Field(
        default=RestartPolicy.ALWAYS, alias="restartPolicy"
    )
    health_check: HealthCheck | None = Field(default=None, alias="healthCheck")
    resources: Resources | None = None
    node_selector: Annotated[dict[LabelKey, LabelValue], BeforeValidator(_none_as_empty_dict)] = (
        Field(
            default_factory=dict,
            alias="nodeSelector",
            description="run only on nodes that have all these labels",
        )
    )
    working_dir: AbsolutePath | None = Field(default=None, alias="workingDir")
    user: Annotated[str, BeforeValidator(_text), AfterValidator(_check_user)] | None = None
    stop_timeout_s: Annotated[
        int, Field(ge=0, le=MAX_STOP_TIMEOUT_S), BeforeValidator(_no_bool)
    ] = Field(
        default=DEFAULT_STOP_TIMEOUT_S,
        alias="stopTimeoutSeconds",
        description="seconds between SIGTERM and SIGKILL",
    )

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
            _raise_at("ports", problems)
        return ports

    @field_validator("volumes")
    @classmethod
    def _unique_mount_paths(cls, volumes: list[Volume]) -> list[Volume]:
        first: dict[str, int] = {}
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
        if problems:
            _raise_at("volumes", problems)
        return volumes


def _addresses_overlap(a: str, b: str) -> bool:
    # A wildcard bind holds the port on every address, so it clashes with any other bind.
    return a == b or a in _WILDCARD_IPS or b in _WILDCARD_IPS


class Workload(_Model):
    """One workload document: ``apiVersion``, ``kind``, ``metadata`` and ``spec``."""

    api_version: Annotated[Literal["noderuntime/v1"], BeforeValidator(_api_version)] = Field(
        default=API_VERSION, alias="apiVersion"
    )
    kind: Annotated[Literal["Workload"], BeforeValidator(_kind)] = KIND
    metadata: Metadata
    spec: WorkloadSpec


# libyaml's parser is ~10x faster than PyYAML's pure-Python one (YAML parsing was most of an
# apply's cost); both produce the same nodes with the same marks.
_YAML_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


# --- public functions -----------------------------------------------------------------------


def parse_workloads(text: str, source: str | None = None) -> list[Workload]:
    """Every workload in a YAML file of one or more documents, or SpecError naming all problems.

    All or nothing: one bad document fails the file. ``source`` (a file name) only labels
    the problems.
    """
    problems: list[FieldProblem] = []
    nodes: list[Node] = []
    try:
        nodes.extend(yaml.compose_all(text, Loader=_YAML_LOADER))
    except yaml.YAMLError as exc:
        problems.append(_syntax_problem(exc, text, document=len(nodes)))

    workloads: list[tuple[int, Workload, _Index]] = []
    for index, node in enumerate(nodes):
        if _is_empty_document(node):
            continue  # a stray or trailing `---`
        workload, node_index = _load_document(node, index, problems)
        if workload is not None:
            workloads.append((index, workload, node_index))

    if not problems and not workloads:
        problems.append(
            FieldProblem(
                DOCUMENT_FIELD,
                "no workload in the input; expected a document with apiVersion, kind, "
                "metadata and spec",
            )
        )

    first: dict[str, int] = {}
    for index, workload, node_index in workloads:
        name = workload.metadata.name
        if name in first:
            problems.append(
                FieldProblem(
                    "metadata.name",
                    f"workload {name!r} is already defined in document {first[name] + 1} "
                    "of this file; each name may appear once",
                    _line_for(("metadata", "name"), node_index.lines),
                    index,
                )
            )
        else:
            first[name] = index

    if problems:
        problems.sort(key=lambda p: (p.document or 0, p.line or 0))
        raise SpecError(problems, source)
    return [w for _, w, _ in workloads]


def workload_from_dict(data: Mapping[str, Any]) -> Workload:
    """A workload from JSON-like data (the stored canonical form, the API); SpecError if invalid."""
    if not isinstance(data, Mapping):
        raise SpecError(
            [FieldProblem(DOCUMENT_FIELD, f"expected a mapping, got {_describe(data)}")]
        )
    workload, found = _validate(data)
    if workload is None:
        raise SpecError([FieldProblem(p.field, p.message) for p in found])
    return workload


def canonical_dict(workload: Workload) -> dict[str, Any]:
    """The stored form: JSON types, wire names, every default written out.

    Optional fields that are not set are left out rather than written as null, so adding an
    optional field to the schema later changes neither stored specs nor their hashes.
    """
    return workload.model_dump(mode="json", by_alias=True, exclude_none=True)


def spec_hash(workload: Workload) -> str:
    """Identifies what the container is built from: the spec plus the labels, not the name."""
    canonical = canonical_dict(workload)
    payload = {"labels": canonical["metadata"]["labels"], "spec": canonical["spec"]}
    encoded = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(encoded).hexdigest()[:SPEC_HASH_CHARS]


def to_container_spec(workload: Workload, *, node_id: str, container_name: str) -> ContainerSpec:
    """The container the runtime creates for ``workload`` on node ``node_id``."""
    spec = workload.spec
    labels = dict(workload.metadata.labels)
    # Validation already refuses user labels under the reserved prefix; these still go last.
    labels.update(
        {
            LABEL_MANAGED: "true",
            LABEL_NODE: node_id,
            LABEL_WORKLOAD: workload.metadata.name,
            LABEL_SPEC_HASH: spec_hash(workload),
        }
    )
    ports = sorted(
        (
            PortMapping(
                container_port=p.container_port,
                host_port=p.host_port,
                protocol=p.protocol,
                host_ip=p.host_ip,
            )
            for p in spec.ports
        ),
        key=lambda p: (p.container_port, p.protocol, p.host_ip, p.host_port or 0),
    )
    volumes = sorted(
        (
            VolumeMount(
                target=v.mount_path,
                source=v.name if v.name is not None else (v.host_path or ""),
                kind="volume" if v.name is not None else "bind",
                read_only=v.read_only,
            )
            for v in spec.volumes
        ),
        key=lambda v: v.target,
    )
    resources = spec.resources
    return ContainerSpec(
        name=container_name,
        image=spec.image,
        command=tuple(spec.command or ()),
        args=tuple(spec.args or ()),
        env=tuple(sorted(spec.env.items())),
        ports=tuple(ports),
        volumes=tuple(volumes),
        labels=tuple(sorted(labels.items())),
        cpus=resources.cpus if resources else None,
        memory_bytes=resources.memory_bytes if resources else None,
        working_dir=spec.working_dir,
        user=spec.user,
        stop_timeout_s=spec.stop_timeout_s,
    )


def to_probe_spec(workload: Workload) -> ProbeSpec | None:
    """The health probe noderuntime runs for ``workload``; None if it has no health check."""
    check = workload.spec.health_check
    if check is None:
        return None
    timing: dict[str, Any] = {
        "interval_s": check.interval_s,
        "timeout_s": check.timeout_s,
        "retries": check.retries,
        "start_period_s": check.start_period_s,
    }
    if check.exec is not None:
        return ProbeSpec(kind=ProbeKind.EXEC, command=tuple(check.exec.command), **timing)
    if check.http is not None:
        return ProbeSpec(
            kind=ProbeKind.HTTP,
            port=check.http.port,
            path=check.http.path,
            scheme=check.http.scheme,
            **timing,
        )
    if check.tcp is not None:
        return ProbeSpec(kind=ProbeKind.TCP, port=check.tcp.port, **timing)
    raise AssertionError("HealthCheck validation guarantees exactly one probe")


def json_schema() -> dict[str, Any]:
    """JSON Schema of a workload document (wire names), for docs, editors and tools."""
    return Workload.model_json_schema(by_alias=True)


# --- validation and error mapping -----------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Found:
    """One problem before it is placed in a file: the raw location and what to say."""

    loc: Loc  # as the input spelled it (for finding the line)
    field: str  # dotted wire path shown to the user
    message: str


def _validate(
    data: Mapping[str, Any], raw: Mapping[Loc, str] | None = None
) -> tuple[Workload | None, list[_Found]]:
    found: list[_Found] = []
    # Required in documents (not in Python) so a future v2 can never misread a v1 file.
    for key, python_name, example in (
        ("apiVersion", "api_version", API_VERSION),
        ("kind", "kind", KIND),
    ):
        if key not in data and python_name not in data:
            found.append(
                _Found((key,), key, f"missing required field {key!r}; add {key}: {example}")
            )
    try:
        workload = Workload.model_validate(data)
    except ValidationError as exc:
        found.extend(_from_validation_error(exc, raw or {}))
        return None, found
    return (None if found else workload), found


def _from_validation_error(exc: ValidationError, raw: Mapping[Loc, str]) -> list[_Found]:
    out = []
    for error in exc.errors(include_url=False):
        loc: Loc = tuple(error["loc"])
        is_key = bool(loc) and loc[-1] == "[key]"
        if is_key:
            loc = loc[:-1]
        wire, parent = _wire_path(loc)
        message = _message(error, loc, wire, parent, raw)
        if is_key and not error["type"].startswith(("label", "env")):
            message = f"invalid key: {message}"
        out.append(_Found(loc, _format_path(wire), message))
    return out


def _unwrap(annotation: Any) -> Any:
    """The model, list or dict type under Annotated[...] and Optional[...]."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            members = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(members) != 1:
                return annotation
            annotation = members[0]
        else:
            return annotation


def _wire_path(loc: Loc) -> tuple[list[str | int], type[BaseModel] | None]:
    """``loc`` with wire (alias) names, and the model holding its last element (if any)."""
    wire: list[str | int] = []
    current: Any = Workload
    parent: type[BaseModel] | None = None
    for element in loc:
        current = _unwrap(current)
        parent = None
        if isinstance(current, type) and issubclass(current, BaseModel):
            parent = current
            for name, info in current.model_fields.items():
                if element in (name, info.alias):
                    wire.append(info.alias or name)
                    current = info.annotation
                    break
            else:
                wire.append(element)
                current = None
        elif typing.get_origin(current) is list:
            wire.append(element)
            current = typing.get_args(current)[0]
        elif typing.get_origin(current) is dict:
            wire.append(element)
            current = typing.get_args(current)[1]
        else:
            wire.append(element)
            current = None
    return wire, parent


def _format_path(parts: list[str | int]) -> str:
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _PATH_IDENT_RE.match(part):
            out += f".{part}" if out else part
        else:
            out += f"[{json.dumps(part)}]"
    return out


def _wire_fields(model: type[BaseModel]) -> list[str]:
    return [info.alias or name for name, info in model.model_fields.items()]


def _unknown_field_message(name: str, model: type[BaseModel] | None) -> str:
    message = f"unknown field {name!r}"
    if model is None:
        return message
    allowed = _wire_fields(model)
    by_lower = {a.lower(): a for a in allowed}
    close = difflib.get_close_matches(name.lower(), list(by_lower), n=1, cutoff=0.6)
    if close:
        message += f" (did you mean {by_lower[close[0]]!r}?)"
    elif model is Workload and name in _wire_fields(WorkloadSpec):
        message += " (it belongs under spec)"
    return f"{message}; allowed fields: {', '.join(allowed)}"


def _message(
    error: Mapping[str, Any],
    loc: Loc,
    wire: list[str | int],
    parent: type[BaseModel] | None,
    raw: Mapping[Loc, str],
) -> str:
    kind: str = error["type"]
    ctx: Mapping[str, Any] = error.get("ctx") or {}
    value = error.get("input")
    got = _describe(value)
    last = str(wire[-1]) if wire else ""
    if kind == "missing":
        return f"missing required field {last!r}"
    if kind == "extra_forbidden":
        return _unknown_field_message(str(loc[-1]), parent)
    if kind == "text_boolean":
        word = raw.get(loc, ctx.get("word", "true"))
        return f'{word} is read as a boolean, not text; quote it: "{word}"'
    if kind == "string_type":
        return f"expected text, got {got}"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"expected a whole number, got {got}"
    if kind in ("float_type", "float_parsing"):
        return f"expected a number, got {got}"
    if kind == "finite_number":
        return "must be a finite number"
    if kind in ("bool_type", "bool_parsing"):
        return f"expected true or false, got {got}"
    if kind == "list_type":
        return f"expected a list, got {got}"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"expected a mapping of key: value pairs, got {got}"
    if kind in ("enum", "literal_error"):
        return f"must be {ctx.get('expected', 'one of the allowed values')}, got {got}"
    if kind == "greater_than_equal":
        return f"must be at least {ctx['ge']}, got {got}"
    if kind == "greater_than":
        return f"must be greater than {ctx['gt']}, got {got}"
    if kind == "less_than_equal":
        return f"must be at most {ctx['le']}, got {got}"
    if kind == "less_than":
        return f"must be less than {ctx['lt']}, got {got}"
    if kind in ("too_short", "string_too_short"):
        return "must not be empty"
    if kind == "value_error":
        return str(error["msg"]).removeprefix("Value error, ")
    return str(error["msg"])


# --- YAML: documents, lines, duplicate keys -------------------------------------------------

_MERGE_TAG = "tag:yaml.org,2002:merge"
_STR_TAG = "tag:yaml.org,2002:str"
_NULL_TAG = "tag:yaml.org,2002:null"
_NUMBER_TAGS = frozenset({"tag:yaml.org,2002:int", "tag:yaml.org,2002:float"})

# Where a YAML number is read as the text the user typed ("*" any key, "#" any index):
# `VERSION: 1.10` stays "1.10", and an unquoted port like `22:22`, which YAML 1.1 reads
# as the base-60 number 1342, stays "22:22".
_TEXT_POSITIONS: tuple[tuple[str, ...], ...] = (
    ("metadata", "name"),
    ("metadata", "labels", "*"),
    ("spec", "command", "#"),
    ("spec", "args", "#"),
    ("spec", "env", "*"),
    ("spec", "ports", "#"),
    ("spec", "nodeSelector", "*"),
    ("spec", "user"),
    ("spec", "healthCheck", "exec", "command", "#"),
)
_PYTHON_TO_WIRE = {"node_selector": "nodeSelector", "health_check": "healthCheck"}


def _is_text_position(path: Loc) -> bool:
    for pattern in _TEXT_POSITIONS:
        if len(pattern) == len(path) and all(
            (p == "#" and isinstance(e, int))
            or (p == "*" and isinstance(e, str))
            or p == _PYTHON_TO_WIRE.get(str(e), e)
            for p, e in zip(pattern, path, strict=True)
        ):
            return True
    return False


def _is_empty_document(node: Node) -> bool:
    return isinstance(node, ScalarNode) and node.tag == _NULL_TAG


@dataclasses.dataclass
class _Index:
    """What the node tree says about one document, keyed by path as the YAML spells it."""

    lines: dict[Loc, int] = dataclasses.field(default_factory=dict)
    raw: dict[Loc, str] = dataclasses.field(default_factory=dict)
    duplicates: list[tuple[Loc, int, int]] = dataclasses.field(default_factory=list)
    too_large: bool = False


def _mapping_entries(node: MappingNode, depth: int = 0) -> list[tuple[Node, Node, bool]]:
    """(key, value, explicit) pairs, with `<<: *anchor` merges flattened in after."""
    explicit = [(k, v, True) for k, v in node.value if k.tag != _MERGE_TAG]
    merged: list[tuple[Node, Node, bool]] = []
    if depth < 16:
        for key, value in node.value:
            if key.tag != _MERGE_TAG:
                continue
            sources = value.value if isinstance(value, SequenceNode) else [value]
            for source in sources:
                if isinstance(source, MappingNode):
                    merged += [(k, v, False) for k, v, _ in _mapping_entries(source, depth + 1)]
    return explicit + merged


def _index(root: Node) -> _Index:
    index = _Index()
    index.lines[()] = root.start_mark.line + 1
    checked: set[int] = set()  # mappings reached again through an alias are checked once
    stack: list[tuple[Node, Loc]] = [(root, ())]
    visited = 0
    while stack:
        node, path = stack.pop()
        visited += 1
        if visited > MAX_YAML_NODES or len(path) > MAX_YAML_DEPTH:
            index.too_large = True
            return index
        if isinstance(node, MappingNode):
            check = id(node) not in checked
            checked.add(id(node))
            seen: dict[tuple[str, str], int] = {}
            for key, value, explicit in _mapping_entries(node):
                if not isinstance(key, ScalarNode):
                    continue  # complex keys: the constructor or validation reports them
                key_path = (*path, key.value)
                line = key.start_mark.line + 1
                if explicit:
                    ident = (key.tag, key.value)
                    if check and ident in seen:
                        index.duplicates.append((key_path, line, seen[ident]))
                    seen[ident] = line
                    index.lines[key_path] = line  # the last one wins, as in the loaded data
                else:
                    index.lines.setdefault(key_path, line)
                stack.append((value, key_path))
        elif isinstance(node, SequenceNode):
            for i, item in enumerate(node.value):
                index.lines[(*path, i)] = item.start_mark.line + 1
                stack.append((item, (*path, i)))
        elif isinstance(node, ScalarNode):
            index.raw[path] = node.value
            if node.tag in _NUMBER_TAGS and _is_text_position(path):
                node.tag = _STR_TAG
    return index


def _line_for(loc: Loc, lines: Mapping[Loc, int]) -> int | None:
    """The line of ``loc``, or of its nearest ancestor present in the file."""
    for end in range(len(loc), -1, -1):
        line = lines.get(loc[:end])
        if line is not None:
            return line
    return None


def _load_document(
    node: Node, document: int, problems: list[FieldProblem]
) -> tuple[Workload | None, _Index]:
    index = _index(node)
    if index.too_large:
        problems.append(
            FieldProblem(
                DOCUMENT_FIELD,
                f"document is too large once aliases are expanded (more than {MAX_YAML_NODES} "
                f"values or {MAX_YAML_DEPTH} levels deep); is an alias used inside its anchor?",
                node.start_mark.line + 1,
                document,
            )
        )
        return None, index
    for path, line, first_line in index.duplicates:
        wire, _ = _wire_path(path)
        problems.append(
            FieldProblem(
                _format_path(wire),
                f"duplicate key {path[-1]!r} (first at line {first_line}); "
                "YAML would silently keep only the last one, so remove one of them",
                line,
                document,
            )
        )
    if not isinstance(node, MappingNode):
        problems.append(
            FieldProblem(
                DOCUMENT_FIELD,
                "expected a mapping with apiVersion, kind, metadata and spec, got "
                + ("a list" if isinstance(node, SequenceNode) else repr(node.value)),
                node.start_mark.line + 1,
                document,
            )
        )
        return None, index
    try:
        data = yaml.constructor.SafeConstructor().construct_document(node)
    except yaml.YAMLError as exc:
        problems.append(_syntax_problem(exc, "", document))
        return None, index
    workload, found = _validate(data, index.raw)
    problems.extend(
        FieldProblem(f.field, f.message, _line_for(f.loc, index.lines), document) for f in found
    )
    return (None if index.duplicates else workload), index


def _syntax_problem(exc: yaml.YAMLError, text: str, document: int) -> FieldProblem:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        message = exc.problem or exc.context or "invalid YAML"
        if exc.context and exc.problem and exc.context_mark is not None:
            message += f" ({exc.context} at line {exc.context_mark.line + 1})"
        if "'\\t'" in message:
            message += "; indent with spaces, YAML does not allow tabs"
        elif "could not determine a constructor" in message:
            message += "; YAML tags are not supported here"
        elif "mapping values are not allowed" in message:
            message += "; quote values that contain ': ', or check the indentation"
        return FieldProblem(
            SYNTAX_FIELD, message, mark.line + 1 if mark is not None else None, document
        )
    if isinstance(exc, yaml.reader.ReaderError):
        line = text.count("\n", 0, exc.position) + 1
        char = exc.character if isinstance(exc.character, int) else ord(exc.character)
        return FieldProblem(
            SYNTAX_FIELD, f"unacceptable character #x{char:04x}: {exc.reason}", line, document
        )
    return FieldProblem(SYNTAX_FIELD, str(exc), None, document)


__all__ = [
    "API_VERSION",
    "KIND",
    "MIN_MEMORY_BYTES",
    "ExecProbe",
    "HealthCheck",
    "HttpProbe",
    "Metadata",
    "Port",
    "Resources",
    "RestartPolicy",
    "TcpProbe",
    "Volume",
    "Workload",
    "WorkloadSpec",
    "canonical_dict",
    "json_schema",
    "parse_workloads",
    "spec_hash",
    "to_container_spec",
    "to_probe_spec",
    "workload_from_dict",
]
