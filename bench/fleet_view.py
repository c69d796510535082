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

A/B in one run: ``--old DIR`` (a checkout of the code to compare, e.g. ``git worktree add
--detach /tmp/old <commit>``) starts a second hub from a copy of the seeded data dir, running
that code, and the rounds alternate old and new against the same load. Each command also
reports its user+sys CPU (``/usr/bin/time``: load inflates it less than wall time), and each
hub's first call, made ``--first-after`` seconds after it is ready (a hub warms its caches in
the background), is timed on its own. The load average is printed with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import NodeProcess, summary, wait_for

from noderuntime.api.client import ApiClient
from noderuntime.config.model import NodePaths, load_config
from noderuntime.crdt import schema
from noderuntime.crdt.schema import StatusRecord
from noderuntime.crdt.state import StateStore
from noderuntime.crdt.store import SQLiteStore
from noderuntime.errors import NodeRuntimeError
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


async def api_call(sock: Path, method: str = "fleet.workloads") -> tuple[float, int]:
    async with ApiClient(sock) as client:
        t = time.perf_counter()
        rows = await client.call(method, {})
        return time.perf_counter() - t, len(rows)


@dataclass
class Side:
    """One hub and the code its CLI runs (``code``: the checkout, as cwd and PYTHONPATH)."""

    label: str
    hub: NodeProcess
    code: Path
    proc: subprocess.Popen[bytes] | None = None
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    api: list[float] = field(default_factory=list)
    first: float | None = None
    # Where the CLI's compiled modules are kept (``--bytecode``), else none are written.
    pyc: Path | None = None

    def env(self) -> dict[str, str]:
        env = {**os.environ, "PYTHONPATH": str(self.code)}
        if self.pyc is not None:
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = str(self.pyc)
        return env

    def start(self) -> None:
        log = open(self.hub.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "noderuntime.cli", "--data-dir", str(self.hub.data_dir), "run"],
            cwd=self.code,
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        sock = self.hub.data_dir / "api.sock"
        wait_for(lambda: _answers(sock), timeout=120, what=f"{self.label} hub ready")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(30)

    def command(self) -> tuple[float, float, bytes]:
        """Wall time, user+sys CPU and stdout of one `get workloads --fleet -o json`."""
        cmd = ["/usr/bin/time", "-f", "%U %S", sys.executable, "-m", "noderuntime.cli"]
        cmd += ["--data-dir", str(self.hub.data_dir), "get", "workloads", "--fleet", "-o", "json"]
        t = time.perf_counter()
        r = subprocess.run(cmd, cwd=self.code, env=self.env(), capture_output=True, check=True)
        wall = time.perf_counter() - t
        user, sys_ = r.stderr.decode().split()[-2:]
        return wall, float(user) + float(sys_), r.stdout


def _answers(sock: Path) -> bool:
    try:
        asyncio.run(api_call(sock, "node.status"))
    except NodeRuntimeError:
        return False
    return True


def _load() -> str:
    return "load {:.1f}/{:.1f}/{:.1f}".format(*os.getloadavg())


def ab(args: argparse.Namespace) -> None:
    """Old and new hubs from one seeded data dir; rounds alternate between them."""
    new = Side("new", NodeProcess(node_id="hub", site="hq"), Path(__file__).resolve().parents[1])
    old = Side("old", NodeProcess(node_id="hub", site="hq"), Path(args.old).resolve())
    try:
        new.hub.cli("init", "--node-id", "hub", "--site", "hq", "--role", "hub", check=True)
        asyncio.run(seed(new.hub.data_dir, "hub", args.nodes, args.workloads))
        shutil.rmtree(old.hub.data_dir)
        shutil.copytree(new.hub.data_dir, old.hub.data_dir)
        for side in (old, new):
            if args.bytecode:
                side.pyc = Path(tempfile.mkdtemp(prefix="nr-pyc-"))
                subprocess.run(
                    [sys.executable, "-c", "import noderuntime.cli.main"],
                    cwd=side.code,
                    env=side.env(),
                    check=True,
                )
            side.start()
        time.sleep(args.first_after)
        for side in (old, new):
            side.first, _, _ = side.command()
            print(
                f"{side.label} first call {args.first_after:.0f}s after ready: "
                f"{side.first * 1000:.0f} ms ({_load()})"
            )
        outputs = {}
        for i in range(args.runs):
            for side in (old, new) if i % 2 == 0 else (new, old):
                wall, cpu, out = side.command()
                side.wall.append(wall)
                side.cpu.append(cpu)
                outputs[side.label] = out
                side.api.append(asyncio.run(api_call(side.hub.data_dir / "api.sock"))[0])
            walls = f"old {old.wall[-1] * 1000:.0f} ms, new {new.wall[-1] * 1000:.0f} ms"
            print(f"round {i + 1}: {walls} ({_load()})")
        same = outputs["old"] == outputs["new"]
        print(f"rows: {len(json.loads(outputs['new']))}; output byte-identical: {same}")
        for side in (old, new):
            print(f"{side.label} whole command: {summary(side.wall)}")
            print(f"{side.label} CLI user+sys:  {summary(side.cpu)}")
            print(f"{side.label} fleet.workloads (rows) over the API: {summary(side.api)}")
        print(_load())
    finally:
        for side in (old, new):
            side.stop()
            shutil.rmtree(side.hub.data_dir, ignore_errors=True)
            if side.pyc is not None:
                shutil.rmtree(side.pyc, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--workloads", type=int, default=10)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--old", help="A/B: a checkout of the code to compare against")
    ap.add_argument("--first-after", type=float, default=5.0, help="A/B: first call delay")
    ap.add_argument(
        "--bytecode",
        action="store_true",
        help="A/B: the CLI runs with compiled modules kept (as installed), even where "
        "PYTHONDONTWRITEBYTECODE is set (then every run compiles noderuntime from source)",
    )
    args = ap.parse_args()
    if args.old:
        ab(args)
        return
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
