"""Site quorum (issue 11): failover time, overlaps, and what the cluster costs (root, `ip`).

Run: .venv/bin/python bench/site_failover.py [--trials N] [--kinds power,partition]

A site of three real daemons (`noderuntime run`), each in its own network namespace, their
nats-servers clustered over veths (routes with mutual TLS, JetStream R3 for the leases), one
Podman service in the root namespace for every node's containers (tests/quorum/site_lab.py).
A singleton (`placement: {scope: site, replicas: 1}`, `sleep 3600`) runs on one of them.

For each trial and each fault, the holder is found from Podman's view and then:
- power loss: every process in its namespace is SIGKILLed (daemon and nats-server) and its
  containers removed, together;
- partition: its veth is taken down at the bridge (a pulled cable; the daemon keeps running).
Failover time = from the fault to the first 100 ms sample of Podman showing the instance
running on another node. Overlap = any sample with two nodes running it, sampled every
100 ms for the whole run by a monitor outside every node. Between trials the node is healed
or powered on again and the site settles on one instance.

Cost: nats-server RSS of the clustered JetStream members against a lone nats-server with
the same settings but no cluster and no JetStream; KV writes per second (lease renewals and
any other lease traffic) over 30 s idle, from the bucket stream's sequence (`/jsz`).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import rss_kb
from noderuntime.errors import NodeRuntimeError
from noderuntime.version import find_nats_server
from tests.integration.node_harness import wait_for
from tests.quorum.site_lab import (
    InstanceMonitor,
    SiteLab,
    SiteNode,
    netns_unavailable,
    singleton_yaml,
)

WORKLOAD = "ctl"
IDLE_S = 30.0
SLOW_S = 10.0  # a failover past the target: its logs are kept


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def holder(site: SiteLab, monitor: InstanceMonitor) -> SiteNode:
    found = wait_for(
        lambda: monitor.last() if len(monitor.last()) == 1 else None,
        timeout=180,
        what="exactly one instance",
    )
    (node_id,) = found
    return next(n for n in site.nodes if n.node_id == node_id)


def settle(site: SiteLab, monitor: InstanceMonitor) -> SiteNode:
    for node in site.nodes:
        site.heal(node)
        if node.proc is None or node.proc.poll() is not None:
            site.power_on(node)
    for node in site.nodes:
        node.wait_ready(timeout=120)
    holder(site, monitor)

    def steady() -> SiteNode | None:
        # One instance on one node for 3 s, whichever node: after a heal a lease may still move
        # once (a renewal outage while the stream catches up fences the holder: one restart).
        now = time.monotonic()
        recent = {s for t, s in monitor.samples if t > now - 3}
        if now - monitor.samples[0][0] < 3 or len(recent) != 1:
            return None
        (only,) = recent
        if len(only) != 1:
            return None
        (node_id,) = only
        return next(n for n in site.nodes if n.node_id == node_id)

    h = wait_for(steady, timeout=180, what="a quiet site")
    return h


def replicas_current(site: SiteLab) -> bool:
    """Every replica of the lease bucket's stream caught up, as its leader says (a follower's
    /jsz does not track the other replicas' progress)."""
    leader = site.kv_leader()
    node = next((n for n in site.nodes if n.node_id == leader), None)
    if node is None:
        return False
    cluster = (site.lease_stream(node) or {}).get("cluster") or {}
    replicas = cluster.get("replicas") or []
    return cluster.get("leader") == leader and all(r.get("current") for r in replicas)


LAST_STATUS: dict[str, Any] = {}


def lease_fresh(node: SiteNode) -> bool:
    """The node holds its slot by its own account, renewed within the last renewal period: a
    trial whose holder's renewals were already failing (an election after a heal) would time a
    lease that lapses early and measure nothing (run 8: two 0.6 s "failovers")."""
    try:
        status = node.call("site.status")
    except (OSError, NodeRuntimeError):  # a daemon still starting: not settled
        return False
    LAST_STATUS[node.node_id] = status
    rows = [r for r in status.get("leases") or [] if r.get("mine")]
    healthy = (status.get("kv") or {}).get("healthy") is True
    return bool(rows) and healthy and all(r["age_s"] <= 2.0 for r in rows)


def took_at(node: SiteNode, after_wall: float) -> float | None:
    """Wall time of the first "took slot" line in a node's log after ``after_wall``."""
    for line in node.log().splitlines():
        if "took slot" not in line:
            continue
        try:
            stamp = time.mktime(time.strptime(line[:19], "%Y-%m-%d %H:%M:%S"))
            stamp += int(line[20:23]) / 1000
        except ValueError:
            continue
        if stamp >= after_wall:
            return stamp
    return None


