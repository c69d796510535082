"""Value types of a workload spec: constrained scalars, each with a complete, human message.

Each validator raises ``PydanticCustomError`` with the message the user reads; pydantic attaches
the location and :mod:`noderuntime.spec.messages` adds the field path and line.
"""

from __future__ import annotations

import ipaddress
import math
import posixpath
import re
from collections.abc import Callable
from decimal import ROUND_CEILING, Decimal, DecimalException
from typing import Annotated, Any, Final, Literal, NoReturn

from pydantic import AfterValidator, BeforeValidator, Field, ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

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

# Upper bounds: a spec that validates must be one the runtime can take (issue 9 §2: cpus 1e308
# validated, then every reconcile pass failed building the container). Bounds are the same on every
# node, since the operator validates without knowing the node.
# cgroups take a CPU quota above the host's CPU count (it just never binds), so a node with fewer
# CPUs runs such a workload with all of its own; 1024 keeps quota * period far inside int64.
MAX_CPUS = 1024
# Podman 4.3 sets swap to twice the memory limit in an int64 and refuses 2**62 and above;
# 1Ei is the largest round quantity below that.
MAX_MEMORY_BYTES = 2**60
MAX_MEMORY_TEXT = "1Ei"
# Probe timings: a day is already far beyond any useful probe, and keeps timers finite.
MAX_DURATION_S = 24 * 3600.0
# A site is a handful of devices; 64 instances of one workload is far beyond any of them.
MAX_PLACEMENT_REPLICAS = 64
MAX_PROBE_RETRIES = 1000
# User labels may not pose as the labels the runtime uses to find its own containers.
RESERVED_LABEL_PREFIX = "io.noderuntime."

# `\Z`, not `$` (which also matches before a final newline), and ASCII digits, not `\d`.
_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")
_LABEL_NAME_RE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?\Z")
_DNS_SUBDOMAIN_RE = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\Z"
)
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")
_VOLUME_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*\Z")
_DURATION_PART_RE = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(ms|s|m|h)")
_PLAIN_NUMBER_RE = re.compile(r"^([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\Z")
_MEMORY_RE = re.compile(r"^([0-9]+(?:\.[0-9]*)?|\.[0-9]+)([A-Za-z]*)\Z")
_HTTP_PATH_RE = re.compile(r"^[!-~]*\Z")
_CAPABILITY_RE = re.compile(r"^[A-Z][A-Z0-9_]{0,63}\Z")
# More integer digits than this is above MAX_MEMORY_BYTES in any unit.
_MEMORY_MAX_INT_DIGITS = len(str(MAX_MEMORY_BYTES))
# Python refuses to print an int of more than 4300 digits; messages describe those differently.
_PRINTABLE_INT_BITS = 4000

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


# A location in a document: keys and list indexes, as pydantic and the YAML tree spell them.
Loc = tuple[str | int, ...]


# --- scalar validators ----------------------------------------------------------------------


def fail(kind: str, message: str) -> NoReturn:
    raise PydanticCustomError(kind, message)


def describe(value: Any) -> str:
    """How a value reads to someone who wrote YAML or JSON."""
    if value is None:
        return "null (no value)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int) and value.bit_length() > _PRINTABLE_INT_BITS:
        return f"a number of about {int(value.bit_length() * math.log10(2))} digits"
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


def format_seconds(seconds: float) -> str:
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
        fail("text_null", 'has no value (null); quote it, e.g. "" for an empty string')
    if isinstance(value, int) and value.bit_length() > _PRINTABLE_INT_BITS:
        fail("text_number", f"{describe(value)} is too long to be read as text; quote it")
    if isinstance(value, int | float):
        return str(value)
    return value


def _no_nul(value: str) -> str:
    # A NUL ends a C string: no process can receive it in an argument or environment variable.
    if "\0" in value:
        fail("text_nul", f"must not contain a NUL character (\\0), got {describe(value)}")
    return value


def _no_bool(value: Any) -> Any:
    # pydantic's lax mode reads true as 1; for a port or a count that is always a mistake.
    if isinstance(value, bool):
        fail("number_type", f"expected a number, got {describe(value)}")
    return value


def none_as_empty_dict(value: Any) -> Any:
    # `env:` with every entry commented out is null in YAML; it means "none".
    return {} if value is None else value


def none_as_empty_list(value: Any) -> Any:
    return [] if value is None else value


def _check_name(value: str) -> str:
    if len(value) > 63 or not _NAME_RE.match(value):
        fail(
            "name",
            f"invalid name {value!r}: use 1-63 lowercase letters, digits and '-', "
            "starting and ending with a letter or digit",
        )
    return value


def _check_label_key(key: str) -> str:
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or len(prefix) > 253 or not _DNS_SUBDOMAIN_RE.match(prefix)):
        fail(
            "label_key",
            f"invalid label key {key!r}: the prefix before '/' must be a DNS subdomain "
            "(lowercase letters, digits, '-' and '.'; at most 253 characters)",
        )
    if not name or len(name) > 63 or not _LABEL_NAME_RE.match(name):
        fail(
            "label_key",
            f"invalid label key {key!r}: use 1-63 letters, digits, '-', '_' and '.', "
            "starting and ending with a letter or digit, optionally after a 'prefix/'",
        )
    return key


