"""`get workloads --fleet -o json` at a hub holding 1,000 nodes x 10 workloads of status (issue 12).

    .venv/bin/python bench/fleet_view.py [--nodes 1000] [--workloads 10] [--runs 10]

A hub's data dir is initialised (`init --role hub`, not enrolled: the view reads held documents
and needs no sync) and its store seeded, before the node starts, with one ``node/<id>``
document per simulated node carrying its info and ``--workloads`` status records, as a hub
holds them after sync. Then the real `noderuntime run` serves it, and the bench times:

- the whole command, `noderuntime get workloads --fleet -o json` (a fresh process each run,
  interpreter start-up included): the figure the target is about;
- the ``fleet.workloads`` call alone over the control API (route + JSON both ways).

Target: ≤ 300 ms for the command.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import NodeProcess, summary

from noderuntime.api.client import ApiClient
from noderuntime.config.model import NodePaths, load_config
from noderuntime.crdt import schema
from noderuntime.crdt.schema import StatusRecord
from noderuntime.crdt.state import StateStore
from noderuntime.crdt.store import SQLiteStore
from noderuntime.identity.keys import load_key
from noderuntime.identity.principals import node_principal


async def seed(data_dir: Path, hub_id: str, nodes: int, workloads: int) -> None:
    config = load_config(data_dir)
    paths = NodePaths(data_dir, config)
    identity = load_key(paths.identity_file, node_principal(hub_id))
    now = time.time()
    async with StateStore(
        SQLiteStore(paths.state_db), identity, node_id=hub_id, site="hq"
    ) as state:
        for i in range(nodes):
            ident, site = f"n{i:04d}", f"site{i % 50:02d}"
            doc = schema.node_doc(ident)
            await state.ensure_doc(doc)
            info = {"nodeId": ident, "site": site, "role": "node", "labels": {"ring": "r"}}
            records = {
                f"w{j}": StatusRecord(
                    phase="Running",
                    container_id=f"{i:04d}{j:02d}" * 8,
                    restarts=j % 3,
                    health="healthy",
                    since=now - 3600,
                    message="",
                    spec_hash=f"{j:064x}",
                )
                for j in range(workloads)
            }

            def mutate(
                d: object, info: dict[str, object] = info, rs: dict[str, StatusRecord] = records
            ) -> None:
                schema.put_info(d, info)  # type: ignore[arg-type]
                for name, rec in rs.items():
                    schema.put_status(d, name, rec)  # type: ignore[arg-type]

            await state.write(doc, mutate, summary="bench seed")


async def api_call(sock: Path) -> tuple[float, int]:
    async with ApiClient(sock) as client:
        t = time.perf_counter()
        rows = await client.call("fleet.workloads", {})
        return time.perf_counter() - t, len(rows)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--workloads", type=int, default=10)
    ap.add_argument("--runs", type=int, default=10)
    args = ap.parse_args()
    hub = NodeProcess(node_id="hub", site="hq")
    try:
        hub.cli("init", "--node-id", "hub", "--site", "hq", "--role", "hub", check=True)
        t = time.perf_counter()
        asyncio.run(seed(hub.data_dir, "hub", args.nodes, args.workloads))
        print(
            f"seeded {args.nodes} nodes x {args.workloads} workloads in "
            f"{time.perf_counter() - t:.1f}s"
        )
        hub.start()
        cmd = [*hub_cli(hub), "get", "workloads", "--fleet", "-o", "json"]
        cli_times, api_times = [], []
        rows = 0
        for _ in range(args.runs):
            t = time.perf_counter()
            out = subprocess.run(cmd, capture_output=True, check=True).stdout
            cli_times.append(time.perf_counter() - t)
            rows = len(json.loads(out))
            took, _n = asyncio.run(api_call(hub.data_dir / "api.sock"))
            api_times.append(took)
        # Interpreter start-up and imports alone, for scale.
        base = []
        for _ in range(args.runs):
            t = time.perf_counter()
            subprocess.run([*hub_cli(hub), "version"], capture_output=True, check=True)
            base.append(time.perf_counter() - t)
        print(f"rows: {rows}")
        print(f"get workloads --fleet -o json (whole command): {summary(cli_times)}")
        print(f"fleet.workloads over the control API:          {summary(api_times)}")
        print(f"`noderuntime version` (start-up, for scale):   {summary(base)}")
    finally:
        hub.cleanup()


def hub_cli(hub: NodeProcess) -> list[str]:
    from node_harness import CLI

    return [*CLI, "--data-dir", str(hub.data_dir)]


if __name__ == "__main__":
    main()
