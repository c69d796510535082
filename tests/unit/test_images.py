"""Images on the node and loading them from a file: name matching, archive checks, the routes."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from test_api_routes import WEB, CannedLogs, FakeReconciler, FakeServices, call

from noderuntime.api.routes import build_routes
from noderuntime.api.server import ACTOR_PARAM
from noderuntime.api.services import NodeFacts
from noderuntime.audit.chain import AuditKind
from noderuntime.audit.log import MemoryAudit
from noderuntime.crdt.state import StateStore
from noderuntime.crdt.store import MemoryStore
from noderuntime.errors import ImageArchiveError
from noderuntime.identity import keys as identity
from noderuntime.identity.principals import node_principal
from noderuntime.runtime.base import ImageInfo
from noderuntime.runtime.fake import FakeRuntime
from noderuntime.runtime.imageload import find_archives, open_source, verify_image_archive
from noderuntime.runtime.images import (
    FORMAT_DOCKER,
    FORMAT_OCI,
    image_matches,
    images_view,
    inspect_archive,
    normalise,
    waiting_for,
)


def test_short_names_are_normalised_like_podman_does() -> None:
    assert normalise("busybox") == "docker.io/library/busybox:latest"
    assert normalise("acme/app:2") == "docker.io/acme/app:2"
    assert normalise("localhost/busybox") == "localhost/busybox:latest"
    assert normalise("reg.io:5000/x@sha256:ab") == "reg.io:5000/x@sha256:ab"


def test_a_short_name_is_met_by_a_local_image_of_that_path() -> None:
    assert image_matches("busybox:1", "localhost/busybox:1")
    assert image_matches("localhost/busybox:1", "localhost/busybox:1")
    assert not image_matches("localhost/busybox:1", "docker.io/library/busybox:1")
    assert not image_matches("busybox:1", "localhost/busybox:2")
    assert waiting_for(["localhost/app:3"], {"a": "app:3", "b": "app:4"}) == ["a"]


def test_images_view_names_users_and_missing_images() -> None:
    images = [ImageInfo("sha256:aaaa", ("localhost/busybox:1",), 2_000_000, 10.0)]
    view = images_view(
        images, {"web": "localhost/busybox:1", "db": "localhost/pg:16"}, {"old": "busybox:1"}
    )
    assert [(v["names"], v["present"], v["workloads"]) for v in view] == [
        (["localhost/busybox:1"], True, ["old", "web"]),
        (["localhost/pg:16"], False, ["db"]),
    ]


def _tar(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_docker_and_oci_archives_say_what_they_hold() -> None:
    docker = _tar({"manifest.json": json.dumps([{"RepoTags": ["localhost/a:1"]}]).encode()})
    facts = inspect_archive(io.BytesIO(docker), len(docker), "a.tar")
    assert (facts.format, facts.names) == (FORMAT_DOCKER, ("localhost/a:1",))
    note = {"org.opencontainers.image.ref.name": "localhost/b:2"}
    index = {"schemaVersion": 2, "manifests": [{"annotations": note}]}
    oci = _tar({"oci-layout": b"{}", "index.json": json.dumps(index).encode()})
    facts = inspect_archive(io.BytesIO(oci), len(oci), "b.tar")
    assert (facts.format, facts.names) == (FORMAT_OCI, ("localhost/b:2",))


def test_what_is_not_an_image_archive_is_refused_with_how_to_make_one() -> None:
    with pytest.raises(ImageArchiveError, match=r"not a tar file.*podman save"):
        inspect_archive(io.BytesIO(b"hello"), 5, "x.tar")
    other = _tar({"notes.txt": b"hi"})
    with pytest.raises(ImageArchiveError, match="not an image archive"):
        inspect_archive(io.BytesIO(other), len(other), "x.tar")
    with pytest.raises(ImageArchiveError, match="full path"):
        open_source("x.tar")


def test_a_verified_source_is_read_from_its_start(tmp_path: Path) -> None:
    path = tmp_path / "a.tar"
    path.write_bytes(_tar({"manifest.json": b'[{"RepoTags": ["localhost/a:1"]}]'}))
    source = open_source(str(path))
    try:
        verified = verify_image_archive(source)
        assert verified.archive.names == ("localhost/a:1",) and source.fh.tell() == 0
    finally:
        source.close()


def test_archives_are_found_a_few_levels_down(tmp_path: Path) -> None:
    (tmp_path / "usb" / "images").mkdir(parents=True)
    (tmp_path / "usb" / "images" / "app.tar").write_bytes(b"x")
    (tmp_path / "usb" / "readme.txt").write_bytes(b"x")
    deep = tmp_path / "usb" / "a" / "b" / "c"
    deep.mkdir(parents=True)
    (deep / "too-deep.tar").write_bytes(b"x")
    found = find_archives([tmp_path, tmp_path / "absent"])
    assert [f["path"] for f in found] == [str(tmp_path / "usb" / "images" / "app.tar")]


@pytest.fixture
async def svc(tmp_path: Path) -> AsyncIterator[FakeServices]:
    ident = identity.generate(node_principal("n1"))
    async with StateStore(MemoryStore(), ident, node_id="n1", site="s1") as state:
        facts = NodeFacts("n1", "s1", "node", 0.0, tmp_path, tmp_path / "api.sock", Path("/p"))
        yield FakeServices(facts, state, FakeReconciler(state), CannedLogs([]))


async def _load(svc: FakeServices, **params: Any) -> list[dict[str, Any]]:
    route = build_routes(svc)["images.load"]
    assert route.stream is not None
    return [item async for item in route.stream(params)]


async def test_a_loaded_image_is_recorded_and_wakes_the_workload_waiting_for_it(
    svc: FakeServices, tmp_path: Path
) -> None:
    svc.runtime = FakeRuntime()
    await call(svc, "workloads.apply", yaml=WEB)  # wants localhost/busybox:1
    (missing,) = await call(svc, "images.list")
    assert (missing["present"], missing["workloads"]) == (False, ["web"])
    # The fake runtime loads one image per line of the archive's bytes; a real index first.
    archive = _tar({"manifest.json": b'[{"RepoTags": ["localhost/busybox:1"]}]'})
    path = tmp_path / "busybox.tar"
    path.write_bytes(archive)
    svc.runtime.load_image = _names_loader(["localhost/busybox:1"])  # type: ignore[method-assign]
    svc.audit = audit = MemoryAudit()  # type: ignore[assignment]
    items = await _load(svc, path=str(path), **{ACTOR_PARAM: "technician:ann"})
    assert items[0]["phase"] == "verifying" and items[1]["names"] == ["localhost/busybox:1"]
    assert items[-1] == {
        "phase": "loaded",
        "names": ["localhost/busybox:1"],
        "workloads": ["web"],
        "by": "technician:ann",
        "sent_bytes": len(archive),
        "total_bytes": len(archive),
    }
    assert svc.reconciler.triggers == ["image"]
    event = svc.reconciler.events[-1]
    assert (event.workload, event.kind) == ("", "image-loaded")
    assert "localhost/busybox:1" in event.message and "technician:ann" in event.message
    assert audit.of(AuditKind.BUNDLE_LOADED) == [
        {
            "actor": "technician:ann",
            "path": str(path),
            "images": ["localhost/busybox:1"],
            "format": "docker-archive",
            "trust": "technician",
        }
    ]


async def test_a_file_that_is_not_an_archive_changes_nothing(
    svc: FakeServices, tmp_path: Path
) -> None:
    svc.runtime = FakeRuntime()
    path = tmp_path / "notes.tar"
    path.write_bytes(b"not a tar")
    with pytest.raises(ImageArchiveError):
        await _load(svc, path=str(path))
    assert [c for c in svc.runtime.calls if c[0] == "load_image"] == []
    assert not svc.reconciler.events


def _names_loader(names: list[str]) -> Any:
    async def load_image(chunks: Any, size_bytes: int) -> list[str]:
        async for _ in chunks:
            pass
        return names

    return load_image


async def test_a_workload_backing_off_a_failed_pull_starts_at_once_when_its_image_arrives() -> None:
    import asyncio

    from reconciler_harness import IMAGE, harness, workload

    async with harness(images=[]) as h:
        await h.apply(workload("web"), workload("other", image="localhost/other:1"))
        await h.settle()
        async with asyncio.timeout(5):
            while not h.rec.pending:  # noqa: ASYNC110 - the pull task ends on its own
                await asyncio.sleep(0.001)
        await h.settle()
        assert h.rec.runtime_state("web").backoff.next_attempt_at > h.clock()  # waiting
        h.runtime.images.add(IMAGE)  # what a load does to the runtime
        assert h.rec.image_arrived([IMAGE]) == ["web"]
        assert h.rec.pending
        await h.settle()  # no clock advance: no back-off is waited out
        assert [c.observed().workload for c in h.runtime.containers.values()] == ["web"]


async def test_history_hides_the_nodes_status_writes_unless_asked_and_marks_people(
    svc: FakeServices,
) -> None:
    from noderuntime.crdt import schema
    from noderuntime.crdt.schema import StatusRecord

    await call(svc, "workloads.apply", yaml=WEB)
    await call(svc, "workloads.stop", name="web", **{ACTOR_PARAM: "technician:ann"})
    state = svc.state
    for phase in ("Pending", "Running", "Exited"):
        await state.write(
            state.node_doc,
            lambda doc, p=phase: schema.put_status(doc, "web", StatusRecord(phase=p)),
            summary=f"status web {phase}",
        )
    shown = await call(svc, "history.list", limit=2)
    assert [(h["summary"], h["person"]) for h in shown] == [
        ("override web enabled=false (node)", True),
        ("apply web", False),  # this node's own signature, for nobody: root at its CLI
    ]
    everything = await call(svc, "history.list", status=True)
    assert [h["summary"] for h in everything[:3]] == [
        f"status web {p}" for p in ("Exited", "Running", "Pending")
    ]


class _Net:
    def __init__(self) -> None:
        self.applied: list[dict[str, Any]] = []

    async def read(self) -> dict[str, Any]:
        return {"links": [], "can_set": True}

    async def apply(self, params: Any) -> dict[str, Any]:
        self.applied.append(dict(params))
        return {"manager": "systemd-networkd", "file": "/x", "change": "eth0: DHCP"}


async def test_a_network_change_is_recorded_with_who_made_it(svc: FakeServices) -> None:
    svc.net = _Net()
    done = await call(
        svc, "network.set", name="eth0", mode="dhcp", **{ACTOR_PARAM: "technician:ann"}
    )
    assert done["by"] == "technician:ann" and svc.net.applied[0]["name"] == "eth0"
    event = svc.reconciler.events[-1]
    assert event.kind == "network-set"
    assert event.message == "network set eth0: DHCP via systemd-networkd (by technician:ann)"
