"""The TUI's bounded log buffer and search."""

from __future__ import annotations

import time

import pytest

from tui.logbuffer import MAX_LINE_CHARS, LogBuffer, clean_line, match_spans


def test_clean_line_strips_escapes_and_controls() -> None:
    assert clean_line("\x1b[31mred\x1b[0m text\r\n") == "red text"
    assert clean_line("a\tb") == "a       b"
    assert clean_line("bell\x07 and \x00nul") == "bell and nul"
    assert clean_line("\x1b]0;title\x07shown") == "shown"
    long = clean_line("x" * (MAX_LINE_CHARS + 50))
    assert len(long) == MAX_LINE_CHARS + 1


def test_bounded_with_absolute_numbers() -> None:
    buf = LogBuffer(capacity=100)
    buf.extend(f"line {i}" for i in range(100))
    buf.extend(f"line {i}" for i in range(100, 105))
    assert len(buf) == 105  # within the 10% slack
    buf.extend(f"line {i}" for i in range(105, 111))
    assert len(buf) == 100
    assert buf.dropped == 11
    assert buf.first_number == 11
    assert buf[0] == "line 11"
    assert buf[-1] == "line 110"
    assert buf.total == 111
    assert buf.lines(98, 200) == ["line 109", "line 110"]


def test_trim_and_clear() -> None:
    buf = LogBuffer(capacity=10)
    buf.extend(str(i) for i in range(10))
    buf.append("10")
    assert buf.trim() == 1 and len(buf) == 10 and buf[0] == "1"
    buf.clear()
    assert len(buf) == 0 and buf.dropped == 0 and buf.max_width == 0


def test_huge_batch_keeps_only_capacity() -> None:
    buf = LogBuffer(capacity=10)
    assert buf.extend(str(i) for i in range(50)) == 40
    assert [buf[0], buf[-1]] == ["40", "49"]


def test_max_width_tracks_widest_line() -> None:
    buf = LogBuffer()
    buf.extend(["a", "abcdef", "abc"])
    assert buf.max_width == 6


def test_find_forward_backward_and_wrap() -> None:
    buf = LogBuffer()
    buf.extend(["ok", "ERROR one", "ok", "error two", "ok"])
    assert buf.find("error", -1) == 1
    assert buf.find("error", 1) == 3
    assert buf.find("error", 3) == 1  # wraps
    assert buf.find("error", len(buf), backward=True) == 3
    assert buf.find("error", 3, backward=True) == 1
    assert buf.find("error", 1, backward=True) == 3  # wraps
    assert buf.find("missing", 0) is None
    assert buf.find("", 0) is None
    assert buf.count("ERROR") == 2


def test_match_spans() -> None:
    assert match_spans("aXa xa", "xa") == [(1, 3), (4, 6)]
    assert match_spans("abc", "") == []


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError):
        LogBuffer(0)


def test_fifty_thousand_lines_stay_fast() -> None:
    buf = LogBuffer()
    lines = [
        f"2026-01-01T00:00:{i % 60:02d}Z worker: request {i} served in 3 ms" for i in range(50_000)
    ]
    started = time.perf_counter()
    buf.extend(lines)
    buf.find("request 49999", -1)
    elapsed = time.perf_counter() - started
    assert len(buf) == 50_000
    # Generous bound: a regression to per-line O(n) work would take far longer.
    assert elapsed < 2.0
