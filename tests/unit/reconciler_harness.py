"""A reconciler over FakeRuntime, a memory store and a manual clock, driven pass by pass."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from noderuntime.audit.log import AuditSink
from noderuntime.config.model import NodeConfig
from noderuntime.crdt import schema
from noderuntime.crdt.state import StateStore
from noderuntime.crdt.store import MemoryStore, UpdateStore
from noderuntime.identity import keys
from noderuntime.reconcile.loop import HoldSource, Reconciler
from noderuntime.reconcile.secrets import SecretFiles
from noderuntime.runtime.fake import FakeRuntime, ManualClock
from noderuntime.spec.models import canonical_dict
from noderuntime.spec.parse import workload_from_dict

NODE = "n1"
IMAGE = "localhost/busybox:1"
START = 1_000_000.0
BOOT = START - 3600.0
IDENT = keys.generate(f"node:{NODE}")


def workload(
    name: str, *, image: str = IMAGE, policy: str = "always", **spec: Any
) -> dict[str, Any]:
    """A canonical stored workload (as `apply` writes it)."""
    raw = {
        "apiVersion": "noderuntime/v1",
        "kind": "Workload",
        "metadata": {"name": name},
        "spec": {"image": image, "restartPolicy": policy, **spec},
    }
    return canonical_dict(workload_from_dict(raw))


def config(**overrides: Any) -> NodeConfig:
    return NodeConfig.model_validate(
        {"nodeId": NODE, "site": "s1", "reconcileIntervalSeconds": 15, **overrides}
    )


@dataclass
class Harness:
    clock: ManualClock
    runtime: FakeRuntime
    state: StateStore
    rec: Reconciler

    async def apply(self, *workloads: Mapping[str, Any]) -> None:
        def put(doc: Any) -> None:
            for w in workloads:
                schema.put_workload(doc, w["metadata"]["name"], w)

        await self.state.write(self.state.fleet_doc, put)

    async def delete(self, name: str) -> None:
        await self.state.write(self.state.fleet_doc, lambda doc: schema.delete_workload(doc, name))

    async def override(self, name: str, path: str, value: Any) -> None:
        await self.state.write(
            self.state.node_doc, lambda doc: schema.set_override(doc, name, path, value)
        )

    async def settle(self, max_passes: int = 20) -> int:
        """Run passes while one is asked for (as the loop would); returns how many ran."""
        passes = 0
        while self.rec.pending:
            await self.rec.reconcile_once()
            passes += 1
            assert passes <= max_passes, "the reconciler keeps asking for passes"
        return passes

    async def tick(self) -> float:
        """One pass, whether asked for or not (the loop's timer); returns the next wait."""
        return await self.rec.reconcile_once()

    def status(self, name: str) -> schema.StatusRecord:
        return self.state.snapshot().node.status[name]

    def kinds(self, workload: str) -> list[str]:
        return [e.kind for e in self.rec.events if e.workload == workload]


@contextlib.asynccontextmanager
async def harness(
    *,
    runtime: FakeRuntime | None = None,
    store: UpdateStore | None = None,
    clock: ManualClock | None = None,
    boot_time: float = BOOT,
    images: Iterable[str] = (IMAGE,),
    loop: bool = False,
    hold: HoldSource | None = None,
    secret_files: SecretFiles | None = None,
    audit: AuditSink | None = None,
    protected_paths: tuple[str, ...] = (),
    **cfg: Any,
) -> AsyncIterator[Harness]:
    """``runtime``, ``store`` and ``clock`` may come from an earlier harness: a node restart."""
    clock = clock or ManualClock(START)
    runtime = runtime or FakeRuntime(clock=clock, images=images)
    async with StateStore(
        store or MemoryStore(), IDENT, node_id=NODE, site="s1", clock=clock
    ) as state:
        rec = Reconciler(
            config=config(**cfg),
            state=state,
            runtime=runtime,
            clock=clock,
            boot_time=boot_time,
            loop=loop,
            hold=hold,
            secret_files=secret_files,
            audit=audit,
            protected_paths=protected_paths,
        )
        async with rec:
            yield Harness(clock, runtime, state, rec)
