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


def test_search_index_follows_appends_drops_and_query_changes() -> None:
    """The incremental match index answers exactly like a scan of the buffer, as lines
    arrive, old ones fall off the front and the query changes."""
    import random

    rng = random.Random(7)
    buf = LogBuffer(capacity=50)
    words = ["alpha", "Beta", "gamma", "ALPHA beta", "delta"]

    def scan(query: str, start: int, backward: bool) -> int | None:
        lines = [buf[i] for i in range(len(buf))]
        n = len(lines)
        start = min(max(start, -1), n)
        if backward:
            order = [*range(start - 1, -1, -1), *range(n - 1, start - 1, -1)]
        else:
            order = [*range(start + 1, n), *range(0, min(start + 1, n))]
        return next((i for i in order if query.lower() in lines[i].lower()), None)

    for step in range(300):
        buf.extend(f"{step} {rng.choice(words)}" for _ in range(rng.randint(0, 9)))
        if step % 37 == 0:
            buf.trim()
        query = rng.choice(["alpha", "beta", "zzz", "a b"])
        assert buf.count(query) == sum(query.lower() in buf[i].lower() for i in range(len(buf)))
        assert buf.matches(query) == [i for i in range(len(buf)) if query.lower() in buf[i].lower()]
        for start in (-1, 0, len(buf) // 2, len(buf) - 1, len(buf)):
            for backward in (False, True):
                assert buf.find(query, start, backward=backward) == scan(query, start, backward)
    buf.clear()
    assert buf.count("alpha") == 0 and buf.find("alpha", 0) is None
