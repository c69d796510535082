"""Image pulls in the background, so one slow or hung pull never holds up the reconcile pass.

At most one pull runs per image reference, and at most ``concurrency`` at once (an edge link
shared by many pulls finishes none of them sooner). A finished pull's outcome is kept until the
loop takes it, then the loop is triggered; the loop decides what the outcome means for each
workload (back-off, events), so this module knows nothing about workloads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable

from noderuntime.config.model import IMAGE_PULL_STALL_TIMEOUT_S
from noderuntime.errors import ImageNotFoundError, NodeRuntimeError
from noderuntime.runtime.base import ContainerRuntime

PULL_CONCURRENCY = 2
PULL_STALL_TIMEOUT_S = IMAGE_PULL_STALL_TIMEOUT_S


class PullManager:
    def __init__(
        self,
        runtime: ContainerRuntime,
        *,
        on_done: Callable[[], None],
        concurrency: int = PULL_CONCURRENCY,
        stall_timeout_s: float | None = PULL_STALL_TIMEOUT_S,
        log: logging.Logger | None = None,
    ) -> None:
        self._runtime = runtime
        self._on_done = on_done
        self._slots = asyncio.Semaphore(concurrency)
        self._stall_timeout_s = stall_timeout_s
        self._log = log or logging.getLogger(__name__)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        # image -> None (pulled) or the error, until the loop takes it.
        self._finished: dict[str, NodeRuntimeError | None] = {}
        self._closed = False

    def busy(self) -> frozenset[str]:
        """Images whose pull runs or whose outcome the loop has not taken yet."""
        return frozenset(self._tasks) | frozenset(self._finished)

    def running(self) -> frozenset[str]:
        return frozenset(self._tasks)

    def ensure(self, image: str) -> bool:
        """Start pulling ``image`` unless that is already under way; True if this started it."""
        if self._closed or image in self._tasks or image in self._finished:
            return False
        self._tasks[image] = asyncio.create_task(self._pull(image), name=f"pull {image}")
        return True

    def take_finished(self) -> dict[str, NodeRuntimeError | None]:
        done, self._finished = self._finished, {}
        return done

    def cancel(self, image: str) -> None:
        task = self._tasks.pop(image, None)
        if task is not None:
            task.cancel()

    def retain(self, images: Iterable[str]) -> list[str]:
        """Cancel the pulls of images nobody needs any more; returns those images."""
        keep = set(images)
        dropped = [image for image in self._tasks if image not in keep]
        for image in dropped:
            self.cancel(image)
        for image in [i for i in self._finished if i not in keep]:
            del self._finished[image]
        return dropped

    async def aclose(self) -> None:
        self._closed = True
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _pull(self, image: str) -> None:
        outcome: NodeRuntimeError | None = None
        try:
            async with self._slots:
                await self._runtime.pull_image(image, stall_timeout_s=self._stall_timeout_s)
        except NodeRuntimeError as exc:
            outcome = exc
        except Exception as exc:
            # A bug here must still end as a failed pull the loop backs off from, not a hang.
            self._log.exception("pull of %s failed unexpectedly", image)
            outcome = ImageNotFoundError(f"pull failed unexpectedly: {exc!r}")
        # Cancelled pulls end above by raising CancelledError: nobody wants their outcome.
        if self._tasks.get(image) is asyncio.current_task():
            del self._tasks[image]
            self._finished[image] = outcome
            self._on_done()
