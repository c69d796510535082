"""A site with no network: an image archive from a stick is loaded, and the workload waiting for
it starts (real node, real Podman; the archive is `podman save` of the test image retagged)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from node_harness import podman, running_node, wait_for, workload_yaml

pytestmark = [pytest.mark.podman, pytest.mark.usefixtures("busybox_image")]


def test_an_image_loaded_from_a_file_starts_the_workload_waiting_for_it(tmp_path: Path) -> None:
    image = f"localhost/nr-offline-{uuid.uuid4().hex[:8]}:1"
    archive = tmp_path / "stick" / "app.tar"
    archive.parent.mkdir()
    podman("tag", "localhost/busybox:1", image)
    try:
        podman("save", "-o", str(archive), image)
    finally:
        podman("rmi", image)  # only the tag goes: the test image keeps its own
    not_an_archive = tmp_path / "stick" / "notes.tar"
    not_an_archive.write_text("not an image archive")
    try:
        with running_node() as node:
            node.apply(workload_yaml("app", image=image))
            wait_for(
                lambda: image in (node.workloads()["app"].get("message") or ""),
                timeout=60,
                what="app waiting for its missing image",
            )
            listed = json.loads(node.cli("image", "ls", "-o", "json", check=True).stdout)
            assert {"names": [image], "present": False, "workloads": ["app"]}.items() <= next(
                i for i in listed if i["names"] == [image]
            ).items()

            # The node's network reads through the same daemon (never set here: the host's).
            net = json.loads(node.cli("network", "-o", "json", check=True).stdout)
            assert net["links"] and {"gateway", "dns", "can_set"} <= net.keys()
            join = json.loads(node.cli("join", "-o", "json", check=True).stdout)
            assert (join["enrolled"], join["node"]) == (False, node.node_id)
            assert join["public_key"] in node.cli("join", check=True).stdout

            bad = node.cli("image", "load", str(not_an_archive))
            assert bad.returncode == 2 and "not an image archive" in bad.stderr

            loaded = node.cli("image", "load", str(archive), "-o", "json", check=True)
            result = json.loads(loaded.stdout)
            assert (result["names"], result["workloads"]) == ([image], ["app"])
            node.wait_phase("app", "Running")

            listed = json.loads(node.cli("image", "ls", "-o", "json", check=True).stdout)
            (row,) = [i for i in listed if image in i["names"]]
            assert row["present"] and row["workloads"] == ["app"]
            events = json.loads(node.cli("events", "-o", "json", check=True).stdout)
            assert any(e["kind"] == "image-loaded" and image in e["message"] for e in events)
    finally:
        podman("rmi", image, check=False)