def _check_user_label_key(key: str) -> str:
    _check_label_key(key)
    if key.lower().startswith(RESERVED_LABEL_PREFIX):
        fail(
            "label_reserved",
            f"label key {key!r} uses the reserved prefix {RESERVED_LABEL_PREFIX!r}; "
            "noderuntime sets those labels itself",
        )
    return key


def _check_label_value(value: str) -> str:
    if value and (len(value) > 63 or not _LABEL_NAME_RE.match(value)):
        fail(
            "label_value",
            f"invalid label value {value!r}: use at most 63 letters, digits, '-', '_' and '.', "
            "starting and ending with a letter or digit (or leave it empty)",
        )
    return value


def _check_env_name(key: str) -> str:
    if not _ENV_NAME_RE.match(key):
        fail(
            "env_name",
            f"invalid environment variable name {key!r}: use letters, digits and '_', "
            "not starting with a digit",
        )
    return key


def _check_image(value: str) -> str:
    if not value:
        fail("image", "must not be empty; name an image such as localhost/busybox:1")
    if any(c.isspace() or c == "\0" for c in value):
        fail("image", f"invalid image {value!r}: an image reference contains no whitespace")
    return value


def _check_absolute_path(value: str) -> str:
    if not value.startswith("/") or "\0" in value:
        fail("path", f"must be an absolute path (starting with '/'), got {value!r}")
    # Normalised so "/data/" and "/data" are the same mount and hash the same.
    return posixpath.normpath(value)


def _check_volume_name(value: str) -> str:
    if not _VOLUME_NAME_RE.match(value):
        fail(
            "volume_name",
            f"invalid volume name {value!r}: use letters, digits, '_', '.' and '-', "
            "starting with a letter or digit",
        )
    return value


def _check_user(value: str) -> str:
    if not value or any(c.isspace() or c == "\0" for c in value) or value.count(":") > 1:
        fail("user", f"invalid user {value!r}: write USER, UID, USER:GROUP or UID:GID")
    return value


def _check_capability(value: str) -> str:
    name = value.upper()
    name = name.removeprefix("CAP_")
    if not _CAPABILITY_RE.match(name):
        fail(
            "capability",
            f"invalid capability {value!r}: write a Linux capability such as NET_ADMIN "
            "(CAP_NET_ADMIN and net_admin are read the same)",
        )
    return name


def _check_device_permissions(value: str) -> str:
    if not value or set(value) - set("rwm") or len(set(value)) != len(value):
        fail("permissions", f"invalid device permissions {value!r}: a subset of 'rwm', e.g. rw")
    return "".join(c for c in "rwm" if c in value)


def false_as_unset(value: bool | None) -> bool | None:
    """``false`` means the same as leaving the field out: one spelling keeps the hash stable."""
    return value or None


def _check_ip(value: str) -> str:
    if not value:
        return value
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        fail("ip", f"invalid IP address {value!r}: write e.g. 127.0.0.1 or ::1, or leave it out")


def _check_http_path(value: str) -> str:
    if not value.startswith("/"):
        fail("http_path", f"must start with '/', got {value!r}")
    # It goes into the probe's request line as it is.
    if not _HTTP_PATH_RE.match(value):
        fail(
            "http_path",
            f"invalid path {value!r}: use printable ASCII without spaces; "
            "percent-encode anything else (e.g. %20 for a space)",
        )
    return value


def restart_policy_spelling(value: Any) -> Any:
    # Kubernetes users write Always/OnFailure/Never; the stored value stays the literal one.
    if isinstance(value, str):
        folded = value.strip().lower().replace("_", "-")
        return "on-failure" if folded == "onfailure" else folded
    return value


def _parse_duration(value: Any) -> float:
    accepted = "write seconds as a number, or a duration such as 500ms, 10s, 1m, 1h or 1m30s"
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        fail("duration", f"expected a duration, got {describe(value)}; {accepted}")
    if isinstance(value, str):
        text = value.strip()
        if _PLAIN_NUMBER_RE.match(text):
            seconds = float(text)
        else:
            parts = list(_DURATION_PART_RE.finditer(text))
            if not parts or "".join(p.group(0) for p in parts) != text:
                fail("duration", f"invalid duration {value!r}; {accepted}")
            seconds = sum(float(p.group(1)) * _DURATION_UNITS_S[p.group(2)] for p in parts)
    elif isinstance(value, int) and not 0 <= value <= MAX_DURATION_S:
        seconds = math.inf if value > 0 else -math.inf  # float() of a huge int: OverflowError
    else:
        seconds = float(value)
    if math.isnan(seconds) or seconds < 0:
        fail("duration", f"invalid duration {value!r}: must be zero or more seconds")
    if seconds > MAX_DURATION_S:
        fail("duration_max", f"must be at most 24h, got {describe(value)}")
    return seconds


