"""Joining a fleet from the console: enrolment state, and a credential file from a stick."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from test_api_routes import CannedLogs, FakeReconciler, FakeServices, call

from noderuntime.api.routes.join import probe
from noderuntime.api.server import ACTOR_PARAM
from noderuntime.api.services import NodeFacts
from noderuntime.crdt.state import StateStore
from noderuntime.crdt.store import MemoryStore
from noderuntime.errors import EnrollmentError
from noderuntime.fleet import FleetAuthority
from noderuntime.identity import keys as identity
from noderuntime.identity.principals import node_principal


@pytest.fixture
async def svc(tmp_path: Path) -> AsyncIterator[FakeServices]:
    ident = identity.generate(node_principal("n1"))
    data = tmp_path / "data"
    data.mkdir()
    identity.save_key(data / "identity.key", ident)
    async with StateStore(MemoryStore(), ident, node_id="n1", site="s1") as state:
        facts = NodeFacts("n1", "s1", "node", 0.0, data, data / "api.sock", Path("/p"))
        yield FakeServices(facts, state, FakeReconciler(state), CannedLogs([]))


async def test_a_credential_from_a_stick_enrols_the_node(svc: FakeServices, tmp_path: Path) -> None:
    before = await call(svc, "enrolment.status")
    assert before["enrolled"] is False and before["public_key"]
    fleet = FleetAuthority.init(tmp_path / "fleet", "alice")
    key = identity.load_key(svc.facts.data_dir / "identity.key", "node").public_bytes
    stick = tmp_path / "stick"
    stick.mkdir()
    (stick / "n1.cred").write_bytes(fleet.enroll_node("n1", "s1", public_key=key).to_json())
    (stick / "n1.token").write_bytes(fleet.enroll_node("n1", "s1").to_json())

    with pytest.raises(
        EnrollmentError,
        # The key is base64: its + and / are no regex.
        match=re.escape(f"credential file for this node's key instead: {before['public_key']}"),
    ):
        await call(svc, "enrolment.import", path=str(stick / "n1.token"))
    with pytest.raises(EnrollmentError, match="full path"):
        await call(svc, "enrolment.import", path="n1.cred")

    done = await call(
        svc, "enrolment.import", path=str(stick / "n1.cred"), **{ACTOR_PARAM: "technician:ann"}
    )
    assert done == {"fleet_id": fleet.fleet_id, "restart_needed": True, "by": "technician:ann"}
    after = await call(svc, "enrolment.status")
    assert after["enrolled"] is True and after["links"] == [] and after["peers"] == []
    assert svc.reconciler.events[-1].kind == "enrolled"


async def test_a_down_peer_is_probed_for_why() -> None:
    why = await probe("nats-leaf://127.0.0.1:1")
    assert why is not None and "127.0.0.1:1" in why and "refused" in why.lower()
    assert "must start with nats-leaf://" in str(await probe("http://x:1"))