def trial(site: SiteLab, monitor: InstanceMonitor, kind: str) -> tuple[float, str, str, str]:
    h = settle(site, monitor)
    wait_for(lambda: replicas_current(site), timeout=120, what="every lease replica current")

    # The lease can still move once after a heal (a renewal outage while the healed member
    # catches up fences the holder): fault whichever node holds a fresh lease *and* runs the
    # instance now, not the one that ran it when the site first looked quiet.
    def fresh_holder() -> SiteNode | None:
        running = monitor.last()
        for node in site.nodes:
            if running == {node.node_id} and lease_fresh(node):
                return node
        return None

    try:
        h = wait_for(fresh_holder, timeout=120, what="one node holding a fresh lease and running")
    except AssertionError:
        for node_id, status in LAST_STATUS.items():
            print(f"{node_id}: kv {status.get('kv')}, leases {status.get('leases')}", flush=True)
        keep = Path(tempfile.gettempdir()) / f"site_failover_stuck_{int(time.time())}"
        keep.mkdir(exist_ok=True)
        for node in site.nodes:
            (keep / f"{node.node_id}.log").write_text(node.log())
        print(f"logs kept in {keep}", flush=True)
        raise
    leaders = {"meta": site.meta_leader(), "kv": site.kv_leader()}
    led = "+".join(role for role, who in leaders.items() if who == h.node_id) or "none"
    t0, w0 = time.monotonic(), time.time()
    if kind == "power":
        site.power_off(h)
    else:
        site.cut(h)
    t1 = wait_for(
        lambda: monitor.first_after(t0, lambda s: len(s) == 1 and h.node_id not in s),
        timeout=180,
        what="the instance on another node",
    )
    if t1 - t0 > SLOW_S:  # keep what the daemons said: the lab removes their logs with it
        keep = Path(tempfile.gettempdir()) / f"site_failover_slow_{int(w0)}"
        keep.mkdir(exist_ok=True)
        for node in site.nodes:
            (keep / f"{node.node_id}.log").write_text(node.log())
        print(f"slow trial: logs kept in {keep}", flush=True)
    now = next(iter(monitor.last()), "?")
    taker = next((n for n in site.nodes if n.node_id == now), None)
    took = took_at(taker, w0) if taker is not None else None
    detail = f"holder led {led}" + (f", lease taken at {took - w0:.2f} s" if took else "")
    return t1 - t0, h.node_id, now, detail


def nats_pids(node: SiteNode) -> list[int]:
    out = subprocess.run(
        ["ip", "netns", "pids", node.host.netns], capture_output=True, text=True, timeout=10
    ).stdout.split()
    pids = []
    for pid in out:
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            continue
        if comm == "nats-server":
            pids.append(int(pid))
    return pids


def lone_nats_rss_kb() -> int:
    """A nats-server like a node's without cluster or JetStream (client + monitor only)."""
    binary = find_nats_server()
    assert binary is not None
    with tempfile.TemporaryDirectory() as d:
        conf = Path(d) / "c.conf"
        conf.write_text(
            'listen: "127.0.0.1:-1"\nhttp: "127.0.0.1:-1"\nmax_payload: 1048576\n'
            'ping_interval: "1000ms"\nping_max: 2\n'
        )
        proc = subprocess.Popen([str(binary), "-c", str(conf)], stderr=subprocess.DEVNULL)
        try:
            time.sleep(3)
            return rss_kb(proc.pid)
        finally:
            proc.terminate()
            proc.wait(10)


def kv_writes(site: SiteLab) -> tuple[int, str] | None:
    """(total messages ever written to the lease bucket's stream, its name) from /jsz."""
    for node in site.nodes:
        jsz = node.nats_monitor("/jsz?streams=true") or {}
        for account in jsz.get("account_details") or []:  # type: ignore[union-attr]
            for stream in account.get("stream_detail") or []:
                name = str(stream.get("name", ""))
                if name.startswith("KV_"):
                    return int(stream["state"]["last_seq"]), name
    return None


def main() -> None:
    why = netns_unavailable()
    if why:
        sys.exit(f"site_failover: {why}")
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--kinds", default="power,partition", help="faults to run, comma-separated")
    args = ap.parse_args()
    with SiteLab(3) as site:
        site.apply(singleton_yaml(WORKLOAD))
        with site.monitor(WORKLOAD) as monitor:
            settle(site, monitor)
            rss = {n.node_id: sum(rss_kb(p) for p in nats_pids(n)) for n in site.nodes}
            first = kv_writes(site)
            time.sleep(IDLE_S)
            second = kv_writes(site)
            print(
                "nats-server RSS, clustered with JetStream: "
                + ", ".join(f"{v / 1024:.1f} MiB" for v in rss.values())
                + f"; lone, no JetStream: {lone_nats_rss_kb() / 1024:.1f} MiB",
                flush=True,
            )
            if first and second:
                rate = (second[0] - first[0]) / IDLE_S
                print(
                    f"lease bucket {first[1]}: {rate:.2f} writes/s for the site, "
                    f"{rate / len(site.nodes):.2f} per node, over {IDLE_S:.0f} s idle",
                    flush=True,
                )
            results: dict[str, list[float]] = {k: [] for k in args.kinds.split(",")}
            try:
                for i in range(args.trials):
                    for kind in args.kinds.split(","):
                        took, was, now, detail = trial(site, monitor, kind)
                        results[kind].append(took)
                        print(
                            f"trial {i + 1} {kind}: {was} -> {now} in {took:.2f} s ({detail})",
                            flush=True,
                        )
            finally:  # a site that would not settle still reports what it measured
                for kind, values in results.items():
                    if values:
                        print(
                            f"{kind}: failover p50 {statistics.median(values):.2f} s, "
                            f"p99 {pct(values, 0.99):.2f} s, max {max(values):.2f} s "
                            f"over {len(values)} trials",
                            flush=True,
                        )
                print(
                    f"overlaps: {len(monitor.overlaps)} of {len(monitor.samples)} samples "
                    f"(every {monitor.interval_s * 1000:.0f} ms)",
                    flush=True,
                )


if __name__ == "__main__":
    main()
