"""Technician PINs: a name that does not exist takes the same path as one that does (issue 10).

Timing is not measured (that is for bench/): the code path is. Both cases hash the PIN once,
write the file once and answer the same words, with the same count of tries left.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from noderuntime.errors import PermissionDeniedError
from noderuntime.identity import technicians
from noderuntime.identity.technicians import (
    LOCKED_OUT_HELP,
    MAX_FAILURES,
    MAX_UNKNOWN_NAMES,
    TechnicianStore,
    wait_text,
)


class Spy:
    """Counts calls of a function it wraps."""

    def __init__(self, fn: Callable[..., object]) -> None:
        self.fn, self.calls = fn, 0

    def __call__(self, *args: object) -> object:
        self.calls += 1
        return self.fn(*args)


def _attempt(store: TechnicianStore, name: str, hashes: Spy, saves: Spy) -> tuple[str, int, int]:
    """The answer to one wrong PIN, and how many hashes and file writes it took."""
    h, s = hashes.calls, saves.calls
    with pytest.raises(PermissionDeniedError) as err:
        store.verify(name, "9999")
    return str(err.value).replace(name, "NAME"), hashes.calls - h, saves.calls - s


def test_an_unknown_name_takes_the_same_path_as_a_wrong_pin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]
    store = TechnicianStore(tmp_path, clock=lambda: now[0])
    store.add("alice", "1234")
    hashes = Spy(technicians._hash)
    saves = Spy(store._save)
    monkeypatch.setattr(technicians, "_hash", hashes)
    monkeypatch.setattr(store, "_save", saves)
    answers = []
    for _ in range(MAX_FAILURES + 1):
        known = _attempt(store, "alice", hashes, saves)
        unknown = _attempt(store, "mallory", hashes, saves)
        assert known == unknown
        answers.append(known)
    assert answers[0] == (f"unknown technician or wrong PIN ({MAX_FAILURES - 1} tries left)", 1, 1)
    assert answers[MAX_FAILURES - 1] == (
        f"wrong PIN; technician 'NAME' is now locked out for 5 min. {LOCKED_OUT_HELP}",
        1,
        1,
    )
    assert (
        answers[MAX_FAILURES][1:] == (0, 0)
        and "locked out for 5 min more" in answers[MAX_FAILURES][0]
    )
    # What the technician can do; nothing only root could type at a console.
    assert "another technician" in LOCKED_OUT_HELP and "noderuntime" not in LOCKED_OUT_HELP
    # The real technician is only delayed, and comes back with the right PIN.
    now[0] += 301
    assert store.verify("alice", "1234") == "technician:alice"
    assert store.names() == ["alice"]


def test_guessing_names_keeps_bounded_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = TechnicianStore(tmp_path)
    store.add("alice", "1234")
    # scrypt and fsync are slow, and beside the point here.
    monkeypatch.setattr(technicians, "_hash", lambda pin, salt: "0" * 64)
    monkeypatch.setattr(store, "_save", lambda records: None)
    for i in range(3 * MAX_UNKNOWN_NAMES):
        with pytest.raises(PermissionDeniedError):
            store.verify(f"guess-{i}", "0000")
    assert len(store._unknown) == MAX_UNKNOWN_NAMES
    assert store.names() == ["alice"]


def test_waits_read_as_minutes_and_seconds() -> None:
    assert [wait_text(s) for s in (300.0, 287.4, 45.0, 0.2)] == [
        "5 min",
        "4 min 47 s",
        "45 s",
        "1 s",
    ]
