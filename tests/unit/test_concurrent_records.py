"""Concurrent whole-record writes are settled by HLC, later wins (issue 9, section 4).

Two nodes' states (in-process documents, merged through ``ingest`` as sync would) write the
same record while apart; the earlier write is made on the client pycrdt's own order favours.
"""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any

import pytest
from pycrdt import Doc

from noderuntime.api.routes import build_routes
from noderuntime.cli.main import render_describe
from noderuntime.crdt import records, schema
from noderuntime.crdt.hlc import ZERO, Hlc, next_hlc
from noderuntime.crdt.state import StateStore
from noderuntime.crdt.store import MemoryStore, NewUpdate
from noderuntime.identity import keys as identity
from noderuntime.reconcile.desired import compute_desired

# pycrdt keeps, of two concurrent sets of one map key, the one whose client id is higher.
FAVOURED, OTHER = 2**40, 7
EARLY, LATE = 1_800_000_000.0, 1_800_000_002.0


def test_pycrdt_alone_keeps_the_write_of_the_favoured_client() -> None:
    """The premise: one map key set concurrently keeps FAVOURED's value, whenever written."""
    docs: list[Doc[Any]] = [Doc(client_id=FAVOURED), Doc(client_id=OTHER)]
    for doc, value in zip(docs, ("early", "late"), strict=True):
        doc.get("m", type=schema.Map)["web"] = value
    a, b = docs
    a.apply_update(b.get_update())
    b.apply_update(a.get_update())
    assert a.get("m", type=schema.Map)["web"] == b.get("m", type=schema.Map)["web"] == "early"


def spec(image: str) -> dict[str, Any]:
    return {
        "apiVersion": "noderuntime/v1",
        "kind": "Workload",
        "metadata": {"name": "web"},
        "spec": {"image": image},
    }


async def node(name: str, client: int) -> StateStore:
    store = MemoryStore()
    await store.open()
    store.save_client(schema.FLEET_DOC, client, f"operator:{name}")
    state = StateStore(store, identity.generate(f"operator:{name}"), node_id=name, site="s1")
    return await state.__aenter__()


async def sync(*states: StateStore) -> None:
    """Every state ingests every other's stored updates (what replication does)."""
    for a in states:
        for b in states:
            if a is not b:
                mine = [
                    NewUpdate(u.doc, u.data, u.author, u.signature, u.ts, u.meta)
                    for u in reversed(await a.history(1000))
                ]
                await b.ingest(mine)


def apply_at(image: str, now: float) -> Any:
    def mutate(doc: Any) -> Hlc:
        hlc = schema.write_hlc(doc, {schema.WORKLOADS: ["web"]}, now)
        schema.put_workload(doc, "web", spec(image), hlc)
        return hlc

    return mutate


def fake_node(state: StateStore) -> Any:
    desired = compute_desired(state.snapshot(), node_id="n1", site="s1", node_labels={})
    rec = SimpleNamespace(
        desired=desired,
        live_status={},
        observed_once=True,
        status_write_error=None,
        events=[],
        observed=[],
    )
    facts = SimpleNamespace(node_id="n1", site="s1", role="node", is_hub=False, labels={})
    return SimpleNamespace(
        state=state,
        reconciler=rec,
        facts=facts,
        sync=lambda: None,
        probe_results=lambda workload: [],
    )


async def test_the_later_of_two_concurrent_applies_wins_and_the_loser_is_shown() -> None:
    hub, site = await node("hub", FAVOURED), await node("site", OTHER)
    await hub.write(hub.fleet_doc, apply_at("v0", EARLY - 60), summary="apply web")
    await sync(hub, site)
    # Apart: the hub applies first, the site node two seconds later.
    await hub.write(hub.fleet_doc, apply_at("hub-v1", EARLY), summary="apply web")
    await site.write(site.fleet_doc, apply_at("site-v1", LATE), summary="apply web")
    await sync(hub, site)
    for st in (hub, site):
        assert st.snapshot().fleet.workloads["web"]["spec"]["image"] == "site-v1"

    routes = build_routes(fake_node(hub))
    assert routes["workloads.get"].handler is not None
    view = await routes["workloads.get"].handler({"name": "web"})
    (lost,) = view["concurrent_writes"]
    assert lost["record"] == "workloads/web"
    assert (lost["lost"]["by"], lost["won"]["by"]) == ("operator:hub", "operator:site")
    assert lost["lost"]["at"] == EARLY and lost["won"]["at"] == LATE
    assert "operator:hub's write at" in render_describe(view)

    assert routes["history.list"].handler is not None
    history = await routes["history.list"].handler({"limit": 10})
    losers = [h for h in history if h["lost_to"]]
    assert [(h["author"], h["lost_to"]["by"]) for h in losers] == [
        ("operator:hub", "operator:site")
    ]
    assert losers[0]["hlc"] == Hlc(int(EARLY * 1000)).encode()

    # The next write saw both: the contest is over, and nothing is shown as lost any more.
    await hub.write(hub.fleet_doc, apply_at("v2", LATE + 1))
    await sync(hub, site)
    for st in (hub, site):
        assert st.snapshot().fleet.workloads["web"]["spec"]["image"] == "v2"
        assert st.read(st.fleet_doc, schema.contests) == []


