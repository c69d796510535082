"""TUI: key press to repaint with 200 workloads and a 50,000-line log (target <= 100 ms).

Textual headless at 160x48 with the in-process fake API (tests/tui/fake_api.py): the path being
measured (key -> handler -> repaint) does not touch the node, and 200 real containers would
measure Podman, not the TUI. Each sample is `pilot.press(key)` plus the wait until the app is
idle again, i.e. the key was handled and the screen repainted ("raw", includes Pilot's own idle
detection, measured on an unbound key); "to repaint" is from posting the key to the end of the
last screen update before the app went idle.

By default the app runs as a real console does: the live refresh at the app's default interval
(tui.app.REFRESH_INTERVAL_S, a status poll and a reload of the view) and a clock that moves, so
the SINCE ages tick (workloads started 20 s apart, from just now to ~66 min ago: the youngest
30 show m:ss ages that change every second, the rest change once a minute). A refresh that
lands during a sample counts in that sample. `frozen` runs the same keys with the refresh
stopped and the clock frozen (the key handling alone); with no argument both are run.

    .venv/bin/python bench/tui_responsiveness.py [live|frozen]
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

from _common import ROOT, summary

sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "tui"))

from fake_api import NOW, FakeApi, _workload
from textual.screen import Screen

import tui.app
from tui.app import REFRESH_INTERVAL_S, NodeRuntimeApp
from tui.screens.logs import LogsScreen

PHASES = ["Running", "Running", "Running", "Failed", "Stopped", "Starting", "Unhealthy"]


FROZEN_REFRESH_S = 3600.0


class BenchApp(NodeRuntimeApp):
    """The app, noting when it last sent a screen update (headless: nothing is written)."""

    # A relative CSS_PATH is resolved next to the subclass: point at the app's own.
    CSS_PATH = str(Path(tui.app.__file__).parent / str(NodeRuntimeApp.CSS_PATH))
    last_paint = 0.0
    to_paint: list[float] = []  # the samples being taken: key posted -> last screen update

    def _display(self, screen: Screen[Any], renderable: Any) -> None:
        super()._display(screen, renderable)
        if renderable is not None:
            self.last_paint = time.perf_counter()


async def timed(pilot: Any, key: str, samples: list[float]) -> None:
    app = pilot.app
    started = time.perf_counter()
    app.last_paint = 0.0
    await pilot.press(key)
    await pilot.pause()
    samples.append(time.perf_counter() - started)
    if app.last_paint:
        app.to_paint.append(app.last_paint - started)


async def run(live: bool) -> None:
    t0 = time.time()
    workloads = [
        _workload(f"svc-{i:03d}", PHASES[i % len(PHASES)], since=20.0 * i) for i in range(200)
    ]
    lines = [
        f"2026-09-21T12:00:{i % 60:02d}Z svc-042: request {i} GET /api/v1/items 200 in {i % 97} ms"
        for i in range(50_000)
    ]
    api = FakeApi(workloads=workloads, log_lines=lines)
    if live:
        app = BenchApp(api, clock=lambda: NOW + time.time() - t0, initial_view="workloads")
    else:
        app = BenchApp(
            api, clock=lambda: NOW, refresh_interval_s=FROZEN_REFRESH_S, initial_view="workloads"
        )
    paint: dict[str, list[float]] = {}

    def track(name: str) -> list[float]:
        app.to_paint = paint.setdefault(name, [])
        return []

    track("baseline")
    async with app.run_test(size=(160, 48)) as pilot:
        while not app.screen.has_class("-loaded"):
            await pilot.pause(0.01)
        # Pilot's own cost per key (post, wait for idle) on a key nothing is bound to.
        baseline = track("baseline")
        for _ in range(20):
            await timed(pilot, "f12", baseline)
        table = track("table")
        for _ in range(30):
            await timed(pilot, "down", table)
        for _ in range(5):
            await timed(pilot, "pagedown", table)
        filt = track("filter")
        await pilot.press("slash")
        # The footer re-renders for the focus change in steps over ~200 ms: a cost of the
        # (untimed) `/`, not of the first letter typed.
        await pilot.pause(0.3)
        for _ in range(3):  # 30 samples: a refresh lands in some, as it would
            for ch in "svc-1":
                await timed(pilot, ch, filt)
            for _ in range(5):
                await timed(pilot, "backspace", filt)
        await pilot.press("escape")
        await pilot.press("escape")
        await pilot.pause()

        started = time.perf_counter()
        await pilot.press("l")
        while not isinstance(app.screen, LogsScreen):
            await pilot.pause(0.01)
        logs = app.screen
        while len(logs.buffer) < 50_000:
            await pilot.pause(0.01)
        load_s = time.perf_counter() - started
        scroll = track("scroll")
        for key in ["pageup"] * 20 + ["up"] * 20 + ["home", "end"] * 3:
            await timed(pilot, key, scroll)
        worst = max(range(len(scroll)), key=lambda i: scroll[i])
        print(f"(slowest scroll sample: #{worst}, {scroll[worst] * 1000:.0f} ms)")
        search = track("search")
        await pilot.press("slash")
        for ch in "in 42 ms":
            await pilot.press(ch)
        await timed(pilot, "enter", search)
        for key in ["n"] * 10 + ["N"] * 10:
            await timed(pilot, key, search)
        pause = track("pause")
        for _ in range(5):
            await timed(pilot, "p", pause)

        refreshes = app.ctx.refreshes
        elapsed = time.time() - t0

    def both(raw: list[float], name: str) -> str:
        painted = paint[name]
        if not painted:  # the unbound key repaints nothing
            return summary(raw)
        return f"{summary(raw)}\n      to repaint: {summary(painted)} ({len(painted)} repainted)"

    if live:
        print(
            f"== live refresh every {REFRESH_INTERVAL_S:g} s (app default), moving clock: "
            f"{refreshes} refreshes in {elapsed:.0f} s"
        )
    else:
        print("== FROZEN: no live refresh (interval 3600 s), clock frozen: key handling alone")
    print(f"Pilot overhead per key (unbound key):   {both(baseline, 'baseline')}")
    print("200 workloads, 160x48:")
    print(f"  table cursor (down / pagedown):  {both(table, 'table')}")
    print(f"  live filter (type / backspace):  {both(filt, 'filter')}")
    print("50,000-line log:")
    print(f"  open logs, 50,000 lines in the view:  {load_s * 1000:.0f} ms")
    print(f"  scroll (pageup / up / home / end):    {both(scroll, 'scroll')}")
    print(f"  search (enter over 50k lines, n / N): {both(search, 'search')}")
    print(f"  pause / resume:                       {both(pause, 'pause')}")


async def main() -> None:
    modes = sys.argv[1:] or ["live", "frozen"]
    for mode in modes:
        if mode not in ("live", "frozen"):
            raise SystemExit(f"usage: {sys.argv[0]} [live|frozen]")
        await run(mode == "live")


if __name__ == "__main__":
    asyncio.run(main())
