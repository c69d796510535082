"""Node configuration: a frozen, validated value parsed once at start-up.

The data directory holds everything a node owns:

    <data_dir>/node.yaml      this configuration
    <data_dir>/identity.key   the node's Ed25519 private key (0600)
    <data_dir>/state.db       CRDT updates and snapshots (SQLite, WAL)
    <data_dir>/audit.db       the hash-chained audit log (SQLite, WAL)
    <data_dir>/api.sock       local control API (0600)
    <data_dir>/podman.sock    Podman API, when the node supervises its own podman service

The data directory comes from ``--data-dir``, else ``$NODERUNTIME_HOME``, else
``/var/lib/noderuntime`` (read at call time, never at import time). The config file may live
elsewhere (``--config`` / ``$NODERUNTIME_CONFIG``, e.g. /etc/noderuntime/node.yaml) and the
control socket too (``apiSocket``, e.g. /run/noderuntime/api.sock).
"""

from __future__ import annotations

import enum
import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from noderuntime import codec

# Re-exported: they lived here before the command line needed them without pydantic.
from noderuntime.config.paths import API_SOCKET_FILE as API_SOCKET_FILE
from noderuntime.config.paths import CONFIG_FILE as CONFIG_FILE
from noderuntime.config.paths import DEFAULT_CONFIG_FILE as DEFAULT_CONFIG_FILE
from noderuntime.config.paths import DEFAULT_DATA_DIR as DEFAULT_DATA_DIR
from noderuntime.config.paths import resolve_config_file as resolve_config_file
from noderuntime.config.paths import resolve_data_dir as resolve_data_dir
from noderuntime.config.peers import parse_peer_url, parse_route_url
from noderuntime.errors import ConfigError, NotInitializedError

IDENTITY_FILE = "identity.key"
STATE_DB_FILE = "state.db"
AUDIT_DB_FILE = "audit.db"
PODMAN_SOCKET_FILE = "podman.sock"

RECONCILE_INTERVAL_S = 15.0
CRASH_BACKOFF_INITIAL_S = 1.0
CRASH_BACKOFF_MAX_S = 300.0
# A container that ran this long without failing resets its crash-loop backoff.
CRASH_BACKOFF_RESET_S = 120.0
COMPACT_EVERY_UPDATES = 1000
# A pull whose progress stream is silent this long is cancelled. Generous on purpose: Podman
# 4.3 writes a line per blob started and finished, not per byte, so one big layer on a slow
# link is silent for as long as it downloads.
IMAGE_PULL_STALL_TIMEOUT_S = 600.0
# Local NATS client port (loopback only); the leaf-node port is off unless leafPort is set.
DEFAULT_NATS_PORT = 4222
DEFAULT_LEAF_HOST = "0.0.0.0"
# The site cluster's route listener (off unless clusterPort is set; docs/architecture.md,
# "Site quorum").
DEFAULT_CLUSTER_HOST = "0.0.0.0"

# node.yaml is a few hundred bytes; anything this large is the wrong file, or an attack.
MAX_CONFIG_BYTES = 1024 * 1024
# Values in it, counted through YAML aliases: settings, labels and peers are a few dozen.
MAX_CONFIG_ITEMS = 10_000
# libyaml when present: it bounds nesting depth itself and is fast on a hostile file.
_YAML_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# Unix socket paths are limited to 107 bytes plus NUL on Linux.
MAX_SOCKET_PATH_BYTES = 107

_ID_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,61}[a-z0-9])?\Z")
_LABEL_KEY_RE = re.compile(
    r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?\Z"
)
_LABEL_VALUE_RE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?\Z")


class Role(enum.Enum):
    NODE = "node"
    HUB = "hub"
    # A member of its site's cluster that votes in JetStream but runs no workloads: the third
    # voter a two-node site needs for a majority (docs/architecture.md, "Site quorum").
    WITNESS = "witness"


def validate_id(kind: str, value: str) -> str:
    if not _ID_RE.match(value):
        raise ConfigError(
            f"invalid {kind} {value!r}: use 1-63 lowercase letters, digits, '-' or '.', "
            "starting and ending with a letter or digit"
        )
    return value


