"""Images on this node, and loading them from a file (a USB stick) when there is no network.

``images.load`` follows ``runtime/imageload.py``: open the file once, verify it (nothing
changes if that fails), then apply. It streams progress items and ends with the outcome; the
workloads that were waiting for a loaded image are retried at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

from noderuntime.api.routes.common import record_action, str_param
from noderuntime.api.server import Params, Route
from noderuntime.api.services import NodeServices
from noderuntime.audit.chain import AuditKind
from noderuntime.runtime.imageload import (
    LoadProgress,
    apply_load,
    find_archives,
    open_source,
    verify_image_archive,
)
from noderuntime.runtime.images import images_view

# How often a running load reports how far it is.
PROGRESS_EVERY_S = 0.5


def routes(svc: NodeServices) -> dict[str, Route]:
    return {
        "images.list": Route(
            partial(list_images, svc), doc="images on this node and the workloads using each"
        ),
        "images.archives": Route(
            partial(archives, svc), doc="image archives on removable media (/media, /mnt)"
        ),
        "images.load": Route(
            stream=partial(load, svc),
            write=True,
            doc="load a docker or OCI image archive from a file on the node (progress stream)",
        ),
    }


def _wanted(svc: NodeServices) -> dict[str, str]:
    desired = svc.reconciler.desired
    if desired is None:
        return {}
    return {n: str(dw.workload.spec.image) for n, dw in desired.workloads.items()}


async def list_images(svc: NodeServices, _: Params) -> list[dict[str, Any]]:
    images = await svc.runtime.list_images()
    running = {c.workload: c.image for c in svc.reconciler.observed if c.image}
    return images_view(images, _wanted(svc), running)


async def archives(_svc: NodeServices, _: Params) -> list[dict[str, object]]:
    return await asyncio.to_thread(find_archives)


async def load(svc: NodeServices, params: Params) -> AsyncIterator[dict[str, Any]]:
    raw = str_param(params, "path")
    source = await asyncio.to_thread(open_source, raw)
    try:
        yield {"phase": "verifying", "path": str(source.path), "total_bytes": source.size_bytes}
        verified = await asyncio.to_thread(verify_image_archive, source)
        yield {
            "phase": "loading",
            "format": verified.archive.format,
            "names": list(verified.archive.names),
            "sent_bytes": 0,
            "total_bytes": source.size_bytes,
        }
        progress = LoadProgress(source.size_bytes)
        task = asyncio.create_task(apply_load(svc.runtime, verified, progress))
        try:
            while not task.done():
                await asyncio.wait({task}, timeout=PROGRESS_EVERY_S)
                if not task.done():
                    yield {
                        "phase": "loading",
                        "sent_bytes": progress.sent_bytes,
                        "total_bytes": source.size_bytes,
                    }
            names = task.result()
        finally:
            if not task.done():  # the client went away: stop feeding Podman
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
    finally:
        source.close()
    started = svc.reconciler.image_arrived(names)
    who = record_action(
        svc,
        params,
        "image-loaded",
        f"loaded {', '.join(names) or 'an untagged image'} from {source.path}",
        audit=AuditKind.BUNDLE_LOADED,
        path=str(source.path),
        images=names,
        format=verified.archive.format,
        trust=verified.trust,
    )
    yield {
        "phase": "loaded",
        "names": names,
        "workloads": started,
        "by": who,
        "sent_bytes": source.size_bytes,
        "total_bytes": source.size_bytes,
    }
