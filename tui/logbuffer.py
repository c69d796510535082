"""A bounded buffer of log lines with search. Pure: no Textual, no I/O.

Lines are kept in a plain list; when it grows past ``capacity`` by a tenth, the oldest lines are
dropped in one slice, so appends are amortised O(1) and random access (what a virtualised view
needs to paint the visible rows) is O(1). ``first_number`` is the absolute number of the first
kept line, so positions stay meaningful while old lines fall off the front.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable

DEFAULT_CAPACITY = 100_000
MAX_LINE_CHARS = 4_000
# ANSI escape sequences (CSI and OSC) and other control characters a container may print.
_ANSI_RE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")
_CTRL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def clean_line(line: str) -> str:
    """One printable line: no trailing newline, no escape sequences, tabs expanded, capped."""
    line = line.rstrip("\r\n")
    if "\x1b" in line:
        line = _ANSI_RE.sub("", line)
    if "\t" in line:
        line = line.expandtabs(8)
    line = _CTRL_RE.sub("", line)
    if len(line) > MAX_LINE_CHARS:
        line = line[:MAX_LINE_CHARS] + "…"
    return line


class LogBuffer:
    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity <= 0:
            raise ValueError("capacity must be positive")
        self.capacity = capacity
        self._lines: list[str] = []
        self.dropped = 0  # lines that fell off the front
        self.max_width = 0

    def __len__(self) -> int:
        return len(self._lines)

    def __getitem__(self, index: int) -> str:
        return self._lines[index]

    @property
    def first_number(self) -> int:
        return self.dropped

    @property
    def total(self) -> int:
        return self.dropped + len(self._lines)

    def clear(self) -> None:
        self._lines.clear()
        self.dropped = 0
        self.max_width = 0

    def append(self, line: str) -> None:
        self.extend((line,))

    def extend(self, lines: Iterable[str]) -> int:
        """Add lines (cleaned); returns how many were dropped from the front to make room."""
        added = [clean_line(x) for x in lines]
        if not added:
            return 0
        widest = max(len(x) for x in added)
        if widest > self.max_width:
            self.max_width = widest
        self._lines.extend(added)
        slack = max(1, self.capacity // 10)
        if len(self._lines) > self.capacity + slack or len(added) > self.capacity:
            cut = len(self._lines) - self.capacity
            del self._lines[:cut]
            self.dropped += cut
            return cut
        return 0

    def trim(self) -> int:
        """Drop everything beyond ``capacity`` now (the view calls this when idle)."""
        cut = len(self._lines) - self.capacity
        if cut <= 0:
            return 0
        del self._lines[:cut]
        self.dropped += cut
        return cut

    def lines(self, start: int, stop: int) -> list[str]:
        return self._lines[max(0, start) : max(0, stop)]

    # --- search ------------------------------------------------------------------------------

    def find(self, query: str, start: int, *, backward: bool = False) -> int | None:
        """Index of the next line containing ``query`` (case-insensitive) after/before ``start``.

        Wraps around; ``start`` itself is checked last. None if no line matches.
        """
        if not query or not self._lines:
            return None
        q = query.lower()
        n = len(self._lines)
        start = min(max(start, -1), n)
        if backward:
            order = itertools.chain(range(start - 1, -1, -1), range(n - 1, start - 1, -1))
        else:
            order = itertools.chain(range(start + 1, n), range(0, min(start + 1, n)))
        lines = self._lines
        for i in order:
            if q in lines[i].lower():
                return i
        return None

    def count(self, query: str) -> int:
        if not query:
            return 0
        q = query.lower()
        return sum(1 for line in self._lines if q in line.lower())


def match_spans(line: str, query: str) -> list[tuple[int, int]]:
    """Where ``query`` occurs in ``line`` (case-insensitive), as (start, end) pairs."""
    if not query:
        return []
    low, q = line.lower(), query.lower()
    spans = []
    i = low.find(q)
    while i >= 0:
        spans.append((i, i + len(q)))
        i = low.find(q, i + len(q))
    return spans
