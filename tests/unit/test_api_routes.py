"""The control API's routes over an in-memory NodeServices: no Node, no Podman, no NATS.

The state store is the real one over its memory backend; the reconciler is a stand-in that
computes desired state from the store like the real loop does, so a write through one route is
seen by the next.
"""

from __future__ import annotations

import collections
import json
import tempfile
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from noderuntime.api.client import ApiClient
from noderuntime.api.protocol import RawJson
from noderuntime.api.routes import build_routes
from noderuntime.api.routes.workloads import MAX_LOG_LINE_CHARS
from noderuntime.api.server import ACTOR_PARAM, ApiServer, Route
from noderuntime.api.services import NodeFacts, NodeServices
from noderuntime.audit.chain import AuditKind
from noderuntime.audit.log import Audit, MemoryAudit
from noderuntime.audit.store import WitnessAlert
from noderuntime.crdt.mark import Hold
from noderuntime.crdt.schema import StatusRecord
from noderuntime.crdt.state import StateStore
from noderuntime.crdt.store import MemoryStore
from noderuntime.errors import (
    ApiError,
    NotEnrolledError,
    NotFoundError,
    PermissionDeniedError,
    PolicyError,
    SpecError,
)
from noderuntime.identity import keys as identity
from noderuntime.identity.principals import node_principal, technician_principal
from noderuntime.reconcile.desired import OVERRIDE_FIELDS, DesiredState, compute_desired
from noderuntime.reconcile.outcomes import Event
from noderuntime.reconcile.plan import Plan
from noderuntime.runtime.base import ContainerState, ObservedContainer
from noderuntime.runtime.images import waiting_for

WEB = """
apiVersion: noderuntime/v1
kind: Workload
metadata: {name: web}
spec:
  image: localhost/busybox:1
  command: ["sleep", "3600"]
"""

# Every route, and whether it changes the node: clients and their permissions rely on both.
ROUTES = {
    "node.status": False,
    "store.reset": True,
    "store.resync": True,
    "state.export": False,
    "sync.peers": False,
    "nodes.list": False,
    "updates.submit": True,
    "workloads.list": False,
    "workloads.get": False,
    "workloads.logs": False,
    "events.list": False,
    "audit.list": False,
    "audit.follow": False,
    "audit.verify": False,
    "audit.witness": False,
    "history.list": False,
    "workloads.apply": True,
    "policy.lock": True,
    "policy.allow": True,
    "policy.list": False,
    "workloads.delete": True,
    "workloads.restart": True,
    "workloads.stop": True,
    "workloads.start": True,
    "overrides.set": True,
    "overrides.remove": True,
    "overrides.fields": False,
    "rollout.start": True,
    "rollout.status": False,
    "rollout.history": False,
    "rollout.pause": True,
    "rollout.resume": True,
    "rollout.abort": True,
    "rollout.undo": True,
    "site.window.set": True,
    "secret.targets": False,
    "secret.set": True,
    "secret.ls": False,
    "secret.rm": True,
    "fleet.workloads": False,
    "fleet.sites": False,
    "site.status": False,
    "site.drain": True,
    "site.uncordon": True,
    "fleet.events": False,
    "rollout.promote": True,
    "records.remove": True,
    "fleet.revoke": True,
    "fleet.member.add": True,
    "node.rekey": True,
    "rekey.pending": False,
    "rekey.issue": True,
    "fleet.logs": False,
    "images.list": False,
    "images.archives": False,
    "images.load": True,
    "network.get": False,
    "network.set": True,
    "enrolment.status": False,
    "enrolment.import": True,
}


@dataclass
class FakeReconciler:
    state: StateStore
    observed: list[ObservedContainer] = field(default_factory=list)
    events: collections.deque[Event] = field(default_factory=collections.deque)
    live_status: dict[str, StatusRecord] = field(default_factory=dict)
    observed_once: bool = True
    status_write_error: str | None = None
    converged: bool = True
    runtime_error: str | None = None
    runtime_ok_since: float | None = None
    passes: int = 1
    last_pass_at: float | None = None
    last_plan: Plan | None = None
    restarted: list[tuple[str, str]] = field(default_factory=list)
    triggers: list[str] = field(default_factory=list)

    @property
    def desired(self) -> DesiredState:
        return compute_desired(self.state.snapshot(), node_id="n1", site="s1", node_labels={})

    def trigger(self, reason: str = "") -> None:
        self.triggers.append(reason)

    async def restart_container(self, workload: str, container_id: str) -> None:
        self.restarted.append((workload, container_id))

    def set_health(self, workload: str, health: str | None) -> None:
        pass

    def note(self, workload: str, kind: str, message: str) -> None:
        self.events.append(Event(0.0, workload, kind, message))

    def image_arrived(self, names: Iterable[str]) -> list[str]:
        wanted = {n: str(dw.workload.spec.image) for n, dw in self.desired.workloads.items()}
        ready = waiting_for(names, wanted)
        if ready:
            self.trigger("image")
        return ready


