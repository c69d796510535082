"""An in-process fake of the control API with canned data and a frozen clock, for snapshots.

It implements the same ``call``/``stream``/``close`` interface as
:class:`noderuntime.api.client.ApiClient` and raises the same errors, so the app cannot tell
the difference. Behaviour tests use a real node instead.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import AsyncIterator
from typing import Any

from noderuntime.errors import ApiError, DaemonNotRunningError, NotFoundError
from noderuntime.reconcile.desired import OVERRIDE_FIELDS

NOW = 1_790_000_000.0  # 2026-09-21 12:53:20 UTC
TECHNICIAN = "alice"
PIN = "2468"


def clock() -> float:
    return NOW


def _workload(
    name: str,
    phase: str,
    *,
    health: str | None = None,
    restarts: int = 0,
    since: float = 3600.0,
    enabled: bool = True,
    image: str = "localhost/busybox:1",
    outdated: bool = False,
    env: dict[str, str] | None = None,
    provenance: dict[str, str] | None = None,
) -> dict[str, Any]:
    spec = {
        "apiVersion": "noderuntime/v1",
        "kind": "Workload",
        "metadata": {"name": name},
        "spec": {
            "image": image,
            "command": ["sleep", "3600"],
            "env": env or {},
            "restartPolicy": "always",
            "resources": {"cpus": 0.5, "memory": "64Mi"},
        },
    }
    return {
        "name": name,
        "phase": phase,
        "container_id": hashlib.sha256(name.encode()).hexdigest()[:12]
        if phase != "Pending"
        else None,
        "restarts": restarts,
        "health": health,
        "since": NOW - since,
        "message": "" if phase != "Failed" else "exited with code 1; retrying in 8s",
        "exit_code": 1 if phase == "Failed" else None,
        "spec_hash": "a1b2c3d4e5f6a7b8",
        "observed_spec_hash": "0f0f0f0f0f0f" if outdated else "a1b2c3d4e5f6a7b8",
        "enabled": enabled,
        "image": image,
        "spec": spec,
        "provenance": provenance or {},
        "problems": [],
    }


def default_workloads() -> list[dict[str, Any]]:
    return [
        _workload(
            "plc-bridge",
            "Running",
            health="healthy",
            since=86400 * 3 + 7200,
            env={"MODE": "field", "PLC_HOST": "10.0.0.7"},
            provenance={"env.MODE": "node", "env.PLC_HOST": "site"},
        ),
        _workload("historian", "Running", since=5400, restarts=2),
        _workload("hmi-web", "Unhealthy", health="unhealthy", since=120, restarts=7),
        _workload("modbus-poller", "Failed", since=45, restarts=12),
        _workload(
            "camera-ingest", "Stopped", enabled=False, since=600, provenance={"enabled": "node"}
        ),
        _workload("updater", "Starting", since=3, outdated=True),
        missing_image("scada-gw"),
    ]


MISSING_IMAGE_MESSAGE = (
    "image localhost/scada-gw:2 is not on this host and could not be pulled (initializing "
    "source docker://localhost/scada-gw:2: pinging container registry localhost: Get "
    '"https://localhost/v2/": dial tcp 127.0.0.1:443: connect: connection refused); '
    "load it with `podman load -i FILE` or fix the image name"
)


def missing_image(name: str) -> dict[str, Any]:
    """A workload whose image is not on the node and cannot be pulled (no network)."""
    w = _workload(name, "Pending", since=300, image=f"localhost/{name}:2")
    w["message"] = MISSING_IMAGE_MESSAGE
    return w


def default_status(workloads: list[dict[str, Any]], sync: bool) -> dict[str, Any]:
    phases: dict[str, int] = {}
    for w in workloads:
        phases[w["phase"]] = phases.get(w["phase"], 0) + 1
    return {
        "node": {
            "id": "edge-07",
            "site": "plant-north",
            "role": "node",
            "labels": {"line": "3"},
            "version": "0.1.0",
            "hostname": "appliance-07",
            "pid": 4242,
            "started_at": NOW - 93784,
            "uptime_s": 93784.0,
            "data_dir": "/var/lib/noderuntime",
            "api_socket": "/var/lib/noderuntime/api.sock",
        },
        "store": {
            "path": "/var/lib/noderuntime/state.db",
            "healthy": True,
            "updates": 1834,
            "snapshots": 3,
            "size_bytes": 2_457_600,
            "schema_version": 1,
            "documents": ["fleet", "site/plant-north", "node/edge-07"],
            "writes_since_start": 55,
            "last_write_at": NOW - 30,
            "load_problems": [],
        },
        "podman": {
            "socket": "/run/noderuntime/podman.sock",
            "connected": True,
            "error": None,
            "connected_since": NOW - 93000,
            "supervised": True,
            "service_restarts": 0,
        },
        "reconciler": {"passes": 9000, "last_pass_at": NOW - 1, "converged": False},
        "workloads": {
            "desired": len(workloads),
            "invalid": 0,
            "not_selected": [],
            "phases": phases,
        },
        "sync": sync_status() if sync else {"enabled": False},
        "host": {
            "cpus": 4,
            "load_avg": [0.82, 0.64, 0.51],
            "mem_total_bytes": 4 * 1024**3,
            "mem_available_bytes": 1536 * 1024**2,
            "disk_total_bytes": 32 * 1024**3,
            "disk_free_bytes": 9 * 1024**3,
        },
    }


def sync_status() -> dict[str, Any]:
    return {
        "enabled": True,
        "fleet": "acme",
        "nats_url": "nats://127.0.0.1:4222",
        "connected": True,
        "connected_since": NOW - 7200,
        "sovereign": False,
        "peers_up": 2,
        "peers_known": 3,
        "last_anti_entropy": NOW - 12,
        "counters": {
            "messages_in": 5120,
            "bytes_in": 1_843_200,
            "messages_out": 4880,
            "bytes_out": 1_228_800,
            "updates_applied": 312,
        },
        "rejections": {"bad_signature": 3, "not_authorised": 1},
        "rejected_total": 4,
    }


def peers() -> list[dict[str, Any]]:
    return [
        {
            "node": "edge-08",
            "site": "plant-north",
            "role": "node",
            "sovereign": False,
            "up": True,
            "up_since": NOW - 7000,
            "last_heard": NOW - 2,
            "bytes_in": 921_600,
            "bytes_out": 614_400,
            "messages_in": 2000,
            "updates_in": 150,
            "last_sync": NOW - 12,
            "behind_by": 0,
            "ahead_by": 0,
        },
        {
            "node": "hub-eu",
            "site": "cloud",
            "role": "hub",
            "sovereign": False,
            "up": True,
            "up_since": NOW - 3000,
            "last_heard": NOW - 1,
            "bytes_in": 819_200,
            "bytes_out": 512_000,
            "messages_in": 3000,
            "updates_in": 160,
            "last_sync": NOW - 12,
            "behind_by": 4,
            "ahead_by": 1,
        },
        {
            "node": "edge-09",
            "site": "plant-north",
            "role": "node",
            "sovereign": False,
            "up": False,
            "up_since": None,
            "last_heard": NOW - 5400,
            "bytes_in": 102_400,
            "bytes_out": 102_400,
            "messages_in": 120,
            "updates_in": 2,
            "last_sync": NOW - 5400,
            "behind_by": 0,
            "ahead_by": 0,
        },
    ]


def _stamp(ts: float) -> str:
    import time

    return time.strftime("%Y-%m-%dT%H:%M:%S.000000000Z", time.gmtime(ts))


# modbus-poller crash-loops: a run of a few seconds, then a restart with exit code 1.
CRASH_RUNS = 3


def crash_loop_events() -> list[dict[str, Any]]:
    out = [{"ts": NOW - 90, "workload": "modbus-poller", "kind": "created", "message": "created"}]
    for run in range(1, CRASH_RUNS):
        out.append(
            {
                "ts": NOW - 90 + 30 * run,
                "workload": "modbus-poller",
                "kind": "restarted",
                "message": "restarted container 5f1c2a9e0b7d (exit code 1)",
            }
        )
    return out


def crash_loop_lines() -> list[str]:
    lines = []
    for run in range(CRASH_RUNS):
        start = NOW - 90 + 30 * run
        lines += [
            f"{_stamp(start)} starting modbus poller v2.1",
            f"{_stamp(start + 1)} connecting to 10.0.0.7:502",
            f"{_stamp(start + 4)} error: connection refused; exiting",
        ]
    return lines


def events() -> list[dict[str, Any]]:
    return [
        *crash_loop_events(),
        {"ts": NOW - 900, "workload": "hmi-web", "kind": "started", "message": "container started"},
        {
            "ts": NOW - 300,
            "workload": "hmi-web",
            "kind": "health",
            "message": "health is now unhealthy",
        },
        {
            "ts": NOW - 60,
            "workload": "modbus-poller",
            "kind": "crashed",
            "message": "exited with code 1",
        },
        {
            "ts": NOW - 20,
            "workload": "plc-bridge",
            "kind": "health",
            "message": "health is now healthy",
        },
    ]


def history() -> list[dict[str, Any]]:
    return [
        {
            "seq": 1830,
            "doc": "fleet",
            "author": "operator:maria",
            "on_behalf": None,
            "summary": "apply hmi-web",
            "ts": NOW - 4000,
            "size_bytes": 412,
        },
        {
            "seq": 1833,
            "doc": "node/edge-07",
            "author": "node:edge-07",
            "on_behalf": "technician:alice",
            "summary": 'override plc-bridge env.MODE="field"',
            "ts": NOW - 1200,
            "size_bytes": 96,
        },
        {
            "seq": 1834,
            "doc": "node/edge-07",
            "author": "node:edge-07",
            "on_behalf": "technician:alice",
            "summary": "override camera-ingest enabled=false",
            "ts": NOW - 600,
            "size_bytes": 88,
        },
    ]


def fleet_rows() -> list[dict[str, Any]]:
    """What a hub answers for ``fleet.workloads``: two sites, one node gone quiet."""
    out = []
    for site, node, stale, phases in (
        ("lab", "edge-07", False, {"plc-bridge": "Running", "mqtt": "Running"}),
        ("lab", "edge-08", False, {"plc-bridge": "Failed", "mqtt": "Running"}),
        ("shop", "till-01", True, {"plc-bridge": "Running", "mqtt": "Unhealthy"}),
    ):
        for name, phase in phases.items():
            out.append(
                {
                    "site": site,
                    "node": node,
                    "name": name,
                    "phase": phase,
                    "health": "unhealthy" if phase == "Unhealthy" else None,
                    "restarts": 4 if phase == "Failed" else 0,
                    "revision": 3 if name == "plc-bridge" else None,
                    "spec_hash": "ab" * 32,
                    "since": NOW - 600,
                    "message": "",
                    "last_seen": NOW - (95 if stale else 1),
                    "stale": stale,
                    "age_s": 95.0 if stale else 1.0,
                }
            )
    return out


def fleet_sites() -> list[dict[str, Any]]:
    return [
        {
            "site": "lab",
            "nodes_up": 2,
            "nodes_total": 2,
            "sovereign": False,
            "workloads": {"Running": 3, "Failed": 1},
            "last_heard": NOW - 1,
            "rollout_in_progress": [{"workload": "plc-bridge", "state": "Progressing"}],
        },
        {
            "site": "shop",
            "nodes_up": 0,
            "nodes_total": 1,
            "sovereign": False,
            "workloads": {"Running": 1, "Unhealthy": 1},
            "last_heard": NOW - 95,
            "rollout_in_progress": [{"workload": "plc-bridge", "state": "Progressing"}],
        },
    ]


class FakeApi:
    """Canned answers; write calls are checked for technician auth and recorded."""

    def __init__(
        self,
        *,
        workloads: list[dict[str, Any]] | None = None,
        sync: bool = True,
        sync_method: bool = True,
        log_lines: list[str] | None = None,
        locked_fields: tuple[str, ...] = ("image",),
    ) -> None:
        self.workloads = workloads if workloads is not None else default_workloads()
        self.sync = sync
        self.sync_method = sync_method
        self.default_lines = [
            f"2026-09-21T12:{i // 60:02d}:{i % 60:02d}Z plc-bridge: "
            f"polled 12 registers in {3 + i % 5} ms"
            for i in range(200)
        ]
        self.log_lines = log_lines if log_lines is not None else self.default_lines
        self.locked_fields = locked_fields
        self.down = False
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.closed = False

    def _check_up(self) -> None:
        if self.down:
            raise DaemonNotRunningError(
                "the node is not running (nothing answers on /var/lib/noderuntime/api.sock); "
                "start it with `noderuntime run` or `systemctl start noderuntime`"
            )

    def _find(self, name: Any) -> dict[str, Any]:
        for w in self.workloads:
            if w["name"] == name:
                return w
        raise NotFoundError(f"no workload {name!r} on this node; see `noderuntime get workloads`")

    async def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        self._check_up()
        params = dict(params or {})
        self.calls.append((method, params))
        if method == "node.status":
            return default_status(self.workloads, self.sync)
        if method == "workloads.list":
            return copy.deepcopy(self.workloads)
        if method == "fleet.workloads":
            return [
                r
                for r in fleet_rows()
                if params.get("site") in (None, r["site"])
                and params.get("node") in (None, r["node"])
            ]
        if method == "fleet.sites":
            return fleet_sites()
        if method == "workloads.get":
            view = copy.deepcopy(self._find(params.get("name")))
            view["events"] = [e for e in events() if e["workload"] == view["name"]]
            view["containers"] = (
                [
                    {
                        "id": view["container_id"] or "",
                        "name": f"nr-edge-07-{view['name']}",
                        "state": "running" if view["phase"] == "Running" else "exited",
                        "spec_hash": view["observed_spec_hash"],
                        "image": view["image"],
                        "exit_code": view["exit_code"],
                        "started_at": view["since"],
                        "finished_at": None,
                        "ip_address": "10.88.0.12",
                    }
                ]
                if view["container_id"]
                else []
            )
            return view
        if method == "events.list":
            return events()
        if method == "history.list":
            return history()
        if method == "overrides.fields":
            return {"fields": list(OVERRIDE_FIELDS)}  # the node's own list, as it serves it
        if method == "sync.peers":
            if not self.sync_method:
                raise ApiError("unknown method 'sync.peers'", code="unknown_method")
            if not self.sync:
                return {"enabled": False, "peers": [], "links": [], "sync": {"enabled": False}}
            return {"enabled": True, "peers": peers(), "links": [], "sync": sync_status()}
        if method in (
            "workloads.restart",
            "workloads.stop",
            "workloads.start",
            "overrides.set",
            "overrides.remove",
        ):
            auth = params.get("auth") or {}
            if auth.get("technician") != TECHNICIAN or auth.get("pin") != PIN:
                raise ApiError(
                    "unknown technician or wrong PIN (4 tries left)", code="permission_denied"
                )
            field = params.get("field")
            if method.startswith("overrides.") and field in self.locked_fields:
                raise ApiError(
                    f"fleet policy locks {field!r} of workload {params.get('workload')!r}; "
                    "ask an operator to change the fleet spec instead",
                    code="forbidden_by_policy",
                )
            return {"result": "ok"}
        raise ApiError(f"unknown method {method!r}", code="unknown_method")

    async def stream(self, method: str, params: dict[str, Any] | None = None) -> AsyncIterator[Any]:
        self._check_up()
        self.calls.append((method, dict(params or {})))
        lines = self.log_lines
        if (params or {}).get("name") == "modbus-poller" and self.log_lines is self.default_lines:
            lines = crash_loop_lines()
        for line in lines:
            yield line
        # Follow: stay open like a real follow stream would, until cancelled.
        import asyncio

        await asyncio.Event().wait()

    async def close(self) -> None:
        self.closed = True
