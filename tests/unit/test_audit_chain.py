"""The audit hash chain: what verify catches, retention, and what a hub's witness catches."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from noderuntime.audit.chain import (
    GENESIS,
    AuditKind,
    Checkpoint,
    Entry,
    canonical,
    chain_entry,
    entry_hash,
    verify_chain,
)
from noderuntime.audit.log import Audit
from noderuntime.audit.store import MemoryAuditStore, SQLiteAuditStore
from noderuntime.audit.witness import judge
from noderuntime.identity import keys

KEY = keys.generate("node:n1")


def make_audit(store: MemoryAuditStore | SQLiteAuditStore, **kw: object) -> Audit:
    return Audit(store, node="n1", sign=KEY.sign, public_key=KEY.public_bytes, **kw)  # type: ignore[arg-type]


@pytest.fixture
async def audit() -> AsyncIterator[Audit]:
    async with make_audit(MemoryAuditStore()) as a:
        yield a


async def fill(a: Audit, n: int) -> list[Entry]:
    for i in range(n):
        a.record(AuditKind.API_WRITE, "uid:0", method="workloads.apply", i=i)
    await a.flush()
    return await a.store.entries(limit=10_000)


def verdict(a: Audit, entries: list[Entry], cps: list[Checkpoint]) -> object:
    return verify_chain(entries, cps, a.check_signature)


async def test_an_untouched_chain_verifies(audit: Audit) -> None:
    await fill(audit, 10)
    await audit.checkpoint()
    await fill(audit, 5)
    result = await audit.verify()
    assert result.ok and result.entries == 15 and result.checkpoints == 1


async def test_an_edited_entry_fails_naming_it(audit: Audit) -> None:
    entries = await fill(audit, 10)
    entries[4] = dataclasses.replace(entries[4], actor="uid:1000")
    result = verify_chain(entries, [], audit.check_signature)
    assert result.broken is not None and result.broken.seq == 5
    assert "entry 5" in result.broken.reason


async def test_reordered_entries_fail(audit: Audit) -> None:
    entries = await fill(audit, 10)
    entries[3], entries[4] = entries[4], entries[3]
    result = verify_chain(entries, [], audit.check_signature)
    assert result.broken is not None and result.broken.seq == 4
    # Renumbered to look in order, the content no longer matches the hashes.
    swapped = [
        dataclasses.replace(entries[3], seq=4),
        dataclasses.replace(entries[4], seq=5),
    ]
    result = verify_chain(entries[:3] + swapped + entries[5:], [], audit.check_signature)
    assert result.broken is not None and result.broken.seq == 4


async def test_cut_entries_fail(audit: Audit) -> None:
    entries = await fill(audit, 10)
    cp = await audit.checkpoint()
    assert cp is not None
    middle = verify_chain(entries[:4] + entries[6:], [cp], audit.check_signature)
    assert middle.broken is not None and middle.broken.seq == 5
    prefix = verify_chain(entries[3:], [cp], audit.check_signature)
    assert prefix.broken is not None and prefix.broken.seq == 4
    tail = verify_chain(entries[:7], [cp], audit.check_signature)
    assert tail.broken is not None and tail.broken.seq == 8
    assert "cut" in tail.broken.reason


async def test_a_rewritten_chain_fails_against_its_signed_checkpoint(audit: Audit) -> None:
    entries = await fill(audit, 6)
    cp = await audit.checkpoint()
    assert cp is not None
    # Rewritten with every hash recomputed: only the signed checkpoint shows it.
    async with make_audit(MemoryAuditStore()) as other:
        for i in range(6):
            other.record(AuditKind.API_WRITE, "uid:0", method="workloads.apply", i=i + 100)
        await other.flush()
        forged = await other.store.entries()
    result = verify_chain(forged, [cp], audit.check_signature)
    assert result.broken is not None and result.broken.seq == 6
    forged_cp = dataclasses.replace(cp, head=forged[-1].hash)
    result = verify_chain(forged, [forged_cp], audit.check_signature)
    assert result.broken is not None and "signature" in result.broken.reason
    assert verify_chain(entries, [cp], audit.check_signature).ok


async def test_retention_prunes_by_size_and_verifies_from_the_kept_checkpoint(
    tmp_path: Path,
) -> None:
    async with make_audit(SQLiteAuditStore(tmp_path / "a.db"), max_bytes=200_000) as a:
        for i in range(3000):
            a.record(AuditKind.API_WRITE, "uid:0", method="workloads.apply", pad="x" * 100, i=i)
        await a.flush()
        gone = await a.enforce_retention()
        assert gone > 0
        assert await a.store.used_bytes() <= 200_000
        await a.flush()
        result = await a.verify()
        assert result.ok, result.broken
        assert result.anchored_at == gone and result.first_seq == gone + 1
        pruned = [e for e in await a.store.newest(1) if e.kind == AuditKind.AUDIT_PRUNED.value]
        assert pruned and pruned[0].fields["entries"] == gone
    # Reopened: the chain continues from what is stored.
    async with make_audit(SQLiteAuditStore(tmp_path / "a.db")) as a:
        a.record(AuditKind.NODE_STARTED, "node:n1")
        assert (await a.verify()).ok


async def test_entries_survive_a_restart_and_the_chain_continues(tmp_path: Path) -> None:
    async with make_audit(SQLiteAuditStore(tmp_path / "a.db")) as a:
        a.record(AuditKind.LOGIN, "technician:ann", outcome="failed", uid=0)
    async with make_audit(SQLiteAuditStore(tmp_path / "a.db")) as a:
        a.record(AuditKind.LOGIN, "technician:ann", outcome="ok", uid=0)
        await a.flush()
        assert [e.fields["outcome"] for e in await a.store.entries()] == ["failed", "ok"]
        assert (await a.verify()).ok
        # Closing took a checkpoint of the first run's entries.
        assert [cp.seq for cp in await a.store.checkpoints()] == [1]


async def test_witness_accepts_an_extension_and_catches_a_cut_or_rewrite(audit: Audit) -> None:
    await fill(audit, 5)
    seen = await audit.checkpoint()
    await fill(audit, 5)
    later = await audit.checkpoint()
    assert seen is not None and later is not None
    assert judge(seen, later) is None
    assert judge(seen, seen) is None
    truncated = dataclasses.replace(seen, seq=3)
    assert "truncated" in (judge(seen, truncated) or "")
    rewritten = dataclasses.replace(seen, head=b"\x01" * 32)
    assert "rewritten" in (judge(seen, rewritten) or "")
    relinked = dataclasses.replace(later, links=((seen.seq, b"\x02" * 32),))
    assert "rewritten" in (judge(seen, relinked) or "")


class _Level(enum.IntEnum):
    HIGH = 2


ODD_TEXT = [
    *("", "plain", 'quo"te\\back', "tab\tnl\ncr\r", "\x00\x1f\x7f"),
    *("é ü", "\u2028\u2029", "🙂"),
]
ODD_FIELDS: list[dict[object, object]] = [
    {},
    {"method": "workloads.apply", "uid": 0, "outcome": "ok"},
    {t: t for t in ODD_TEXT},
    {"b": True, "c": False, "n": None, "i": -(2**70), "z": 0, "f": 0.1, "g": -0.0, "h": 1e16},
    {"e": 1e-7, "big": 1.7976931348623157e308, "a": 3.0},
    {"nested": {"x": [1, "y"]}, "list": [None]},  # the encoder's path
    {"nan": float("nan"), "inf": float("-inf")},  # ditto: NaN is no JSON number
    {"level": _Level.HIGH},  # a subclass: the encoder's path
    {2: "b", 10: "a"},  # non-str keys: the encoder's path
]


@pytest.mark.parametrize("fields", ODD_FIELDS)
@pytest.mark.parametrize("kind", ["api.write", 'é"kind'])
def test_chain_entry_encodes_and_hashes_exactly_as_the_json_encoder(
    fields: dict[object, object], kind: str
) -> None:
    """The fast encoding of an entry is byte for byte ``canonical`` (what verify recomputes)."""
    for seq, ts in [(1, 1764790000.123456), (2**40, 0.5), (7, 1e-300)]:
        e = chain_entry(GENESIS, seq, ts, kind, "uid:0 «x»", fields)  # type: ignore[arg-type]
        assert e.body == canonical([seq, ts, kind, "uid:0 «x»", fields])
        assert e.fields_json == canonical(fields).decode()
        assert e.hash == entry_hash(GENESIS, seq, ts, kind, "uid:0 «x»", fields)
