"""Log lines with their time, and a divider where the container started again. Pure.

The node sends each line with the RFC 3339 time Podman recorded (``workloads.logs`` with
``timestamps``). A crash loop writes the same start-up lines run after run; without times and
dividers nine runs read as one. The starts come from the workload's events (``created``,
``restarted``, ``started``), which say the exit code of the run before.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

_TS_RE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d) ")
_EXIT_RE = re.compile(r"exit(?:ed with)? code (-?\d+)")
START_KINDS = frozenset({"created", "restarted", "started"})
# A start is recorded once the runtime's start call returned; the new run may have written
# its first lines a moment before that.
START_SLACK_S = 1.0


def split_timestamp(line: str) -> tuple[float | None, str]:
    """(epoch seconds, the rest) of a line Podman stamped; (None, line) otherwise."""
    m = _TS_RE.match(line)
    if m is None:
        return None, line
    zone = "+00:00" if m.group(3) == "Z" else m.group(3)
    try:
        ts = datetime.fromisoformat(m.group(1) + zone).timestamp()
    except ValueError:
        return None, line
    if m.group(2):
        ts += float("0" + m.group(2))
    return ts, line[m.end() :]


def clock(ts: float) -> str:
    """HH:MM:SS in UTC, like the rest of the console."""
    return time.strftime("%H:%M:%S", time.gmtime(ts))


@dataclass(frozen=True)
class RunStart:
    ts: float
    kind: str
    exit_code: str | None  # of the run before, when the event says it


def run_starts(events: Iterable[Mapping[str, Any]]) -> list[RunStart]:
    """The container starts among a workload's events, oldest first."""
    out = []
    for e in events:
        kind = str(e.get("kind") or "")
        ts = e.get("ts")
        if kind not in START_KINDS or not isinstance(ts, int | float):
            continue
        m = _EXIT_RE.search(str(e.get("message") or ""))
        out.append(RunStart(float(ts), kind, m.group(1) if m else None))
    out.sort(key=lambda s: s.ts)
    return out


def divider(start: RunStart) -> str:
    """ASCII only: the Linux console's font has it."""
    text = f"---- {clock(start.ts)} container {start.kind}"
    if start.exit_code is not None:
        text += f"; the previous run exited with code {start.exit_code}"
    return text + " ----"


class RunDivider:
    """Turns stamped lines (in time order, batch after batch) into shown lines."""

    def __init__(self, starts: Iterable[RunStart] = ()) -> None:
        self.starts: list[RunStart] = sorted(starts, key=lambda s: s.ts)
        self.last_ts: float | None = None
        self._next = 0

    def set_starts(self, starts: Iterable[RunStart]) -> None:
        """New events arrived: starts after the last line shown still get their divider."""
        self.starts = sorted(starts, key=lambda s: s.ts)
        last = self.last_ts
        self._next = (
            0 if last is None else sum(1 for s in self.starts if s.ts - START_SLACK_S <= last)
        )

    def reset(self) -> None:
        self.last_ts = None
        self._next = 0

    def annotate(self, lines: Iterable[str]) -> list[str]:
        out: list[str] = []
        starts = self.starts
        for raw in lines:
            ts, text = split_timestamp(raw)
            if ts is None:
                out.append(raw)
                continue
            while self._next < len(starts) and starts[self._next].ts - START_SLACK_S <= ts:
                after = self._next + 1
                if (
                    self.last_ts is None
                    and after < len(starts)
                    and starts[after].ts - START_SLACK_S <= ts
                ):
                    # Before the first line shown, only the latest start heads the tail.
                    self._next = after
                    continue
                out.append(divider(starts[self._next]))
                self._next += 1
            self.last_ts = ts
            out.append(f"{clock(ts)} {text}")
        return out
