"""The Prometheus endpoint's output (noderuntime/node/metrics.py): parsed by the client library's
parser and, where Debian's prometheus package is installed, checked by `promtool check metrics`."""

from __future__ import annotations

import asyncio
import logging
import shutil
import subprocess

import pytest
from prometheus_client.parser import text_string_to_metric_families

from noderuntime.config.model import split_host_port
from noderuntime.node.metrics import MetricsServer, Sample

SAMPLE = Sample(
    node="n1",
    site="lab",
    phases={"Running": 2, "Failed": 1},
    restarts={"web": 3, "db": 0},
    probes={("web", True): 10, ("web", False): 2},
    store_size_bytes=4096,
    store_commits=7,
    store_commit_seconds=0.0123,
    sync_counters={"messages_in": 5, "bytes_in": 900},
    sync_rejections={"unauthorised": 1},
    peers_up=2,
    fleet_sites=[
        {"site": "lab", "nodes_up": 1, "nodes_total": 2, "workloads": {"Running": 3}},
        {"site": "shop", "nodes_up": 0, "nodes_total": 1, "workloads": {}},
    ],
    rollouts={"web": {"state": "Progressing", "wave": 0}},
)


async def scrape(sample: Sample, path: str = "/metrics") -> tuple[str, str]:
    async def gather() -> Sample:
        return sample

    async with MetricsServer("127.0.0.1:0", gather, log=logging.getLogger("t")) as srv:
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
        srv.pass_seconds.observe(0.004)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        await writer.drain()
        raw = (await reader.read()).decode()
        writer.close()
    head, _, body = raw.partition("\r\n\r\n")
    return head, body


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_are_served_and_parse() -> None:
    head, body = asyncio.run(scrape(SAMPLE))
    assert head.startswith("HTTP/1.0 200") and "version=0.0.4" in head
    got = samples(body)
    assert got[("noderuntime_workloads", (("phase", "Running"),))] == 2
    assert got[("noderuntime_workload_restarts_total", (("workload", "web"),))] == 3
    key = ("noderuntime_probe_results_total", (("result", "failure"), ("workload", "web")))
    assert got[key] == 2
    assert got[("noderuntime_store_size_bytes", ())] == 4096
    assert got[("noderuntime_store_commits_total", ())] == 7
    assert got[("noderuntime_sync_messages_in_total", ())] == 5
    assert got[("noderuntime_sync_rejections_total", (("reason", "unauthorised"),))] == 1
    assert got[("noderuntime_peers_up", ())] == 2
    assert got[("noderuntime_reconcile_pass_seconds_count", ())] == 1
    assert got[("noderuntime_reconcile_pass_seconds_bucket", (("le", "0.005"),))] == 1
    assert got[("noderuntime_fleet_nodes_up", (("site", "lab"),))] == 1
    assert got[("noderuntime_fleet_nodes", (("site", "shop"),))] == 1
    assert got[("noderuntime_fleet_workloads", (("phase", "Running"), ("site", "lab")))] == 3
    rollout = (("state", "Progressing"), ("wave", "0"), ("workload", "web"))
    assert got[("noderuntime_fleet_rollout", rollout)] == 1


def test_a_node_without_sync_or_fleet_serves_only_node_metrics() -> None:
    plain = Sample(
        node="n",
        site="s",
        phases={},
        restarts={},
        probes={},
        store_size_bytes=0,
        store_commits=0,
        store_commit_seconds=0.0,
    )
    _, body = asyncio.run(scrape(plain))
    names = {name for name, _ in samples(body)}
    assert "noderuntime_store_size_bytes" in names
    assert not any(n.startswith(("noderuntime_sync_", "noderuntime_fleet_")) for n in names)


def test_other_paths_are_not_found() -> None:
    head, _ = asyncio.run(scrape(SAMPLE, "/"))
    assert head.startswith("HTTP/1.0 404")


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian prometheus)")
def test_promtool_accepts_the_output() -> None:
    _, body = asyncio.run(scrape(SAMPLE))
    r = subprocess.run(
        ["promtool", "check", "metrics"], input=body, capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_metrics_address_is_host_and_port() -> None:
    assert split_host_port("127.0.0.1:9100") == ("127.0.0.1", 9100)
    assert split_host_port("[::1]:9100") == ("::1", 9100)
    for bad in ("9100", "host:", ":9100", "host:port", "h:70000"):
        with pytest.raises(ValueError):
            split_host_port(bad)
