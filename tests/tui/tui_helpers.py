"""Shared helpers for the TUI tests (imported by name: pytest puts this folder on sys.path)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from textual.pilot import Pilot


async def wait_until(
    pilot: Pilot[int], cond: Callable[[], bool], *, limit_s: float = 60.0, what: str = ""
) -> None:
    """Let the app run until ``cond()`` holds (a readiness poll, not a fixed sleep)."""
    deadline = time.monotonic() + limit_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {limit_s}s waiting for {what or cond}")
        await pilot.pause(0.05)
    await pilot.pause()


async def settle(pilot: Pilot[int]) -> None:
    """Wait for the current view to show its data, then for pending repaints."""
    app = pilot.app
    await wait_until(
        pilot,
        lambda: (
            any(s.has_class("-loaded") for s in app.screen_stack[-2:]) and app.ctx.refreshes > 0
        ),  # type: ignore[attr-defined]
        what="view loaded",
    )
    await pilot.pause(0.2)
    await asyncio.sleep(0)


def screen_text(pilot: Pilot[int]) -> str:
    """What the terminal shows right now, as plain text."""
    return "\n".join(s.text for s in pilot.app.screen._compositor.render_strips())
