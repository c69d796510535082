"""An enrolled node whose own credential is unusable still runs, local-only (real process)."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from noderuntime.fleet import FleetAuthority, decode_credential
from tests.sync.fleet_harness import FleetNode, fleet_cli

pytestmark = [pytest.mark.podman]


def doctor_credential(node: FleetNode) -> dict[str, Any]:
    """`noderuntime doctor`'s verdict on the node's own fleet credential."""
    r = node.cli("doctor", "-o", "json")
    (check,) = [c for c in json.loads(r.stdout) if c["name"] == "fleet credential"]
    return dict(check)


def test_expired_own_credential_runs_local_only(tmp_path: Path) -> None:
    fdir = tmp_path / "fleet"
    fleet_cli("fleet", "init", "--dir", str(fdir))
    node = FleetNode(fdir, f"n-{uuid.uuid4().hex[:6]}", "s1")
    try:
        node.enroll()
        node.init()
        fresh = doctor_credential(node)
        assert fresh["status"] == "ok" and node.node_id in fresh["detail"], fresh
        # The same key, but a credential that expired nine days ago.
        cred_path = node.data_dir / "fleet" / "node.cred"
        old, _, _ = decode_credential(cred_path.read_bytes())
        past = FleetAuthority.open(fdir, clock=lambda: time.time() - 10 * 86400)
        cred_path.write_bytes(
            past.issue(old.principal, old.role, old.public_key, site=old.site, valid_days=1) + b"\n"
        )
        check = doctor_credential(node)
        assert check["status"] == "fail" and "expired" in check["detail"], check
        assert "local-only" in check["detail"] and "timedatectl" in check["fix"]
        node.start()
        sync = node.status()["sync"]
        assert sync["enabled"] is False and "expired" in sync["problem"], sync
        assert node.log().count("running local-only") == 1
        assert not (node.data_dir / "nats" / "nats-server.conf").exists()
    finally:
        node.cleanup()