class CannedLogs:
    """The one runtime call routes make: a container's log lines."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines

    async def logs(
        self, cid: str, *, follow: bool, tail: int | None, timestamps: bool = False
    ) -> AsyncIterator[str]:
        for line in self.lines:
            yield line


@dataclass
class FakeSync:
    heartbeats: dict[str, dict[str, Any]]

    def status(self) -> dict[str, Any]:
        return {"enabled": True, "peers_up": len(self.heartbeats)}

    def peer_views(self) -> list[dict[str, Any]]:
        return [
            {"node": n, "site": "s1", "role": "node", "up": True, "last_heard": 5.0}
            for n in sorted(self.heartbeats)
        ]

    def peer_heartbeat(self, node_id: str) -> Mapping[str, Any]:
        return self.heartbeats[node_id]

    def peer_timeout_s(self) -> float:
        return 6.0

    def fleet_events(self) -> Any:
        return None

    def resync_view(self) -> dict[str, Any] | None:
        return None

    async def anti_entropy(self) -> None:
        pass


@dataclass
class FakeGuard:
    hold: Hold | None = None
    released: str | None = None
    releases: list[str] = field(default_factory=list)

    def view(self) -> dict[str, Any] | None:
        return self.hold.to_dict() if self.hold is not None else None

    async def release(self, why: str) -> Hold | None:
        self.releases.append(why)
        old, self.hold = self.hold, None
        return old


@dataclass
class FakeServices:
    facts: NodeFacts
    state: StateStore
    reconciler: FakeReconciler
    runtime: Any
    syncing: FakeSync | None = None
    store_guard: FakeGuard = field(default_factory=FakeGuard)
    audit: Audit | None = None
    net: Any = None

    def probe_results(self, workload: str) -> list[dict[str, object]]:
        return []

    def podman_service_restarts(self) -> int | None:
        return None

    def sync(self) -> FakeSync | None:
        return self.syncing

    def sync_problem(self) -> str | None:
        return None if self.syncing else "not enrolled"

    async def leaf_links(self) -> list[dict[str, Any]]:
        return []

    def site_manager(self) -> Any:
        return None

    async def nats_monitor(self, path: str) -> dict[str, Any] | None:
        return None

    def fleet_trust(self) -> Any:
        raise NotEnrolledError("this node is not enrolled in a fleet")

    def authenticate(self, technician: str, pin: str) -> str:
        return technician_principal(technician)

    def audit_log(self) -> Audit | None:
        return self.audit

    def network(self) -> Any:
        return self.net

    async def witness_alerts(self) -> list[WitnessAlert]:
        return []


@pytest.fixture
async def svc(tmp_path: Path) -> AsyncIterator[FakeServices]:
    ident = identity.generate(node_principal("n1"))
    async with StateStore(MemoryStore(), ident, node_id="n1", site="s1") as state:
        facts = NodeFacts("n1", "s1", "node", 0.0, tmp_path, tmp_path / "api.sock", Path("/p"))
        yield FakeServices(facts, state, FakeReconciler(state), CannedLogs([]))


async def call(svc: NodeServices, method: str, **params: Any) -> Any:
    route = build_routes(svc)[method]
    assert route.handler is not None
    result = await route.handler(params)
    # What the client reads: a result the route encoded itself goes out as it is.
    return json.loads(result) if isinstance(result, RawJson) else result


def test_every_route_keeps_its_name_and_permission(svc: FakeServices) -> None:
    table: dict[str, Route] = build_routes(svc)
    assert {name: route.write for name, route in table.items()} == ROUTES
    assert [n for n, r in table.items() if (r.handler is None) == (r.stream is None)] == []


async def test_an_applied_workload_is_listed_and_can_be_stopped(svc: FakeServices) -> None:
    assert await call(svc, "workloads.apply", yaml=WEB) == [{"name": "web", "result": "created"}]
    assert await call(svc, "workloads.apply", yaml=WEB) == [{"name": "web", "result": "unchanged"}]
    (view,) = await call(svc, "workloads.list")
    assert view["name"] == "web" and view["enabled"] is True
    await call(svc, "workloads.stop", name="web", **{ACTOR_PARAM: "technician:ann"})
    (view,) = await call(svc, "workloads.list")
    assert view["enabled"] is False and view["provenance"] == {"enabled": "node"}
    newest = (await call(svc, "history.list"))[0]
    assert newest["on_behalf"] == "technician:ann"
    assert newest["summary"] == "override web enabled=false (node)"


async def test_node_status_without_sync_or_supervised_podman(svc: FakeServices) -> None:
    await call(svc, "workloads.apply", yaml=WEB)
    status = await call(svc, "node.status")
    assert status["node"]["id"] == "n1" and status["workloads"]["desired"] == 1
    assert status["sync"] == {"enabled": False, "problem": "not enrolled"}
    assert status["podman"]["supervised"] is False
    assert status["podman"]["service_restarts"] is None
    assert status["store"]["healthy"] is True and status["store"]["hold"] is None


async def test_store_reset_needs_confirmation_and_wakes_the_reconciler(svc: FakeServices) -> None:
    with pytest.raises(ApiError, match="--i-mean-it"):
        await call(svc, "store.reset")
    answer = await call(svc, "store.reset", confirm=True, **{ACTOR_PARAM: "technician:ann"})
    assert answer == {"result": "not_held", "hold": None}
    assert svc.store_guard.releases == ["reset by technician:ann"]
    assert svc.reconciler.triggers == ["store-reset"]
    with pytest.raises(ApiError) as err:
        await call(svc, "store.resync")
    assert err.value.code == "not_enrolled"


async def test_nodes_list_merges_peer_heartbeats(svc: FakeServices) -> None:
    svc.syncing = FakeSync({"n2": {"health": "ok", "workloads": {"Running": 2}}})
    nodes = await call(svc, "nodes.list")
    assert [(n["node"], n["self"], n["health"]) for n in nodes] == [
        ("n1", True, "ok"),
        ("n2", False, "ok"),
    ]
    assert nodes[1]["workloads"] == {"Running": 2}


async def test_the_fleet_view_shows_what_this_node_observed(svc: FakeServices) -> None:
    await call(svc, "workloads.apply", yaml=WEB)
    svc.reconciler.live_status = {"web": StatusRecord(phase="Running", restarts=1)}
    (row,) = await call(svc, "fleet.workloads")
    assert (row["node"], row["name"], row["phase"], row["restarts"]) == ("n1", "web", "Running", 1)
    (site,) = await call(svc, "fleet.sites")
    assert site["site"] == "s1"


async def test_a_not_enrolled_node_refuses_signed_updates(svc: FakeServices) -> None:
    with pytest.raises(NotEnrolledError):
        await call(svc, "updates.submit", doc="fleet")


async def test_logs_of_the_kept_container_are_clipped(svc: FakeServices) -> None:
    await call(svc, "workloads.apply", yaml=WEB)
    want = svc.reconciler.desired.workloads["web"].spec_hash
    svc.reconciler.observed = [
        ObservedContainer("old", "nr-n1-web", "web", "stale", ContainerState.RUNNING, "i"),
        ObservedContainer("new", "nr-n1-web", "web", want, ContainerState.EXITED, "i"),
    ]
    svc.runtime = CannedLogs(["short", "x" * (MAX_LOG_LINE_CHARS + 5)])
    route = build_routes(svc)["workloads.logs"]
    assert route.stream is not None
    lines = [line async for line in route.stream({"name": "web"})]
    assert lines[0] == "short" and lines[1].endswith("[... 5 more characters cut by noderuntime]")
    await call(svc, "workloads.restart", name="web")
    assert svc.reconciler.restarted == [("web", "new")]
    with pytest.raises(NotFoundError):
        await call(svc, "workloads.restart", name="nope")


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    # Unix socket paths are short (108 bytes); pytest's tmp_path may be longer.
    with tempfile.TemporaryDirectory(prefix="nra-", dir="/tmp") as tmp:
        yield Path(tmp)


async def test_routes_serve_over_the_socket_without_a_node(
    svc: FakeServices, short_tmp: Path
) -> None:
    path = short_tmp / "api.sock"
    server = ApiServer(path, build_routes(svc), authenticate=svc.authenticate)
    async with server, ApiClient(path) as client:
        await client.call("workloads.apply", {"yaml": WEB})
        assert [w["name"] for w in await client.call("workloads.list")] == ["web"]
        with pytest.raises(ApiError) as err:
            await client.call("updates.submit", {"doc": "fleet"})
        assert err.value.code == "not_enrolled"


async def test_override_fields_are_served_and_name_the_lockable_ones(svc: FakeServices) -> None:
    answer = await call(svc, "overrides.fields")
    assert answer["fields"] == list(OVERRIDE_FIELDS) and "env.<NAME>" in answer["fields"]
    assert answer["needPolicy"] == [
        "image",
        "command",
        "args",
        "resources.cpus",
        "resources.memory",
    ]
    await call(svc, "workloads.apply", yaml=WEB)
    with pytest.raises(ApiError) as err:
        await call(svc, "policy.lock", workload="web", fields=["ports", "env"])
    assert str(err.value) == (
        "cannot lock 'ports': lockable are '*' (everything), enabled, image, command, args, "
        "restartPolicy, env, env.<NAME>, resources, resources.cpus, resources.memory"
    )
    locked = await call(svc, "policy.lock", workload="web", fields=["env", "resources.cpus"])
    assert locked == {"workload": "web", "locked": ["env", "resources.cpus"]}


# --- workload security policy (issue 13 §4, §6) ---------------------------------------------

ROOTED = WEB + "  volumes: [{hostPath: /, mountPath: /host}]\n"


async def test_apply_refuses_what_policy_does_not_allow_until_an_operator_allows_it(
    svc: FakeServices,
) -> None:
    audit = MemoryAudit()
    svc.audit = audit  # type: ignore[assignment]
    with pytest.raises(SpecError) as err:
        await call(svc, "workloads.apply", yaml=ROOTED, source="w.yaml")
    assert audit.of(AuditKind.POLICY_REFUSED) == [
        {"actor": "api", "workload": "web", "needs": "hostPath:/", "at": "apply"}
    ]
    assert err.value.code == "invalid_spec"
    assert (
        "w.yaml:8: spec.volumes[0].hostPath: mounting host path / is refused by fleet policy"
        in (str(err.value))
    )
    assert await call(svc, "workloads.list") == []
    allowed = await call(svc, "policy.allow", allow=["hostPath:/"], workload="web")
    assert allowed == {"site": "*", "workload": "web", "allowed": ["hostPath:/"]}
    assert await call(svc, "policy.list") == [allowed]
    assert await call(svc, "workloads.apply", yaml=ROOTED) == [{"name": "web", "result": "created"}]
    # Taking it back: the node refuses the workload (reported, never started).
    await call(svc, "policy.allow", allow=["hostPath:/"], workload="web", remove=True)
    (view,) = await call(svc, "workloads.list")
    assert view["phase"] == "Failed" and view["message"].startswith("refused by fleet policy")


async def test_a_technician_cannot_widen_policy(svc: FakeServices) -> None:
    tech = {ACTOR_PARAM: "technician:ann"}
    for prepare in (False, True):
        with pytest.raises(PermissionDeniedError, match="technician cannot widen"):
            await call(svc, "policy.allow", allow=["privileged"], prepare=prepare, **tech)
    assert await call(svc, "policy.list") == []
    with pytest.raises(ApiError, match="unknown allowance 'root'"):
        await call(svc, "policy.allow", allow=["root"])


@pytest.mark.parametrize(
    ("field", "value"),
    [("image", "localhost/other:1"), ("command", ["sh"]), ("args", ["x"])],
)
async def test_a_technicians_override_that_widens_needs_policy(
    svc: FakeServices, field: str, value: Any
) -> None:
    await call(svc, "workloads.apply", yaml=WEB)
    audit = MemoryAudit()
    svc.audit = audit  # type: ignore[assignment]
    tech = {ACTOR_PARAM: "technician:ann"}
    for scope in ("node", "site"):
        with pytest.raises(PolicyError, match="fleet policy does not allow"):
            await call(
                svc, "overrides.set", workload="web", field=field, value=value, scope=scope, **tech
            )
    await call(svc, "overrides.set", workload="web", field="env.A", value="1", **tech)
    refused = {"actor": "technician:ann", "workload": "web", "field": field, "at": "override"}
    assert audit.of(AuditKind.POLICY_REFUSED) == [refused, refused]
    await call(svc, "policy.allow", allow=[f"override:{field}"], site="s1")
    await call(svc, "overrides.set", workload="web", field=field, value=value, **tech)
    (view,) = await call(svc, "workloads.list")
    assert view["spec"]["spec"][field] == value


async def test_an_enrolled_node_takes_policy_only_signed_by_an_operator(svc: FakeServices) -> None:
    svc.syncing = FakeSync({})
    with pytest.raises(ApiError) as err:
        await call(svc, "policy.allow", allow=["device:/dev/dri"], workload="infer")
    assert err.value.code == "operator_signature_required"
    prepared = await call(svc, "policy.allow", allow=["device:/dev/dri"], prepare=True)
    assert prepared["prepared"]["doc"] == "fleet" and prepared["prepared"]["data"]
    assert await call(svc, "policy.list") == []  # prepared, signed by the CLI, nothing stored
