"""Carry out planned actions against a ContainerRuntime. Each action maps to runtime calls."""

from __future__ import annotations

from collections.abc import Callable

from noderuntime.errors import ImageNotFoundError, NodeRuntimeError
from noderuntime.reconcile.plan import (
    Action,
    CreateContainer,
    RemoveContainer,
    StartContainer,
    StopContainer,
)
from noderuntime.reconcile.pulls import PullManager
from noderuntime.runtime.base import ContainerRuntime


class ImagePulling(Exception):
    """A create waits for its image, which is being pulled in the background. Not a failure."""

    def __init__(self, image: str, *, started: bool) -> None:
        super().__init__(f"pulling image {image}")
        self.image = image
        self.started = started  # this create started the pull (rather than found it)


def pull_failed(image: str, exc: NodeRuntimeError) -> ImageNotFoundError:
    """What a workload reports when the pull of its missing image failed."""
    return ImageNotFoundError(
        f"image {image} is not on this host and could not be pulled "
        f"({exc}); load it with `podman load -i FILE` or fix the image name"
    )


async def execute(
    action: Action,
    runtime: ContainerRuntime,
    pulls: PullManager,
    *,
    prepare: Callable[[Action], None] | None = None,
) -> str | None:
    """Run one action; returns the new container id for a create. Raises runtime errors.

    ``prepare`` runs just before a container is created or started (its secrets are written
    then, once its image is here); what it raises is the action's failure.

    A create whose image is missing starts (or finds) its pull and raises ImagePulling rather
    than waiting: a pull can take many minutes, and the pass must go on to other workloads.
    """
    match action:
        case CreateContainer(spec=spec):
            if not await runtime.image_present(spec.image):
                raise ImagePulling(spec.image, started=pulls.ensure(spec.image))
            if prepare is not None:
                prepare(action)
            cid = await runtime.create(spec)
            await runtime.start(cid)
            return cid
        case StartContainer(container_id=cid):
            if prepare is not None:
                prepare(action)
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
