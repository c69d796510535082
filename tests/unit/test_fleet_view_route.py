"""fleet.workloads over real node documents: rendered for the CLI on request, and warmed at a
hub's start so that its first call reads no document."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from noderuntime.api.fleetview import FleetSources, build_fleet_routes
from noderuntime.api.protocol import Attached, RawJson, decode, encode
from noderuntime.api.server import Route
from noderuntime.cli.jsontext import json_text
from noderuntime.crdt import schema
from noderuntime.crdt.schema import StatusRecord
from noderuntime.crdt.state import StateStore
from noderuntime.crdt.store import MemoryStore
from noderuntime.errors import ApiError
from noderuntime.identity import keys as identity
from noderuntime.identity.principals import node_principal


@pytest.fixture
async def state() -> AsyncIterator[StateStore]:
    ident = identity.generate(node_principal("hub"))
    async with StateStore(MemoryStore(), ident, node_id="hub", site="hq") as st:
        for i in range(30):
            doc = schema.node_doc(f"n{i:02d}")
            await st.ensure_doc(doc)
            info = {"nodeId": f"n{i:02d}", "site": f"s{i % 3}", "role": "node"}
            rec = StatusRecord(phase="Running", restarts=i, since=1.5, message=f"{i}% \u00e9")

            def mutate(d: Any, info: dict[str, Any] = info, rec: StatusRecord = rec) -> None:
                schema.put_info(d, info)
                schema.put_status(d, "web", rec)
                schema.put_status(d, "db", rec)

            await st.write(doc, mutate, summary="seed")
        yield st


def _routes(state: StateStore) -> dict[str, Route]:
    src = FleetSources(
        node_id="hub",
        site="hq",
        role="hub",
        labels={},
        state=state,
        peers=list,
        heartbeat=lambda _: {},
        stale_after_s=lambda: 6.0,
    )
    return build_fleet_routes(lambda: src)


async def _call(route: Route, **params: Any) -> Any:
    assert route.handler is not None
    result = await route.handler(params)
    if isinstance(result, Attached):
        return result.decode()
    assert isinstance(result, RawJson)
    return decode(encode({"id": 1, "ok": True, "result": result}))["result"]


async def test_rendered_on_request_as_the_cli_prints_the_rows(state: StateStore) -> None:
    route = _routes(state)["fleet.workloads"]
    for params in ({}, {"site": "s1"}, {"node": "n04"}, {"site": "none"}):
        rows = await _call(route, **params)
        text = await _call(route, render="json", **params)
        assert text == json_text(rows) == json.dumps(rows, indent=2, sort_keys=True)
    assert len(await _call(route)) == 60
    with pytest.raises(ApiError) as err:
        await _call(route, render="yaml")
    assert err.value.code == "bad_request"


async def test_a_warmed_hub_answers_its_first_call_without_reading_a_document(
    state: StateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    route = _routes(state)["fleet.workloads"]
    assert route.warm is not None
    await route.warm()

    def no_read(*_: Any) -> Any:
        raise AssertionError("a node document was read by the call")

    monkeypatch.setattr(state, "read", no_read)
    text = await _call(route, render="json")
    assert len(json.loads(text)) == 60
