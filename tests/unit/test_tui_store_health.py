"""What the overview's Store line is built from: the store says why its latest commit failed,
and forgets it once a commit succeeds (node.status reports it as ``store.error``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from noderuntime.crdt import schema
from noderuntime.crdt.state import StateStore
from noderuntime.crdt.store import SQLiteStore
from noderuntime.errors import StoreError
from noderuntime.identity import keys as identity
from tui import model

IDENT = identity.generate("node:n1")


def put(name: str, image: str) -> Any:
    return lambda doc: schema.put_workload(doc, name, {"metadata": {"name": name}, "image": image})


async def test_failed_commit_is_reported_until_one_succeeds(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "state.db")
    async with StateStore(store, IDENT, node_id="n1", site="s1") as st:
        await st.write(st.fleet_doc, put("web", "v1"))
        assert st.store_error is None
        # A real SQLite failure: the file may not grow (as on a full disk).
        async with store.db.execute("PRAGMA page_count") as cur:
            row = await cur.fetchone()
        assert row is not None
        await store.db.execute(f"PRAGMA max_page_count={row[0]}")
        with pytest.raises(StoreError, match="full"):
            await st.write(st.fleet_doc, put("web", "v2" + "x" * 100_000))
        assert st.store_error is not None and "full" in st.store_error
        await store.db.execute("PRAGMA max_page_count=1073741823")
        await st.write(st.fleet_doc, put("web", "v3"))
        assert st.store_error is None


def test_store_line_and_reason() -> None:
    healthy = {"healthy": True, "error": None, "load_problems": 0, "updates": 3}
    assert model.store_state(healthy)[1] and model.store_problem(healthy) is None
    failing = {**healthy, "healthy": False, "error": "commit failed: database is locked"}
    text, ok = model.store_state(failing)
    assert not ok and text.startswith("UNHEALTHY")
    assert model.store_problem(failing) == "commit failed: database is locked"
    # The node sends a count; the fake (and older nodes) a list.
    for problems in (2, ["a", "b"]):
        loaded = {**healthy, "healthy": False, "load_problems": problems}
        text, ok = model.store_state(loaded)
        assert not ok and "2 load problem(s)" in text
        assert "2 unreadable" in (model.store_problem(loaded) or "")
    assert model.store_problem({}) == "not reported by the node"


def test_a_held_store_says_why_what_it_spares_and_what_to_decide() -> None:
    held = {
        "healthy": False,
        "error": "state.db is missing or empty, but ...",
        "load_problems": 0,
        "updates": 1,
        "hold": {
            "kind": "missing",
            "reason": "state.db is missing or empty, but ...",
            "workloads": ["web"],
            "decide": "`noderuntime reset --i-mean-it` ...",
        },
    }
    text, ok = model.store_state(held)
    assert not ok and text.startswith("HELD")
    why = model.store_problem(held) or ""
    assert why.startswith("state.db is missing") and "spared: web" in why
    assert "reset --i-mean-it" in why
