"""Rollout routes over a memory store at a hub: what each command writes, and what it refuses."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

import pytest

from noderuntime.api.routes import build_routes
from noderuntime.crdt.state import StateStore
from noderuntime.crdt.store import MemoryStore
from noderuntime.errors import ConflictError, NotFoundError, SpecError
from noderuntime.identity import keys as identity
from noderuntime.rollout.record import progress_of, rollout_of

IDENT = identity.generate("node:hub1")


def workload(image: str) -> str:
    return (
        "apiVersion: noderuntime/v1\nkind: Workload\n"
        f"metadata: {{name: web}}\nspec:\n  image: {image}\n"
    )


async def test_commands_write_the_record_and_facts_and_guard_apply_and_delete() -> None:
    async with StateStore(MemoryStore(), IDENT, node_id="hub1", site="hq") as st:
        # What these routes use of the node's services: its store, and that it is a hub.
        services = SimpleNamespace(
            state=st,
            sync=lambda: None,
            facts=SimpleNamespace(node_id="hub1", site="hq", role="hub", is_hub=True, labels={}),
        )
        routes = build_routes(cast(Any, services))

        async def call(method: str, **params: Any) -> Any:
            handler = routes[method].handler
            assert handler is not None
            return await handler(params)

        await call("workloads.apply", yaml=workload("img:v1"))
        started = await call("rollout.start", name="web", yaml=workload("img:v2"), waves="10%")
        assert started["revision"] == 2 and started["waves"] == ["10%", "100%"]
        with pytest.raises(ConflictError):
            await call("workloads.apply", yaml=workload("img:v3"))
        with pytest.raises(ConflictError):
            await call("rollout.start", name="web", yaml=workload("img:v3"), waves="100%")
        assert (await call("rollout.pause", name="web"))["result"] == "pause"
        assert (await call("rollout.status", name="web"))["state"] == "Paused"
        assert (await call("rollout.resume", name="web"))["result"] == "resume"
        rows = await call("rollout.history", name="web")
        assert [(r["revision"], r["note"], r["stable"]) for r in rows] == [
            (1, "apply", True),
            (2, "", False),
        ]
        # Deleting the workload ends its rollout: nothing may complete it back into being.
        await call("workloads.delete", name="web")
        fleet = st.snapshot().fleet
        r = rollout_of(fleet, "web")
        assert r is not None and progress_of(fleet, r.id).state().value == "Aborted"
        assert "web" not in fleet.workloads
        with pytest.raises(NotFoundError):
            await call("rollout.abort", name="web")
        out = await call("site.window.set", site="lab", window="sat 02:00-04:00")
        assert out == {"site": "lab", "window": "sat 02:00-04:00"}
        assert st.snapshot().fleet.windows["lab"]["window"] == "sat 02:00-04:00"


async def test_a_rollout_candidate_is_held_to_the_workload_security_policy() -> None:
    async with StateStore(MemoryStore(), IDENT, node_id="hub1", site="hq") as st:
        services = SimpleNamespace(
            state=st,
            sync=lambda: None,
            facts=SimpleNamespace(node_id="hub1", site="hq", role="hub", is_hub=True, labels={}),
        )
        routes = build_routes(cast(Any, services))

        async def call(method: str, **params: Any) -> Any:
            handler = routes[method].handler
            assert handler is not None
            return await handler(params)

        await call("workloads.apply", yaml=workload("img:v1"))
        privileged = workload("img:v2") + "  securityContext: {privileged: true}\n"
        with pytest.raises(SpecError) as err:
            await call("rollout.start", name="web", yaml=privileged, waves="100%")
        assert "spec.securityContext.privileged: a privileged container is refused by fleet " in (
            str(err.value)
        )
        assert rollout_of(st.snapshot().fleet, "web") is None
        await call("policy.allow", allow=["privileged"], workload="web", site="hq")
        assert (await call("rollout.start", name="web", yaml=privileged, waves="100%"))["waves"]
