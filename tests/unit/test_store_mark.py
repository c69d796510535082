"""The store's high-water mark: when a store counts as lost, and the file round trip."""

from __future__ import annotations

from pathlib import Path

import pytest

from noderuntime.crdt.mark import (
    Hold,
    HoldKind,
    StoreFacts,
    StoreMark,
    accept_store,
    assess,
    confirm,
    next_mark,
    read_mark,
    write_mark,
)
from noderuntime.errors import StoreError

NOW = 1_000_000.0
HAD = StoreMark(docs={"fleet": 40, "site/s1": 0, "node/n1": 57}, written_at=NOW - 60)


def facts(fleet: int = 0, node: int = 0, problems: int = 0) -> StoreFacts:
    return StoreFacts({"fleet": fleet, "site/s1": 0, "node/n1": node}, problems)


def test_a_store_that_has_what_the_mark_says_is_not_held() -> None:
    assert assess(HAD, facts(40, 57), NOW) is None
    assert assess(HAD, facts(45, 90), NOW) is None


def test_an_empty_store_under_a_mark_is_missing() -> None:
    hold = assess(HAD, facts(), NOW)
    assert hold is not None and hold.kind is HoldKind.MISSING and not hold.provisional
    assert "up to sequence 57" in hold.reason and hold.since == NOW


def test_a_store_that_ends_early_is_truncated() -> None:
    hold = assess(HAD, facts(40, 50), NOW)
    assert hold is not None and hold.kind is HoldKind.TRUNCATED
    assert "node/n1 ends at 50, had 57" in hold.reason and "fleet" not in hold.reason


def test_updates_that_do_not_decode_are_a_loss_unless_accepted_before() -> None:
    hold = assess(HAD, facts(40, 57, problems=1), NOW)
    assert hold is not None and hold.kind is HoldKind.UNDECODABLE
    accepted = StoreMark(docs=HAD.docs, load_problems=1)
    assert assess(accepted, facts(40, 57, problems=1), NOW) is None
    assert assess(None, facts(40, 57, problems=2), NOW) is not None


def test_no_mark_trusts_a_store_with_history_and_doubts_an_empty_one() -> None:
    assert assess(None, facts(3, 9), NOW) is None  # kept by a version without marks
    hold = assess(None, facts(), NOW)
    assert hold is not None and hold.kind is HoldKind.UNKNOWN and hold.provisional


def test_a_provisional_hold_goes_without_containers_and_firms_with_them() -> None:
    hold = assess(None, facts(), NOW)
    assert confirm(hold, 0) is None
    firm = confirm(hold, 2)
    assert firm is not None and not firm.provisional and "2 container(s)" in firm.reason
    assert confirm(firm, 0) == firm  # a firm hold waits for a decision
    assert confirm(None, 5) is None


def test_a_persisted_hold_outlives_a_store_that_is_no_longer_empty() -> None:
    hold = Hold(HoldKind.MISSING, "gone", NOW - 10)
    held = next_mark(HAD, facts(0, 3), hold, NOW)
    assert held.docs == {"fleet": 40, "site/s1": 0, "node/n1": 57}  # the evidence stays
    assert assess(held, facts(0, 5), NOW) == hold


def test_an_accepted_store_is_taken_as_it_is_and_the_mark_follows_it_again() -> None:
    assert assess(StoreMark(accept="reset"), facts(problems=3), NOW) is None
    assert next_mark(HAD, facts(1, 2), None, NOW).docs == {"fleet": 1, "site/s1": 0, "node/n1": 2}


def test_the_file_round_trips_and_a_bad_one_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "state.mark"
    assert read_mark(path) is None
    mark = StoreMark({"fleet": 4}, 1, NOW, Hold(HoldKind.UNKNOWN, "why", NOW, True))
    write_mark(path, mark)
    assert read_mark(path) == mark
    assert path.stat().st_mode & 0o777 == 0o600
    accept_store(path, "restore", now=NOW)
    assert read_mark(path) == StoreMark(written_at=NOW, accept="restore")
    for bad in ("", "{", '{"format": 2}', '{"format": 1, "docs": {"fleet": -1}}', "[]"):
        path.write_text(bad)
        with pytest.raises(StoreError, match="not a store mark"):
            read_mark(path)
