"""Issue 13 §6: a hub's own key relays operators' rollouts; it authors no fleet spec or policy."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from noderuntime.crdt import schema
from noderuntime.crdt.state import IngestResult, Origin, StateStore
from noderuntime.crdt.store import MemoryStore, NewUpdate
from noderuntime.identity import keys as identity
from noderuntime.sync.acl import DocKind, DocRef, relay_only

SPEC = {"name": "web", "image": "localhost/busybox:latest"}
ROOT = {"name": "web", "image": "localhost/busybox:latest", "volumes": [{"host": "/"}]}
ROLLOUT = json.dumps({"workload": "web", "candidate": SPEC})


def fleet(**maps: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: {k: json.dumps(v) for k, v in entries.items()} for name, entries in maps.items()}


def test_a_hub_may_add_rollout_facts_and_make_the_signed_candidate_stable() -> None:
    before = fleet(rollouts={"web": json.loads(ROLLOUT)}, rolloutSteps={"r1/go/0/s1": {"at": 1}})
    after = fleet(
        rollouts={"web": json.loads(ROLLOUT)},
        rolloutSteps={"r1/go/0/s1": {"at": 1}, "r1/end/Complete": {"at": 2}},
        workloads={"web": SPEC},
    )
    assert schema.relay_problem(before, after) is None


@pytest.mark.parametrize("fact", ["go/0/s1", "gate/0", "end/Complete", "end/RolledBack"])
def test_a_second_hub_taking_the_same_step_is_a_relay(fact: str) -> None:
    # CI defect: two hubs released wave 0 at one site, each with its own time; where the CRDT
    # kept the second hub's value, nodes refused that hub's update and all it wrote after it.
    before = fleet(rollouts={"web": json.loads(ROLLOUT)}, rolloutSteps={f"r1/{fact}": {"at": 1}})
    after = fleet(rollouts={"web": json.loads(ROLLOUT)}, rolloutSteps={f"r1/{fact}": {"at": 5}})
    assert schema.relay_problem(before, after) is None


@pytest.mark.parametrize("fact", ["go/0/*", "end/Aborted", "pause/1"])
def test_a_hub_may_not_rewrite_an_operators_fact(fact: str) -> None:
    before = fleet(rollouts={"web": json.loads(ROLLOUT)}, rolloutSteps={f"r1/{fact}": {"at": 1}})
    after = fleet(rollouts={"web": json.loads(ROLLOUT)}, rolloutSteps={f"r1/{fact}": {"at": 5}})
    assert schema.relay_problem(before, after) is not None


@pytest.mark.parametrize(
    "after",
    [
        fleet(rollouts={"web": json.loads(ROLLOUT)}, workloads={"web": ROOT}),  # not the candidate
        fleet(rollouts={"web": json.loads(ROLLOUT)}, workloads={"other": SPEC}),  # no rollout
        fleet(rollouts={"web": {"workload": "web", "candidate": ROOT}}),  # its own rollout
        fleet(rollouts={"web": json.loads(ROLLOUT)}, locks={"web": ["*"]}),  # fleet policy
        fleet(rollouts={"web": json.loads(ROLLOUT)}, policy={"*/web": ["hostPath:/"]}),  # §4
        fleet(rollouts={"web": json.loads(ROLLOUT)}, windows={"s1": "Sat 02:00-04:00"}),
        fleet(rollouts={"web": json.loads(ROLLOUT)}, revisions={"web/9": {"spec": ROOT}}),
        fleet(rollouts={"web": json.loads(ROLLOUT)}, rolloutSteps={"r1/go/0/s1": "x"}),  # no fact
        fleet(rollouts={"web": json.loads(ROLLOUT)}),  # removing a fact
        fleet(),  # removing the operator's rollout record
    ],
)
def test_a_hub_may_not_author_fleet_content(after: dict[str, dict[str, Any]]) -> None:
    before = fleet(rollouts={"web": json.loads(ROLLOUT)}, rolloutSteps={"r1/go/0/s1": {"at": 1}})
    assert schema.relay_problem(before, after) is not None


@dataclass(frozen=True)
class Member:
    principal: str
    role: str
    site: str | None = None
    public_key: bytes = b""
    blob: bytes | None = None
    not_after: float | None = None


class Trust:
    def __init__(self, *members: Member) -> None:
        self._members = members

    def members_of(self, principal: str) -> Sequence[Member]:
        return [m for m in self._members if m.principal == principal]


def test_only_hub_authors_of_the_fleet_document_are_relay_only() -> None:
    trust: Any = Trust(Member("node:hub1", "hub"), Member("operator:ann", "operator"))
    authors = ["node:hub1", "operator:ann"]
    assert relay_only(DocRef(DocKind.FLEET), authors, trust) == {"node:hub1"}
    assert relay_only(DocRef(DocKind.SITE, "s1"), authors, trust) == set()


def signed_elsewhere(st: StateStore, author: str, mutate: Any) -> NewUpdate:
    data = st.prepare(st.fleet_doc, mutate)
    assert data is not None
    return NewUpdate(st.fleet_doc, data, author, bytes(64), time.time(), "{}")


async def test_a_hubs_fleet_workload_is_refused_at_ingest_and_its_relay_applies() -> None:
    st = StateStore(MemoryStore(), identity.generate("node:n1"), node_id="n1", site="s1")
    async with st:

        def start(doc: Any) -> None:
            schema.put_entry(doc, schema.ROLLOUTS, "web", json.loads(ROLLOUT))

        op = signed_elsewhere(st, "operator:ann", start)
        assert await st.ingest([op], origin=Origin.PEER) == [IngestResult.APPLIED]

        def own_spec(doc: Any) -> None:
            schema.put_workload(doc, "root", ROOT)

        def complete(doc: Any) -> None:
            schema.put_entry(doc, schema.ROLLOUT_STEPS, "r1/end/Complete", {"at": 2})
            schema.put_entry(doc, schema.WORKLOADS, "web", SPEC)

        bad = signed_elsewhere(st, "node:hub1", own_spec)
        good = signed_elsewhere(st, "node:hub1", complete)
        results = await st.ingest([bad, good], origin=Origin.PEER, relay_only={"node:hub1"})
        assert results == [IngestResult.UNAUTHORISED, IngestResult.APPLIED]
        workloads = st.snapshot().fleet.workloads
        assert "root" not in workloads and "web" in workloads
