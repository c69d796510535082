"""A held node gets its documents back from a peer: when the hold lifts by itself.

Pure rules (``ResyncWatch``), then the real engine over the in-memory channel: a hub gives a
node whose store was lost its fleet, site and own documents back, and the watch says so."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from noderuntime.crdt import schema
from noderuntime.sync.resync import Baseline, ResyncWatch
from tests.sync.natsfixtures import operator_write
from tests.unit.test_sync_engine_mem import MemFleet, MemNode, put, until

DOCS = ("fleet", "site/s1", "node/n1")


NOTHING = Baseline()


def watch(baseline: Baseline = NOTHING, holding: Callable[[], bool] = lambda: True) -> Any:
    done: list[str] = []
    w = ResyncWatch(DOCS, baseline, holding=holding, on_done=done.append)
    return w, done


def test_one_peer_must_give_every_document_back() -> None:
    w, done = watch()
    w.compared("hub", "fleet", {1: 5}, 0)
    w.compared("n2", "site/s1", {}, 0)
    w.compared("n2", "node/n1", {}, 0)
    assert done == [] and w.active  # split between two peers: not enough
    w.compared("hub", "site/s1", {}, 0)
    w.compared("hub", "node/n1", {7: 3}, 0)
    assert done == ["hub"] and not w.active and w.view()["done_by"] == "hub"
    w.compared("hub", "fleet", {1: 5}, 0)
    assert done == ["hub"]  # once


def test_a_document_we_still_lack_something_of_is_not_back() -> None:
    w, done = watch()
    for doc in DOCS:
        w.compared("hub", doc, {}, 0)
    assert done == ["hub"]
    w2, done2 = watch()
    w2.compared("hub", "fleet", {1: 5}, 0)
    w2.compared("hub", "site/s1", {}, 0)
    w2.compared("hub", "node/n1", {7: 3}, 2)  # updates still to come
    w2.compared("hub", "fleet", {1: 6}, 1)  # and the fleet moved on meanwhile
    w2.compared("hub", "node/n1", {7: 3}, 0)
    assert done2 == [] and w2.view()["back_from"] == {"hub": ["node/n1", "site/s1"]}


def test_a_peer_that_has_less_than_the_node_had_cannot_lift_the_hold() -> None:
    had = Baseline(units={"fleet": 10, "site/s1": 0}, clocks={"node/n1": {7: 4, 9: 1}})
    w, done = watch(had)
    w.compared("new-hub", "fleet", {1: 3}, 0)  # a rebuilt hub: 3 of 10 operations
    w.compared("new-hub", "site/s1", {}, 0)
    w.compared("new-hub", "node/n1", {7: 4}, 0)  # lacks the node's writer 9
    assert done == []
    w.compared("hub", "fleet", {1: 6, 2: 4}, 0)
    w.compared("hub", "site/s1", {}, 0)
    w.compared("hub", "node/n1", {7: 4, 9: 1, 11: 2}, 0)
    assert done == ["hub"]


def test_a_node_that_does_not_hold_watches_nothing() -> None:
    held = [False]
    w, done = watch(holding=lambda: held[0])
    for doc in DOCS:
        w.compared("hub", doc, {}, 0)
    assert done == [] and not w.active and w.view()["back_from"] == {}


# --- the engine over the in-memory channel ------------------------------------------------


def info(node_id: str) -> Callable[[Any], None]:
    return lambda doc: schema.put_info(doc, {"nodeId": node_id})


def node_info(node: MemNode, name: str = "node/n1") -> dict[str, Any]:
    view = node.state.read(name, schema.read_node)
    assert isinstance(view, schema.NodeView)
    return dict(view.info)


async def test_a_hub_gives_a_lost_store_back_and_the_watch_lifts_the_hold() -> None:
    async with contextlib.AsyncExitStack() as stack:
        fleet = MemFleet(stack)
        hub = await fleet.node("hub", "hq", role="hub")
        ident = fleet.trust.enroll("node:n1", "node", "s1")
        async with contextlib.AsyncExitStack() as first_life:
            fleet.stack = first_life
            n1 = await fleet.node("n1", "s1", ident=ident)
            await operator_write(fleet.trust, hub.state, "fleet", put("web"))
            await n1.state.write("node/n1", info("n1"))
            await n1.state.write("site/s1", lambda d: schema.set_override(d, "web", "image", "x"))
            await until(
                lambda: "web" in n1.workloads() and hub.state.holds("node/n1"), "first sync"
            )
            await until(lambda: node_info(hub) == {"nodeId": "n1"}, "node doc at hub")
            before = {d: dict(n1.state.stored_clocks(d)) for d in DOCS}
        # The store is gone: a new, empty one; what it had is the baseline (its mark).
        had = Baseline(
            units={d: sum(sv.values()) for d, sv in before.items()},
            clocks={"node/n1": before["node/n1"]},
        )
        held = [True]
        done: list[str] = []

        def lifted(peer: str) -> None:
            done.append(peer)
            held[0] = False

        w = ResyncWatch(DOCS, had, holding=lambda: held[0], on_done=lifted)
        fleet.stack = stack
        n1 = await fleet.node("n1", "s1", ident=ident, resync=w)
        await n1.state.write("node/n1", info("n1"))  # what the restarted node writes at once
        await until(lambda: done == ["hub"], "the hub gave every document back")
        assert "web" in n1.workloads()
        assert node_info(n1) == {"nodeId": "n1"}
        assert n1.site("s1") == {"web": {"image": "x"}}
        assert all(sum(n1.state.stored_clocks(d).values()) >= had.units[d] for d in DOCS)
        assert n1.engine.rejections.total == 0 and hub.engine.rejections.total == 0


async def test_a_hub_answers_a_resyncing_node_with_its_state_vector_even_with_nothing_to_send() -> (
    None
):
    async with contextlib.AsyncExitStack() as stack:
        fleet = MemFleet(stack)
        hub = await fleet.node("hub", "hq", role="hub")
        held = [False]
        done: list[str] = []
        w = ResyncWatch(DOCS, Baseline(), holding=lambda: held[0], on_done=done.append)
        n1 = await fleet.node("n1", "s1", resync=w)
        await operator_write(fleet.trust, hub.state, "fleet", put("web"))
        await n1.state.write("node/n1", info("n1"))
        await until(lambda: "web" in n1.workloads() and node_info(hub) != {}, "in sync")
        held[0] = True  # from now on n1 says "resync" in its heartbeats
        await until(lambda: hub.engine.peers["n1"].heartbeat.get("resync") is True, "flag seen")
        assert done == []
        await n1.engine.anti_entropy()  # nothing is missing on either side
        await until(lambda: done == ["hub"], "the hub's state vectors, though it sent nothing")
