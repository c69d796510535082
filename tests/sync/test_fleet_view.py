"""The fleet view at a hub, over real daemons: a hub and nodes at two sites (issue 12 §1).

Rows come from the status documents the hub holds, one per (node, workload); a node cut off
(killed) turns stale once it has been silent longer than its heartbeat allows.
"""

from __future__ import annotations

import shutil
import tempfile
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.node_harness import wait_for, workload_yaml
from tests.ports import free_port
from tests.sync.fleet_harness import FleetNode, fleet_cli

pytestmark = [pytest.mark.slow, pytest.mark.podman, pytest.mark.usefixtures("busybox_image")]

CONVERGE_S = 45.0


def test_hub_lists_every_node_and_workload_and_marks_a_silent_node_stale() -> None:
    base = Path(tempfile.mkdtemp(prefix="nrv-", dir="/tmp"))
    run = uuid.uuid4().hex[:6]
    fdir = base / "fleet"
    fleet_cli("fleet", "init", "--dir", str(fdir), "--operator", "ops")
    hub = FleetNode(fdir, f"hub-{run}", "hq", role="hub", leaf=True)
    metrics_port = free_port()
    hub.extra_config["metricsAddress"] = f"127.0.0.1:{metrics_port}"
    a = FleetNode(fdir, f"a-{run}", "lab", peers=[hub])
    b = FleetNode(fdir, f"b-{run}", "shop", peers=[hub])
    c = FleetNode(fdir, f"c-{run}", "vault", peers=[hub])
    c.extra_config["sovereign"] = True
    nodes = [hub, a, b, c]
    try:
        for n in nodes:
            n.enroll()
            n.init()
        for n in nodes:
            n.start(wait=False)
        for n in nodes:
            n.wait_ready()
        hub.as_operator("apply", "-f", "-", input=workload_yaml("w"))

        def rows() -> dict[str, dict[str, Any]]:
            got = hub.json_cli("get", "workloads", "--fleet")
            return {r["node"]: r for r in got if r["name"] == "w"}

        def all_running() -> dict[str, dict[str, Any]] | None:
            # Running (their status documents) and heard (their heartbeats): two streams. A
            # node's first heartbeat can be refused while the hub still fetches its credential,
            # so its status may arrive a heartbeat before the hub hears it.
            got = rows()
            ok = all(
                got.get(n.node_id, {}).get("phase") == "Running"
                and got.get(n.node_id, {}).get("stale") is False
                for n in (a, b)
            )
            return got if ok else None

        got = wait_for(
            all_running, timeout=CONVERGE_S, what="w Running on a and b, both heard, at the hub"
        )
        assert got[a.node_id]["site"] == "lab" and got[b.node_id]["site"] == "shop"
        for r in (got[a.node_id], got[b.node_id]):
            assert r["stale"] is False and r["age_s"] is not None and r["spec_hash"]
            assert r["last_seen"] is not None and r["since"] is not None
        # The filter: one site.
        only_lab = hub.json_cli("get", "workloads", "--fleet", "--site", "lab")
        assert {r["node"] for r in only_lab} == {a.node_id}

        sites = {s["site"]: s for s in hub.json_cli("get", "sites")}
        assert sites["lab"]["nodes_total"] == 1 and sites["lab"]["nodes_up"] == 1
        assert sites["lab"]["workloads"].get("Running") == 1
        # The hub's metrics: its own node metrics and the fleet's, by site.
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as r:
            text = r.read().decode()
        got = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text)
            for s in fam.samples
        }
        assert got[("noderuntime_fleet_nodes_up", (("site", "lab"),))] == 1
        assert got[("noderuntime_fleet_workloads", (("phase", "Running"), ("site", "shop")))] == 1
        assert got[("noderuntime_peers_up", ())] >= 2
        assert got[("noderuntime_reconcile_pass_seconds_count", ())] >= 1
        assert got[("noderuntime_store_commits_total", ())] >= 1
        # Remote logs, read-only, operator-signed, through the hub.
        talker = workload_yaml("talker", command=["sh", "-c", "echo said-$((6*7)); sleep 3600"])
        hub.as_operator("apply", "-f", "-", input=talker)

        def said() -> str | None:
            r = hub.cli("--as", str(fdir), "logs", "talker", "--node", a.node_id, "--tail", "5")
            return r.stdout if r.returncode == 0 and "said-42" in r.stdout else None

        wait_for(said, timeout=CONVERGE_S, what="talker's log line read from a through the hub")
        events = a.call("events.list", {"workload": "talker"})
        assert any(e["kind"] == "remote-logs" and "operator:ops" in e["message"] for e in events)
        # Without an operator: refused before anything is sent.
        r = hub.cli("logs", "talker", "--node", a.node_id)
        assert r.returncode != 0 and "operator" in r.stderr
        # A sovereign site refuses.
        wait_for(
            lambda: any(n["node"] == c.node_id and n["up"] for n in hub.json_cli("get", "nodes")),
            timeout=CONVERGE_S,
            what="hub hears the sovereign node",
        )
        r = hub.cli("--as", str(fdir), "logs", "talker", "--node", c.node_id, "--tail", "5")
        assert r.returncode != 0 and "sovereign" in r.stderr, r.stdout + r.stderr
        # A site node answers for its own site only.
        assert {r["node"] for r in a.json_cli("get", "workloads", "--fleet")} == {a.node_id}

        # Fleet events: a workload that crashes on every node shows up at the hub as "crash"
        # from the nodes (ephemeral messages, not status documents).
        crasher = workload_yaml("crashy", command=["sh", "-c", "sleep 1; exit 3"])
        hub.as_operator("apply", "-f", "-", input=crasher)

        def crashes() -> set[str] | None:
            got = hub.json_cli("events", "--fleet")
            nodes = {
                e["node"] for e in got if e["workload"] == "crashy" and e["transition"] == "crash"
            }
            return nodes if {a.node_id, b.node_id} <= nodes else None

        wait_for(crashes, timeout=CONVERGE_S, what="crash events from a and b at the hub")
        # A node keeps no fleet events: it answers that a hub does.
        r = a.cli("events", "--fleet")
        assert r.returncode != 0 and "hub" in r.stderr

        # b is cut off: its rows stay (the last status the hub holds), marked stale.
        b.kill9()

        def b_stale() -> bool:
            r = rows().get(b.node_id)
            return bool(r and r["stale"])

        wait_for(b_stale, timeout=CONVERGE_S, what="b's rows stale at the hub")
        assert rows()[a.node_id]["stale"] is False
        sites = {s["site"]: s for s in hub.json_cli("get", "sites")}
        assert sites["shop"]["nodes_up"] == 0 and sites["shop"]["nodes_total"] == 1
    finally:
        for n in reversed(nodes):
            n.cleanup()
        shutil.rmtree(base, ignore_errors=True)
