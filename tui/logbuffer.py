"""A bounded buffer of log lines with search. Pure: no Textual, no I/O.

Lines are kept in a plain list; when it grows past ``capacity`` by a tenth, the oldest lines are
dropped in one slice, so appends are amortised O(1) and random access (what a virtualised view
needs to paint the visible rows) is O(1). ``first_number`` is the absolute number of the first
kept line, so positions stay meaningful while old lines fall off the front.
"""

from __future__ import annotations

import bisect
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
        self._search_query = ""
        self._search_hits: list[int] = []  # absolute numbers of the lines matching it
        self._search_upto = 0  # absolute number of the first line not indexed yet

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
        self._search_query, self._search_hits, self._search_upto = "", [], 0

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
    #
    # The lines matching the current query are indexed once (absolute line numbers, so lines
    # falling off the front need no renumbering) and the index is extended with each batch of
    # new lines: counting is O(1) and n/N a bisection, not a scan of the whole buffer per key.

    def matches(self, query: str) -> list[int]:
        """Indexes of the lines containing ``query`` (case-insensitive), ascending."""
        if not query:
            return []
        first = self.dropped
        return [n - first for n in self._index(query)]

    def _index(self, query: str) -> list[int]:
        q = query.lower()
        if q != self._search_query or self._search_upto < self.dropped:
            self._search_query, self._search_hits, self._search_upto = q, [], self.dropped
        hits, first = self._search_hits, self.dropped
        if hits and hits[0] < first:
            del hits[: bisect.bisect_left(hits, first)]
        lines = self._lines
        for i in range(self._search_upto - first, len(lines)):
            if q in lines[i].lower():
                hits.append(first + i)
        self._search_upto = first + len(lines)
        return hits

    def find(self, query: str, start: int, *, backward: bool = False) -> int | None:
        """Index of the next line containing ``query`` (case-insensitive) after/before ``start``.

        Wraps around; ``start`` itself is checked last. None if no line matches.
        """
        if not query or not self._lines:
            return None
        hits = self._index(query)
        if not hits:
            return None
        first = self.dropped
        at = first + min(max(start, -1), len(self._lines))
        if backward:
            i = bisect.bisect_left(hits, at)
            return (hits[i - 1] if i > 0 else hits[-1]) - first
        i = bisect.bisect_right(hits, at)
        return (hits[i] if i < len(hits) else hits[0]) - first

    def count(self, query: str) -> int:
        if not query:
            return 0
        return len(self._index(query))


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