def validate_labels(labels: dict[str, str]) -> dict[str, str]:
    for key, value in labels.items():
        if not _LABEL_KEY_RE.match(key):
            raise ConfigError(f"invalid label key {key!r}: use letters, digits, '-', '_', '.'")
        if not _LABEL_VALUE_RE.match(value):
            raise ConfigError(
                f"invalid value {value!r} for label {key!r}: "
                "at most 63 letters, digits, '-', '_', '.'"
            )
    return labels


def parse_label_args(items: list[str]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"invalid label {item!r}: write it as key=value")
        labels[key] = value
    return validate_labels(labels)


def split_host_port(address: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:9100`` for IPv6) as (host, port); ValueError if it is not one."""
    host, sep, port = address.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{address!r} is not HOST:PORT (e.g. 127.0.0.1:9100)")
    return host, int(port)


class NodeConfig(BaseModel):
    """What ``node.yaml`` holds. Unknown keys are rejected so typos don't pass silently."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    node_id: str = Field(alias="nodeId")
    site: str
    role: Role = Role.NODE
    labels: dict[str, str] = Field(default_factory=dict)
    # None: start and supervise `podman system service` on <data_dir>/podman.sock.
    podman_socket: str | None = Field(default=None, alias="podmanSocket")
    podman_bin: str = Field(default="podman", alias="podmanBin")
    # None: <data_dir>/api.sock.
    api_socket: str | None = Field(default=None, alias="apiSocket")
    reconcile_interval_s: float = Field(
        default=RECONCILE_INTERVAL_S, alias="reconcileIntervalSeconds", gt=0
    )
    crash_backoff_initial_s: float = Field(
        default=CRASH_BACKOFF_INITIAL_S, alias="crashBackoffInitialSeconds", gt=0
    )
    crash_backoff_max_s: float = Field(
        default=CRASH_BACKOFF_MAX_S, alias="crashBackoffMaxSeconds", gt=0
    )
    crash_backoff_reset_s: float = Field(
        default=CRASH_BACKOFF_RESET_S, alias="crashBackoffResetSeconds", gt=0
    )
    compact_every_updates: int = Field(
        default=COMPACT_EVERY_UPDATES, alias="compactEveryUpdates", ge=10
    )
    image_pull_stall_timeout_s: float = Field(
        default=IMAGE_PULL_STALL_TIMEOUT_S, alias="imagePullStallTimeoutSeconds", gt=0
    )
    # Sync transport (docs/sync.md). natsPort 0 / leafPort 0: any free port (tests).
    nats_port: int = Field(default=DEFAULT_NATS_PORT, alias="natsPort", ge=0, le=65535)
    leaf_port: int | None = Field(default=None, alias="leafPort", ge=0, le=65535)
    leaf_host: str = Field(default=DEFAULT_LEAF_HOST, alias="leafHost")
    # Leaf-node peers this node dials: nats-leaf://HOST:PORT (HOST must be in the peer's cert).
    peers: list[str] = Field(default_factory=list)
    # Peers inside this node's own site. Same as `peers`, except on a sovereign node: links to
    # `peers` (hubs, other sites) neither export nor import this site's documents, links to
    # `sitePeers` carry everything (docs/sync.md, "Sovereign sites").
    site_peers: list[str] = Field(default_factory=list, alias="sitePeers")
    # The site cluster (docs/architecture.md, "Site quorum"): this node's route listener and
    # the other members of its site, nats-route://HOST:PORT. With peers, JetStream is on.
    cluster_port: int | None = Field(default=None, alias="clusterPort", ge=0, le=65535)
    cluster_host: str = Field(default=DEFAULT_CLUSTER_HOST, alias="clusterHost")
    cluster_peers: list[str] = Field(default_factory=list, alias="clusterPeers")
    # Use this existing NATS instead of starting our own nats-server.
    nats_url: str | None = Field(default=None, alias="natsUrl")
    # A sovereign site keeps its site and node docs inside the site (design decision 7).
    sovereign: bool = False
    # HOST:PORT serving Prometheus text on /metrics; None (the default): no metrics endpoint.
    metrics_address: str | None = Field(default=None, alias="metricsAddress")

    @field_validator("node_id")
    @classmethod
    def _node_id(cls, v: str) -> str:
        return validate_id("node id", v)

    @field_validator("metrics_address")
    @classmethod
    def _metrics_address(cls, v: str | None) -> str | None:
        if v is not None:
            split_host_port(v)
        return v

    @field_validator("site")
    @classmethod
    def _site(cls, v: str) -> str:
        return validate_id("site", v)

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: dict[str, str]) -> dict[str, str]:
        return validate_labels(v)

    @field_validator("peers", "site_peers")
    @classmethod
    def _peers(cls, v: list[str]) -> list[str]:
        for url in v:
            try:
                parse_peer_url(url)
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
        return v

    @field_validator("cluster_peers")
    @classmethod
    def _cluster_peers(cls, v: list[str]) -> list[str]:
        for url in v:
            try:
                parse_route_url(url)
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
        return v

    @property
    def clustered(self) -> bool:
        """This node is one of several in a site cluster (JetStream, leases)."""
        return self.cluster_port is not None and bool(self.cluster_peers)

    def to_yaml_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class NodePaths:
    """Where a node's files live. Paths are passed around, never hidden in class attributes."""

    def __init__(
        self, data_dir: Path, config: NodeConfig | None = None, *, config_file: Path | None = None
    ) -> None:
        self.data_dir = data_dir
        self.config_file = config_file or data_dir / CONFIG_FILE
        self.identity_file = data_dir / IDENTITY_FILE
        self.state_db = data_dir / STATE_DB_FILE
        self.audit_db = data_dir / AUDIT_DB_FILE
        api = config.api_socket if config and config.api_socket else None
        self.api_socket = Path(api) if api else data_dir / API_SOCKET_FILE
        self.own_podman_socket = data_dir / PODMAN_SOCKET_FILE

    def podman_socket(self, config: NodeConfig) -> Path:
        return Path(config.podman_socket) if config.podman_socket else self.own_podman_socket


