"""`--as FLEETDIR` on the commands that change state at an enrolled node.

Fleet and site changes are signed by the operator; node-local ones (stop, start, restart, a
node override) are the node's to sign, so `--as` there is refused rather than silently ignored.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

from tests.integration.node_harness import wait_for, workload_yaml
from tests.sync.fleet_harness import FleetNode, fleet_cli

OPERATOR = "ann"


def test_operator_signs_site_overrides_and_is_refused_on_node_local_changes(
    busybox_image: str,
) -> None:
    base = Path(tempfile.mkdtemp(prefix="nro-", dir="/tmp"))
    node: FleetNode | None = None
    try:
        fdir = base / "fleet"
        fleet_cli("fleet", "init", "--dir", str(fdir), "--operator", OPERATOR)
        node = FleetNode(fdir, f"op-{uuid.uuid4().hex[:6]}", "plant")
        node.enroll()
        node.init()
        node.start()
        node.as_operator("apply", "-f", "-", input=workload_yaml("w"))

        # A site override signed by the operator: stored in site/plant, authored by them.
        r = node.cli(
            "override", "set", "w", "env.MODE", '"site-wide"', "--scope", "site",
            "--as", str(fdir),
        )  # fmt: skip
        assert r.returncode == 0, r.stderr

        def view() -> dict[str, Any]:
            assert node is not None
            views = {w["name"]: w for w in node.json_cli("get", "workloads")}
            return dict(views["w"])

        wait_for(
            lambda: view()["spec"]["spec"].get("env", {}).get("MODE") == "site-wide",
            timeout=30,
            what="the site override in the desired state",
        )
        assert view()["provenance"]["env.MODE"] == "site"
        latest = node.json_cli("history")
        site_changes = [h for h in latest if h["doc"] == "site/plant"]
        assert site_changes and site_changes[-1]["author"] == f"operator:{OPERATOR}"
        assert "env.MODE" in site_changes[-1]["summary"]

        # Removing it is signed by the operator too.
        r = node.cli("override", "rm", "w", "env.MODE", "--scope", "site", "--as", str(fdir))
        assert r.returncode == 0, r.stderr
        wait_for(
            lambda: "env.MODE" not in view()["provenance"],
            timeout=30,
            what="the site override gone from the desired state",
        )

        # Node-local changes with --as: a clear refusal, and nothing changes.
        before = len(node.json_cli("history"))
        r = node.cli("override", "set", "w", "env.MODE", '"x"', "--as", str(fdir))
        assert r.returncode != 0 and "signed by the node itself" in r.stderr
        for verb in ("stop", "start", "restart"):
            r = node.cli("--as", str(fdir), verb, "w")
            assert r.returncode != 0 and "drop --as" in r.stderr, (verb, r.stderr)
        assert len(node.json_cli("history")) == before
        final = view()
        assert final["enabled"] is True and "env.MODE" not in final["provenance"]
        assert '"x"' not in json.dumps(final["spec"])
    finally:
        if node is not None:
            node.cleanup()
        shutil.rmtree(base, ignore_errors=True)
