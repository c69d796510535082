"""What goes into the audit trail: API writes and PIN checks, a tampered file found by
`audit verify`, and a hub noticing a node's log cut."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

import pytest

from noderuntime.api.client import ApiClient
from noderuntime.api.server import ACTOR_PARAM, ApiServer, Params, Route
from noderuntime.audit.chain import AuditKind, Checkpoint
from noderuntime.audit.log import Audit, MemoryAudit
from noderuntime.audit.store import MemoryAuditStore, SQLiteAuditStore
from noderuntime.cli.main import main
from noderuntime.config.model import AUDIT_DB_FILE, IDENTITY_FILE
from noderuntime.crdt import schema
from noderuntime.crdt.state import StateStore
from noderuntime.crdt.store import MemoryStore
from noderuntime.errors import NodeRuntimeError
from noderuntime.identity import keys, technicians
from noderuntime.identity.principals import node_principal
from noderuntime.identity.technicians import MAX_FAILURES, TechnicianStore
from noderuntime.node.auditwitness import AuditWitness


async def _echo(params: Params) -> Any:
    return {"actor": params.get(ACTOR_PARAM)}


async def test_writes_and_pin_attempts_are_audited(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(technicians, "_hash", lambda pin, salt: f"{pin}:{salt}")  # no scrypt
    techs = TechnicianStore(tmp_path)
    techs.add("ann", "4711")
    audit = MemoryAudit()
    routes = {"read": Route(_echo), "write": Route(_echo, write=True)}
    with tempfile.TemporaryDirectory(prefix="nra-", dir="/tmp") as tmp:
        sock = Path(tmp) / "api.sock"
        async with (
            ApiServer(sock, routes, authenticate=techs.verify, audit=audit),
            ApiClient(sock) as client,
        ):
            await client.call("read", {"name": "x"})
            await client.call("write", {"name": "web", "env": "SECRET=1"})
            await client.call("write", {"auth": {"technician": "ann", "pin": "4711"}})
            for _ in range(MAX_FAILURES):
                with pytest.raises(NodeRuntimeError, match=r"PIN|locked"):
                    await client.call("write", {"auth": {"technician": "ann", "pin": "0000"}})
            with pytest.raises(NodeRuntimeError, match=r"PIN|locked"):
                await client.call("write", {"auth": {"technician": "ann", "pin": "4711"}})
    logins = audit.of(AuditKind.LOGIN)
    assert [e["outcome"] for e in logins] == ["ok"] + ["failed"] * (MAX_FAILURES - 1) + [
        "locked",
        "locked",
    ]
    assert {e["actor"] for e in logins} == {"technician:ann"}
    writes = audit.of(AuditKind.API_WRITE)
    assert writes[0]["method"] == "write" and writes[0]["name"] == "web"
    assert writes[0]["actor"].startswith("uid:") and writes[0]["outcome"] == "ok"
    assert "env" not in writes[0]  # values never go into the audit log
    assert writes[1]["actor"] == "technician:ann"
    assert [w["outcome"] for w in writes[2:]] == ["refused"] * (MAX_FAILURES + 1)
    assert len(writes) == 2 + MAX_FAILURES + 1  # reads are not audited


def test_audit_verify_finds_an_edited_file_and_names_the_entry(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--data-dir", str(tmp_path), "init", "--node-id", "n1", "--site", "s1"]) == 0
    ident = keys.load_key(tmp_path / IDENTITY_FILE, node_principal("n1"))
    db = tmp_path / AUDIT_DB_FILE

    async def record() -> None:
        store = SQLiteAuditStore(db)
        async with Audit(store, node="n1", sign=ident.sign, public_key=ident.public_bytes) as a:
            for i in range(8):
                a.record(AuditKind.API_WRITE, "uid:0", method="workloads.apply", i=i)

    asyncio.run(record())
    capsys.readouterr()
    base = ["--data-dir", str(tmp_path), "audit", "verify"]
    # No node runs here: verify reads the file itself.
    assert main(base) == 0
    assert "audit chain ok: entries 1-8" in capsys.readouterr().out
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE entries SET actor = 'uid:1000' WHERE seq = 6")
    assert main(base) == 1
    assert "BROKEN at entry 6" in capsys.readouterr().out
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE entries SET actor = 'uid:0' WHERE seq = 6")
        conn.execute("DELETE FROM entries WHERE seq >= 7")
    assert main(base) == 1  # the shutdown checkpoint covers entry 8
    assert "BROKEN at entry 7" in capsys.readouterr().out


async def test_a_hub_detects_a_node_whose_log_was_cut() -> None:
    hub_key = keys.generate(node_principal("hub"))
    async with (
        StateStore(MemoryStore(), hub_key, node_id="hub", site="s1") as state,
        Audit(
            MemoryAuditStore(), node="hub", sign=hub_key.sign, public_key=hub_key.public_bytes
        ) as hub_audit,
    ):
        witness = AuditWitness(state, hub_audit, own_doc=state.node_doc)
        doc = schema.node_doc("n2")
        await state.ensure_doc(doc)

        async def publish(cp: Checkpoint) -> None:
            await state.write(doc, lambda d: schema.put_audit_checkpoint(d, cp.to_dict()))

        seen = Checkpoint("n2", 40, b"\x01" * 32, 100.0)
        await publish(seen)
        assert await witness.check(doc) is None
        await publish(
            dataclasses.replace(seen, seq=60, head=b"\x02" * 32, links=((40, seen.head),))
        )
        assert await witness.check(doc) is None
        cut = Checkpoint("n2", 12, b"\x03" * 32, 300.0)
        await publish(cut)
        alert = await witness.check(doc)
        assert alert is not None and alert.node == "n2" and "truncated" in alert.reason
        assert await hub_audit.store.alerts() == [alert]
        assert await witness.check(doc) is None  # reported once
        await hub_audit.flush()
        found = [e for e in await hub_audit.store.entries() if e.kind == "audit.witness-alert"]
        assert found and found[0].actor == "node:n2"


def test_status_and_doctor_report_a_tampered_log_seen_by_the_hub() -> None:
    from noderuntime.cli.main import render_audit
    from noderuntime.host.doctor import running_node_problems

    reason = "audit log of n2 went back from 40 entries to 12: it was truncated or replaced"
    audit = {
        "enabled": True,
        "entries": 9,
        "last_checkpoint": {"seq": 8, "ts": 1.0},
        "error": None,
        "witness_alerts": [{"node": "n2", "ts": 2.0, "reason": reason}],
    }
    lines = render_audit(audit)
    assert lines[0].startswith("Audit:      9 entries, checkpoint at entry 8")
    assert any(line.startswith("AUDIT TAMPERED: " + reason) for line in lines)
    assert any(reason in p for p in running_node_problems({"audit": audit}))
    assert running_node_problems({"audit": {**audit, "witness_alerts": []}}) == []


class _Trust:
    """Enough of FleetTrust for RevocationWatch.apply: one revocation newly taken in."""

    own_revocation = None

    def retire(self, keys: object) -> None:
        return None

    def revoke(self, entries: object) -> list[str]:
        return ["node:n3"]

    def revocation(self, principal: str) -> object:
        from noderuntime.fleet.revocation import revocation_entry

        return revocation_entry(principal, keys=["k1"], by="operator:alice", at=1, reason="stolen")


async def test_a_revocation_taken_in_is_audited() -> None:
    import logging

    from noderuntime.node.revocations import RevocationWatch

    audit = MemoryAudit()
    key = keys.generate(node_principal("n1"))
    async with StateStore(MemoryStore(), key, node_id="n1", site="s1") as state:
        watch = RevocationWatch(
            state,
            _Trust(),  # type: ignore[arg-type]
            None,
            log=logging.getLogger("test"),
            audit=audit,
        )
        assert watch.apply() == ["node:n3"]
    assert audit.of(AuditKind.REVOKED) == [
        {"actor": "operator:alice", "principal": "node:n3", "reason": "stolen"}
    ]


def test_a_backup_leaves_the_audit_log_out(tmp_path: Path) -> None:
    import tarfile

    from noderuntime.config.model import CONFIG_FILE
    from noderuntime.host.backup import backup

    data = tmp_path / "node"
    assert main(["--data-dir", str(data), "init", "--node-id", "n1", "--site", "s1"]) == 0
    (data / AUDIT_DB_FILE).write_bytes(b"entries")
    out = tmp_path / "b.tar.gz"
    backup(data, data / CONFIG_FILE, out)
    with tarfile.open(out) as tar:
        names = tar.getnames()
    assert "data/identity.key" in names and f"data/{AUDIT_DB_FILE}" not in names


def test_a_lone_surrogate_in_a_peers_text_is_recorded_escaped_not_raised(tmp_path: Path) -> None:
    # json.loads('"\\ud800"') is a str that UTF-8 cannot encode: a hostile peer's text in a
    # sync rejection's detail made record() raise UnicodeEncodeError.
    assert main(["--data-dir", str(tmp_path), "init", "--node-id", "n1", "--site", "s1"]) == 0
    ident = keys.load_key(tmp_path / IDENTITY_FILE, node_principal("n1"))

    async def record() -> None:
        store = SQLiteAuditStore(tmp_path / AUDIT_DB_FILE)
        async with Audit(store, node="n1", sign=ident.sign, public_key=ident.public_bytes) as a:
            a.record(AuditKind.SYNC_REJECTED, "sync", cause="signature", detail="x\ud800y")
            a.record(AuditKind.SYNC_REJECTED, "peer\udcff", cause="ok")

    asyncio.run(record())
    assert main(["--data-dir", str(tmp_path), "audit", "verify"]) == 0
    with sqlite3.connect(tmp_path / AUDIT_DB_FILE) as conn:
        rows = [r[0] for r in conn.execute("SELECT fields FROM entries ORDER BY seq")]
    assert any("x\\\\ud800y" in r for r in rows), rows