def _at_least_s(minimum_s: float) -> Callable[[float], float]:
    def check(seconds: float) -> float:
        if seconds < minimum_s:
            fail(
                "duration_min",
                f"must be at least {format_seconds(minimum_s)}, got {format_seconds(seconds)}",
            )
        return seconds

    return check


def _positive_s(seconds: float) -> float:
    if seconds <= 0:
        fail("duration_min", "must be longer than 0s")
    return seconds


def _parse_memory(value: Any) -> int:
    accepted = (
        "write bytes, or a quantity such as 256Mi or 1Gi (powers of 1024) "
        "or 512M or 100k (powers of 1000)"
    )
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        fail("memory", f"expected a memory size, got {describe(value)}; {accepted}")
    too_large = (
        f"must be at most {MAX_MEMORY_TEXT} ({MAX_MEMORY_BYTES} bytes), the most Podman takes; "
        f"got {describe(value)}"
    )
    if isinstance(value, str):
        match = _MEMORY_RE.match(value.strip())
        if not match:
            fail("memory", f"invalid memory size {value!r}; {accepted}")
        number, suffix = match.groups()
        if suffix not in _MEMORY_UNITS:
            hint = ""
            if suffix.lower() in {"m", "g", "b", "kb", "mb", "gb"}:
                # Podman reads 512m as mebibytes, Kubernetes as milli-bytes: refuse to guess.
                hint = f" ({suffix!r} means different things to Podman and Kubernetes)"
            fail("memory", f"invalid memory size {value!r}{hint}; {accepted}")
        # Checked before any arithmetic: a million digits overflow Decimal's exponent.
        if len(number.partition(".")[0].lstrip("0")) > _MEMORY_MAX_INT_DIGITS:
            fail("memory_max", too_large)
        try:
            exact = Decimal(number) * _MEMORY_UNITS[suffix]
        except DecimalException:
            fail("memory", f"invalid memory size {value!r}; {accepted}")
        if exact > MAX_MEMORY_BYTES:
            fail("memory_max", too_large)
        size = int(exact.to_integral_value(rounding=ROUND_CEILING))
    elif isinstance(value, float):
        if not value.is_integer():
            fail("memory", f"invalid memory size {value!r}: bytes must be a whole number")
        if value > MAX_MEMORY_BYTES:
            fail("memory_max", too_large)
        size = int(value)
    else:
        size = value
    if size > MAX_MEMORY_BYTES:
        fail("memory_max", too_large)
    if size < MIN_MEMORY_BYTES:
        fail(
            "memory_min",
            f"must be at least 6Mi ({MIN_MEMORY_BYTES} bytes), Podman's minimum; got {size} bytes",
        )
    return size


def _api_version(value: Any) -> Any:
    if value != API_VERSION:
        fail("api_version", f"unsupported apiVersion {describe(value)}; use {API_VERSION}")
    return value


def _kind(value: Any) -> Any:
    if value != KIND:
        fail("kind", f"unsupported kind {describe(value)}; use {KIND}")
    return value


def raise_at(title: str, problems: list[tuple[Loc, str, Any]]) -> NoReturn:
    """Raise problems found across fields, each at its own location under the current one."""
    raise ValidationError.from_exception_data(
        title,
        [
            InitErrorDetails(type=PydanticCustomError("invalid", message), loc=loc, input=value)
            for loc, message, value in problems
        ],
    )


# --- annotated types --------------------------------------------------------------------------

Text = Annotated[
    str,
    BeforeValidator(_text, json_schema_input_type=str | int | float),
    AfterValidator(_no_nul),
]
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
Image = Annotated[str, AfterValidator(_check_image)]
User = Annotated[str, BeforeValidator(_text), AfterValidator(_check_user)]
HostIp = Annotated[str, AfterValidator(_check_ip)]
VolumeName = Annotated[str, AfterValidator(_check_volume_name)]
HttpPath = Annotated[str, AfterValidator(_check_http_path)]
Capability = Annotated[str, BeforeValidator(_text), AfterValidator(_check_capability)]
DevicePermissions = Annotated[str, AfterValidator(_check_device_permissions)]
# A host namespace switch (hostNetwork, ...): false is stored as not set.
HostNamespace = Annotated[bool | None, AfterValidator(false_as_unset)]
ProbeInterval = Annotated[Duration, AfterValidator(_at_least_s(MIN_PROBE_INTERVAL_S))]
PositiveDuration = Annotated[Duration, AfterValidator(_positive_s)]
Retries = Annotated[int, Field(ge=1, le=MAX_PROBE_RETRIES), BeforeValidator(_no_bool)]
Replicas = Annotated[int, Field(ge=1, le=MAX_PLACEMENT_REPLICAS), BeforeValidator(_no_bool)]
Cpus = Annotated[float, Field(gt=0, le=MAX_CPUS), BeforeValidator(_no_bool)]
StopTimeoutS = Annotated[int, Field(ge=0, le=MAX_STOP_TIMEOUT_S), BeforeValidator(_no_bool)]
ApiVersion = Annotated[Literal["noderuntime/v1"], BeforeValidator(_api_version)]
Kind = Annotated[Literal["Workload"], BeforeValidator(_kind)]
