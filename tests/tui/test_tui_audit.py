"""The Audit view (7, :audit): read-only entries newest first, failed logins in red, the
chain's verdict on top. Pilot tests and an 80x24 snapshot over a fake API."""

from __future__ import annotations

from typing import Any

from fake_api import NOW, FakeApi, clock
from test_snapshots import FROZEN_REFRESH_S, keys
from tui_helpers import screen_text, settle, wait_until

from tui.app import NodeRuntimeApp


def entries() -> list[dict[str, Any]]:
    rows: list[tuple[str, str, dict[str, Any]]] = [
        ("node.start", "node:edge-07", {"version": "0.1.0"}),
        ("technician.login", "technician:bob", {"outcome": "failed", "uid": 0}),
        ("technician.login", "technician:bob", {"outcome": "failed", "uid": 0}),
        ("technician.login", "technician:alice", {"outcome": "ok", "uid": 0}),
        (
            "api.write",
            "technician:alice",
            {"method": "workloads.restart", "name": "hmi-web", "outcome": "ok", "uid": 0},
        ),
        ("logs.remote-read", "operator:ops", {"workload": "historian", "via": "hub-1"}),
        ("sync.rejected", "sync", {"cause": "bad_signature", "count": 14, "detail": "update"}),
    ]
    return [
        {
            "seq": 40 + i,
            "ts": NOW - 600 + 60 * i,
            "kind": kind,
            "actor": actor,
            "fields": fields,
            "hash": f"{i:064x}",
        }
        for i, (kind, actor, fields) in enumerate(rows)
    ]


class AuditApi(FakeApi):
    """The fake node, plus the audit routes; ``broken`` makes the chain fail to verify."""

    def __init__(self, *, broken: bool = False, **kw: Any) -> None:
        super().__init__(**kw)
        self.broken = broken

    async def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        if method == "audit.list":
            self.calls.append((method, dict(params or {})))
            return {"entries": entries(), "head": 46}
        if method == "audit.verify":
            self.calls.append((method, {}))
            if self.broken:
                reason = "entry 43 does not match its hash: it was edited, or one before it"
                return {"ok": False, "entries": 7, "broken": {"seq": 43, "reason": reason}}
            cp = {"seq": 45, "ts": NOW - 120}
            return {"ok": True, "entries": 46, "broken": None, "last_checkpoint": cp}
        return await super().call(method, params)


def make_app(api: FakeApi | None = None) -> NodeRuntimeApp:
    return NodeRuntimeApp(
        api or AuditApi(), clock=clock, refresh_interval_s=FROZEN_REFRESH_S, initial_view="audit"
    )


def test_audit_view(snap_compare: Any) -> None:
    assert snap_compare(make_app(), terminal_size=(80, 24), run_before=keys())


async def test_the_audit_view_shows_entries_newest_first_and_the_chain_verdict() -> None:
    api = AuditApi()
    app = make_app(api)
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        await wait_until(pilot, lambda: "chain verified" in screen_text(pilot), what="verdict")
        text = screen_text(pilot)
        assert "chain verified: 46 entries, signed up to entry 45" in text
        assert text.index("sync.rejected") < text.index("node.start")  # newest first
        await pilot.press("slash", *"failed")
        await wait_until(pilot, lambda: "node.start" not in screen_text(pilot), what="filter")
        assert screen_text(pilot).count("technician:bob") == 2
        # Read-only: nothing but reads went to the node.
        assert {m for m, _ in api.calls} <= {
            "node.status",
            "overrides.fields",
            "audit.list",
            "audit.verify",
        }


async def test_a_broken_chain_is_shown_naming_the_entry() -> None:
    app = make_app(AuditApi(broken=True))
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        await wait_until(pilot, lambda: "CHAIN BROKEN" in screen_text(pilot), what="verdict")
        assert "CHAIN BROKEN at entry 43" in screen_text(pilot)


async def test_7_and_jump_open_the_audit_view() -> None:
    app = NodeRuntimeApp(AuditApi(), clock=clock, refresh_interval_s=FROZEN_REFRESH_S)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("7")
        await wait_until(pilot, lambda: app.current_mode == "audit", what="audit view")
        await pilot.press("1", "colon", *"audit", "enter")
        await wait_until(pilot, lambda: app.current_mode == "audit", what="jump to audit")