async def test_a_later_delete_beats_an_earlier_concurrent_write_and_vice_versa() -> None:
    hub, site = await node("hub", FAVOURED), await node("site", OTHER)
    await hub.write(hub.fleet_doc, apply_at("v0", EARLY - 60))
    await sync(hub, site)

    def delete_at(now: float) -> Any:
        def mutate(doc: Any) -> Hlc:
            hlc = schema.write_hlc(doc, {schema.WORKLOADS: ["web"]}, now)
            assert schema.delete_workload(doc, "web", hlc)
            return hlc

        return mutate

    await hub.write(hub.fleet_doc, apply_at("hub-v1", EARLY))
    await site.write(site.fleet_doc, delete_at(LATE))
    await sync(hub, site)
    assert all("web" not in st.snapshot().fleet.workloads for st in (hub, site))

    await hub.write(hub.fleet_doc, apply_at("again", LATE + 10))
    await sync(hub, site)
    await site.write(site.fleet_doc, delete_at(LATE + 20))
    await hub.write(hub.fleet_doc, apply_at("latest", LATE + 30))
    await sync(hub, site)
    assert all(
        st.snapshot().fleet.workloads["web"]["spec"]["image"] == "latest" for st in (hub, site)
    )


async def test_locks_and_overrides_are_settled_by_time_too() -> None:
    hub, site = await node("hub", FAVOURED), await node("site", OTHER)

    def lock_at(fields: list[str], now: float) -> Any:
        return lambda doc: schema.set_lock(
            doc, "web", fields, schema.write_hlc(doc, {schema.LOCKS: ["web"]}, now)
        )

    def override_at(value: str, now: float) -> Any:
        key = schema.override_key("web", "image")
        return lambda doc: schema.set_override(
            doc, "web", "image", value, schema.write_hlc(doc, {schema.OVERRIDES: [key]}, now)
        )

    await hub.write(hub.fleet_doc, lock_at(["image"], EARLY))
    await site.write(site.fleet_doc, lock_at(["env"], LATE))
    await hub.write(hub.site_doc, override_at("early", EARLY))
    await site.write(site.site_doc, override_at("late", LATE))
    await sync(hub, site)
    for st in (hub, site):
        assert st.snapshot().fleet.locks["web"] == frozenset({"env"})
        assert st.snapshot().site_overrides["web"]["image"] == "late"


def test_records_written_before_hlcs_read_as_hlc_zero() -> None:
    doc: Doc[Any] = Doc()
    # As a node before this change wrote it: the bare record under its name.
    doc.get(schema.WORKLOADS, type=schema.Map)["web"] = json.dumps(spec("old"))
    doc.get(schema.OVERRIDES, type=schema.Map)["web/image"] = json.dumps("pinned")
    assert schema.read_fleet(doc).workloads["web"]["spec"]["image"] == "old"
    assert schema.read_site(doc) == {"web": {"image": "pinned"}}
    (legacy,) = records.read_versions(doc, schema.WORKLOADS)["web"]
    assert legacy.hlc == ZERO
    # Any write with an HLC supersedes it, even one whose wall clock reads 0.
    schema.put_workload(doc, "web", spec("new"), next_hlc(ZERO, 0.0))
    assert schema.read_fleet(doc).workloads["web"]["spec"]["image"] == "new"
    assert schema.contests(doc) == []


@pytest.mark.parametrize(
    ("seen", "now", "expected"),
    [
        (ZERO, 1.5, Hlc(1500, 0)),
        (Hlc(2000, 3), 1.5, Hlc(2000, 4)),  # a clock behind what it saw
        (Hlc(1500, 3), 1.5, Hlc(1500, 4)),  # the same millisecond
    ],
)
def test_next_hlc_is_later_than_what_it_saw(seen: Hlc, now: float, expected: Hlc) -> None:
    assert next_hlc(seen, now) == expected > seen
    assert Hlc.decode(expected.encode()) == expected


def test_a_malformed_version_is_set_aside_not_read() -> None:
    doc: Doc[Any] = Doc()
    schema.put_workload(doc, "web", spec("good"))
    doc.get("workloadVersions", type=schema.Map)["web#5"] = json.dumps({"hlc": "9" * 40})
    bad: schema.Bad = []
    assert schema.read_fleet(doc, bad).workloads["web"]["spec"]["image"] == "good"
    assert bad and bad[0][:2] == ("workloads", "web")


async def test_an_enqueued_write_with_an_hlc_signs_it_into_meta() -> None:
    hub = await node("hub", FAVOURED)
    await hub.write(hub.fleet_doc, apply_at("v1", EARLY), summary="apply web")
    (u,) = await hub.history(1)
    assert json.loads(u.meta) == {"hlc": Hlc(int(EARLY * 1000)).encode(), "summary": "apply web"}
    data, meta = hub.prepare_change(hub.fleet_doc, apply_at("v2", LATE), "apply web")
    assert data is not None and json.loads(meta)["hlc"] == Hlc(int(LATE * 1000)).encode()
    await asyncio.sleep(0)


def test_removing_a_record_set_aside_takes_every_version_of_it() -> None:
    doc: Doc[Any] = Doc()
    schema.put_workload(doc, "web", spec("good"))
    doc.get("workloadVersions", type=schema.Map)["web#5"] = "[" * 3000
    assert schema.has_record(doc, schema.WORKLOADS, "web")
    assert schema.remove_record(doc, schema.WORKLOADS, "web")
    assert not schema.has_record(doc, schema.WORKLOADS, "web")
    assert schema.read_fleet(doc).workloads == {}
