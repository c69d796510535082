"""Records no reader can use: reported from every held document, removed one by one (issue 10)."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest
from pycrdt import Doc, Map

from noderuntime.api.routes.records import record_routes
from noderuntime.crdt.state import Origin, StateStore
from noderuntime.crdt.store import MemoryStore, NewUpdate
from noderuntime.errors import ApiError, NotFoundError
from noderuntime.identity import keys as identity

POISON = "[" * 3000


def poison(doc: str, map_name: str, key: str) -> NewUpdate:
    """A received update (signatures are the sync layer's to check) setting one bad record."""
    d: Doc[Any] = Doc()
    d.get(map_name, type=Map)[key] = POISON
    return NewUpdate(doc, d.get_update(), "node:n9", bytes(64), time.time(), "{}")


@pytest.fixture
async def hub() -> Any:
    st = StateStore(MemoryStore(), identity.generate("node:hub"), node_id="hub", site="hq")
    async with st:
        yield st


async def test_a_hub_reports_bad_records_of_every_document_it_holds_once(
    hub: StateStore, caplog: pytest.LogCaptureFixture
) -> None:
    updates = [poison("site/hq", "overrides", "w/image"), poison("node/n9", "info", "node")]
    await hub.ingest(updates, origin=Origin.PEER, create_docs=True)
    with caplog.at_level(logging.ERROR):
        found = {(q.doc, q.map, q.key) for q in hub.quarantined()}
        hub.quarantined()
        hub.snapshot()
    assert found == {("site/hq", "overrides", "w/image"), ("node/n9", "info", "node")}
    assert len([r for r in caplog.records if "set aside" in r.message]) == 2
    # Only this node's own documents are in the snapshot readers use.
    assert {q.doc for q in hub.snapshot().quarantined} == {"site/hq"}


async def test_a_record_is_removed_by_the_node_where_it_may_write_else_by_an_operator(
    hub: StateStore,
) -> None:
    updates = [poison("site/hq", "overrides", "w/image"), poison("node/n9", "info", "node")]
    await hub.ingest(updates, origin=Origin.PEER, create_docs=True)
    remove = record_routes(lambda: hub, enrolled=lambda: True)["records.remove"]
    assert remove.write and remove.handler is not None
    own = {"doc": "site/hq", "map": "overrides", "key": "w/image"}
    assert await remove.handler(own) == own | {"removed": True}
    assert [q.doc for q in hub.quarantined()] == ["node/n9"]
    with pytest.raises(NotFoundError):
        await remove.handler(own)
    with pytest.raises(NotFoundError, match="does not hold"):
        await remove.handler({"doc": "site/zz", "map": "overrides", "key": "w/image"})
    other = {"doc": "node/n9", "map": "info", "key": "node"}
    with pytest.raises(ApiError, match="--as FLEETDIR") as refused:
        await remove.handler(other)
    assert refused.value.code == "operator_signature_required"
    # With --as the node prepares the update for the operator to sign; nothing changes yet.
    out = await remove.handler(other | {"prepare": True})
    assert out["prepared"]["doc"] == "node/n9" and out["prepared"]["data"]
    assert [q.doc for q in hub.quarantined()] == ["node/n9"]
