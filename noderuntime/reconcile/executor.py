"""Carry out planned actions against a ContainerRuntime. Each action maps to runtime calls."""

from __future__ import annotations

from noderuntime.errors import ImageNotFoundError
from noderuntime.reconcile.plan import (
    Action,
    CreateContainer,
    RemoveContainer,
    StartContainer,
    StopContainer,
)
from noderuntime.runtime.base import ContainerRuntime


async def execute(action: Action, runtime: ContainerRuntime) -> str | None:
    """Run one action; returns the new container id for a create. Raises runtime errors."""
    match action:
        case CreateContainer(spec=spec):
            if not await runtime.image_present(spec.image):
                try:
                    await runtime.pull_image(spec.image)
                except ImageNotFoundError as exc:
                    raise ImageNotFoundError(
                        f"image {spec.image} is not on this host and could not be pulled "
                        f"({exc}); load it with `podman load -i FILE` or fix the image name"
                    ) from exc
            cid = await runtime.create(spec)
            await runtime.start(cid)
            return cid
        case StartContainer(container_id=cid):
            await runtime.start(cid)
        case StopContainer(container_id=cid, timeout_s=timeout):
            await runtime.stop(cid, timeout)
        case RemoveContainer(container_id=cid, timeout_s=timeout):
            # Stop first, with the workload's own grace period (up to an hour): a force
            # remove would wait for it inside one API call we must bound much tighter.
            await runtime.stop(cid, timeout)
            await runtime.remove(cid)
    return None


def describe(action: Action) -> str:
    match action:
        case CreateContainer(spec_hash=h):
            return f"create container (spec {h})"
        case StartContainer(container_id=cid, restart=True):
            return f"restart container {cid[:12]}"
        case StartContainer(container_id=cid):
            return f"start container {cid[:12]}"
        case StopContainer(container_id=cid):
            return f"stop container {cid[:12]}"
        case RemoveContainer(container_id=cid):
            return f"remove container {cid[:12]}"
    return repr(action)
