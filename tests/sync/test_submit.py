"""Operator-signed changes: prepared at the node, signed by the operator, verified on submit."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from noderuntime.crdt.envelope import signing_input
from noderuntime.crdt.state import IngestResult, Origin, StateStore
from noderuntime.crdt.store import NewUpdate, SQLiteStore, StoredUpdate
from noderuntime.errors import UpdateRejectedError
from noderuntime.identity import keys as identity
from noderuntime.sync.verify import submit_signed
from tests.sync.conftest import put
from tests.sync.natsfixtures import FakeTrust


async def test_prepare_sign_submit(tmp_path: Path) -> None:
    trust = FakeTrust()
    op = trust.enroll("operator:ann", "operator", None)
    node = trust.enroll("node:n1", "node", "s1")
    async with StateStore(SQLiteStore(tmp_path / "s.db"), node, node_id="n1", site="s1") as state:
        heard: list[tuple[StoredUpdate, Origin]] = []
        state.subscribe_updates(lambda u, o: heard.append((u, o)))
        data = state.prepare("fleet", put("web", "v1"))
        assert data is not None and "web" not in state.snapshot().fleet.workloads
        # The doc changes between prepare and submit: the delta still merges.
        await state.write("node/n1", put("other"))
        meta = '{"summary":"apply web"}'
        upd = NewUpdate(
            "fleet", data, op.name, op.sign(signing_input("fleet", data, meta)), time.time(), meta
        )
        assert await submit_signed(state, trust, upd) is IngestResult.APPLIED
        assert state.snapshot().fleet.workloads["web"]["image"] == "v1"
        assert heard[-1][1] is Origin.SUBMITTED and heard[-1][0].author == "operator:ann"
        assert await submit_signed(state, trust, upd) is IngestResult.DUPLICATE
        # Signed by someone else, or by a node for the fleet doc: refused.
        eve = identity.generate("operator:eve")
        forged = NewUpdate(
            "fleet", data, op.name, eve.sign(signing_input("fleet", data, meta)), 1.0, meta
        )
        with pytest.raises(UpdateRejectedError, match="bad_signature"):
            await submit_signed(state, trust, forged)
        by_node = NewUpdate(
            "fleet", data, node.name, node.sign(signing_input("fleet", data, meta)), 1.0, meta
        )
        with pytest.raises(UpdateRejectedError, match="unauthorised"):
            await submit_signed(state, trust, by_node)