def check_socket_path(path: Path) -> None:
    if len(os.fsencode(str(path))) > MAX_SOCKET_PATH_BYTES:
        raise ConfigError(
            f"socket path {path} is longer than {MAX_SOCKET_PATH_BYTES} bytes, the Linux limit; "
            "use a shorter --data-dir or set apiSocket/podmanSocket in node.yaml"
        )


def load_config(data_dir: Path, config_file: Path | None = None) -> NodeConfig:
    path = config_file or data_dir / CONFIG_FILE
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise NotInitializedError(
            f"no node config at {path}: run `noderuntime init --node-id ID --site SITE` first "
            "(or point --data-dir / NODERUNTIME_HOME at an initialised node)"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    return parse_config(raw, str(path))


def parse_config(raw: bytes, source: str) -> NodeConfig:
    """``node.yaml`` bytes -> NodeConfig; every malformed input is a ConfigError naming ``source``.

    Also used on configs that arrive in a backup archive, so nothing here may trust the bytes:
    size, encoding, YAML and nesting depth are all checked before the model is.
    """
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"{source} is larger than {MAX_CONFIG_BYTES} bytes; it is not a node config"
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{source} is not UTF-8 text (byte {exc.start} is {raw[exc.start]:#04x}); "
            "is it the right file?"
        ) from exc
    try:
        data = yaml.load(text, Loader=_YAML_LOADER)
        codec.check_value(data, max_items=MAX_CONFIG_ITEMS)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source} is not valid YAML: {exc}") from exc
    except (RecursionError, codec.DecodeError) as exc:
        # Aliases are shared references, not copies, but a value that nests or repeats without
        # bound would still break whatever walks it next.
        why = exc if isinstance(exc, codec.DecodeError) else "nested too deeply"
        raise ConfigError(f"{source} is not a node config: {why}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{source} must hold a mapping of settings")
    try:
        return NodeConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"{source} is invalid: {problems}") from exc


def save_config(path: Path, config: NodeConfig) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(
        "# noderuntime node configuration (see docs/operations.md)\n"
        + yaml.safe_dump(config.to_yaml_dict(), sort_keys=False)
    )
    os.chmod(tmp, 0o640)
    os.replace(tmp, path)
