"""asyncio help that Python 3.11's standard library lacks."""

from __future__ import annotations

import asyncio


def raise_if_cancelled() -> None:
    """Re-raise a cancellation of the current task that something below it swallowed.

    Python 3.11's ``asyncio.wait_for``, which nats-py uses for every request, returns the
    result instead of raising when the task is cancelled in the same loop step as the result
    arrives (CPython gh-86296, fixed in 3.12). A long-running loop that handles errors and goes
    round again then never stops, and a daemon's shutdown or a site teardown waits for it
    forever: seen in CI under load. ``Task.cancelling()`` still counts the request, so loops call
    this once per round, outside any ``asyncio.timeout`` block.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
