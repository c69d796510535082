"""Update windows: when a rollout may change a site. Pure.

A window is ``[DAYS] HH:MM-HH:MM`` in UTC: ``Sat 02:00-04:00``, ``Mon-Fri 22:00-02:00`` (a
range may cross midnight: it then belongs to the day it starts on), ``daily 03:00-05:00`` or
just ``03:00-05:00``. Only releasing a wave at a site waits for the window; a rollback never
does (taking a bad revision away is not an update to schedule).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from noderuntime.errors import SpecError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_RE = re.compile(
    r"^(?:(?P<days>[A-Za-z,\-]+)\s+)?(?P<start>\d{1,2}:\d{2})-(?P<end>\d{1,2}:\d{2})\Z"
)


@dataclass(frozen=True)
class Window:
    text: str
    days: frozenset[int]  # 0 = Monday
    start_min: int
    end_min: int

    def open_at(self, when: float) -> bool:
        t = datetime.fromtimestamp(when, UTC)
        minute = t.hour * 60 + t.minute
        day = t.weekday()
        if self.start_min < self.end_min:
            return day in self.days and self.start_min <= minute < self.end_min
        # Crosses midnight: the evening part on a listed day, the morning part the day after.
        if day in self.days and minute >= self.start_min:
            return True
        return (day - 1) % 7 in self.days and minute < self.end_min


def _minutes(text: str) -> int:
    h, m = (int(x) for x in text.split(":"))
    if h > 24 or m > 59 or (h == 24 and m):
        raise SpecError([], summary=f"window time {text!r}: use HH:MM, 00:00 to 24:00")
    return h * 60 + m


def _days(text: str | None) -> frozenset[int]:
    if text is None or text.lower() in ("daily", "*"):
        return frozenset(range(7))
    out: set[int] = set()
    for part in text.lower().split(","):
        first, sep, last = part.partition("-")
        if first[:3] not in DAYS or (sep and last[:3] not in DAYS):
            raise SpecError([], summary=f"window days {text!r}: use Mon..Sun, Mon-Fri, daily")
        a = DAYS.index(first[:3])
        b = DAYS.index(last[:3]) if sep else a
        out.update(range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)])
    return frozenset(out)


def parse_window(text: str) -> Window:
    m = _RE.match(text.strip())
    if not m:
        raise SpecError(
            [], summary=f"window {text!r}: give '[DAYS] HH:MM-HH:MM' in UTC, e.g. 'Sat 02:00-04:00'"
        )
    start, end = _minutes(m.group("start")), _minutes(m.group("end"))
    if start == end:
        raise SpecError([], summary=f"window {text!r} is empty")
    return Window(text.strip(), _days(m.group("days")), start, end)


def window_open(text: str | None, when: float) -> bool:
    """No window (or one nobody can read, reported elsewhere) never holds a rollout up."""
    if not text:
        return True
    try:
        return parse_window(text).open_at(when)
    except SpecError:
        return True
