"""TUI: key press to repaint with 200 workloads and a 50,000-line log (target <= 100 ms).

Textual headless at 160x48 with the in-process fake API (tests/tui/fake_api.py): the path being
measured (key -> handler -> repaint) does not touch the node, and 200 real containers would
measure Podman, not the TUI. Each sample is `pilot.press(key)` plus the wait until the app is
idle again, i.e. the key was handled and the screen repainted.

    .venv/bin/python bench/tui_responsiveness.py
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

from _common import ROOT, summary

sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "tui"))

from fake_api import FakeApi, _workload, clock

from tui.app import NodeRuntimeApp
from tui.screens.logs import LogsScreen

PHASES = ["Running", "Running", "Running", "Failed", "Stopped", "Starting", "Unhealthy"]


async def timed(pilot: Any, key: str, samples: list[float]) -> None:
    started = time.perf_counter()
    await pilot.press(key)
    await pilot.pause()
    samples.append(time.perf_counter() - started)


async def main() -> None:
    workloads = [_workload(f"svc-{i:03d}", PHASES[i % len(PHASES)]) for i in range(200)]
    lines = [
        f"2026-09-21T12:00:{i % 60:02d}Z svc-042: request {i} GET /api/v1/items 200 in {i % 97} ms"
        for i in range(50_000)
    ]
    api = FakeApi(workloads=workloads, log_lines=lines)
    app = NodeRuntimeApp(api, clock=clock, refresh_interval_s=3600, initial_view="workloads")
    async with app.run_test(size=(160, 48)) as pilot:
        while not app.screen.has_class("-loaded"):
            await pilot.pause(0.01)
        # Pilot's own cost per key (post, wait for idle) on a key nothing is bound to.
        baseline: list[float] = []
        for _ in range(20):
            await timed(pilot, "f12", baseline)
        table: list[float] = []
        for _ in range(30):
            await timed(pilot, "down", table)
        for _ in range(5):
            await timed(pilot, "pagedown", table)
        filt: list[float] = []
        await pilot.press("slash")
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
        scroll: list[float] = []
        for key in ["pageup"] * 20 + ["up"] * 20 + ["home", "end"] * 3:
            await timed(pilot, key, scroll)
        worst = max(range(len(scroll)), key=lambda i: scroll[i])
        print(f"(slowest scroll sample: #{worst}, {scroll[worst] * 1000:.0f} ms)")
        search: list[float] = []
        await pilot.press("slash")
        for ch in "in 42 ms":
            await pilot.press(ch)
        await timed(pilot, "enter", search)
        for key in ["n"] * 10 + ["N"] * 10:
            await timed(pilot, key, search)
        pause: list[float] = []
        for _ in range(5):
            await timed(pilot, "p", pause)

    print(f"Pilot overhead per key (unbound key):   {summary(baseline)}")
    print("200 workloads, 160x48:")
    print(f"  table cursor (down / pagedown):  {summary(table)}")
    print(f"  live filter (type / backspace):  {summary(filt)}")
    print("50,000-line log:")
    print(f"  open logs, 50,000 lines in the view:  {load_s * 1000:.0f} ms")
    print(f"  scroll (pageup / up / home / end):    {summary(scroll)}")
    print(f"  search (enter over 50k lines, n / N): {summary(search)}")
    print(f"  pause / resume:                       {summary(pause)}")


if __name__ == "__main__":
    asyncio.run(main())
