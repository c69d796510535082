"""CPU per reconcile pass with idle workloads (issue 8, "less work per pass").

    .venv/bin/python bench/reconcile_pass.py [--workloads 50] [--passes 2000]
    .venv/bin/python bench/reconcile_pass.py --baseline DIR   # DIR: another checkout's root

One process per measurement: a node's state store (SQLite in a temp dir), the reconciler and
FakeRuntime (so Podman's own cost, a separate process, is left out and the figure is the
node's). The workloads are applied and converged, then ``reconcile_once()`` runs ``--passes``
times with nothing changing: what the timer and stray events cost a node at rest. Reports
passes/s and CPU seconds (process time) per 1,000 passes.

``--baseline DIR`` runs the same measurement on the code at DIR (e.g. ``git archive main``
unpacked) and on this checkout, alternating, three rounds each, in one run. Code older than
FakeRuntime gets this checkout's ``runtime/fake.py`` (it needs only ``runtime/base.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import inspect
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
IMAGE = "localhost/busybox:1"


def _fake_runtime_class() -> Any:
    try:
        from noderuntime.runtime.fake import FakeRuntime
    except ImportError:
        spec = importlib.util.spec_from_file_location(
            "_bench_fake", ROOT / "noderuntime" / "runtime" / "fake.py"
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
        return module.FakeRuntime
    return FakeRuntime


async def measure(workloads: int, passes: int) -> dict[str, Any]:
    import noderuntime
    from noderuntime.config.model import NodeConfig
    from noderuntime.crdt import schema
    from noderuntime.crdt.state import StateStore
    from noderuntime.crdt.store import SQLiteStore
    from noderuntime.identity import keys
    from noderuntime.reconcile.loop import Reconciler

    try:
        from noderuntime.spec.models import canonical_dict
        from noderuntime.spec.parse import workload_from_dict
    except ImportError:  # code from before spec/ was split
        from noderuntime.spec import canonical_dict, workload_from_dict  # type: ignore[attr-defined,no-redef]

    fake = _fake_runtime_class()(images=[IMAGE])
    config = NodeConfig.model_validate({"nodeId": "n1", "site": "s1"})
    specs = [
        canonical_dict(
            workload_from_dict(
                {
                    "apiVersion": "noderuntime/v1",
                    "kind": "Workload",
                    "metadata": {"name": f"w{i:03d}", "labels": {"app": "bench"}},
                    "spec": {
                        "image": IMAGE,
                        "command": ["sleep", "3600"],
                        "env": {"MODE": "idle", "INDEX": str(i)},
                        "ports": [{"containerPort": 8080, "hostPort": 20000 + i}],
                        "restartPolicy": "always",
                    },
                }
            )
        )
        for i in range(workloads)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(Path(tmp) / "state.db")
        async with StateStore(store, keys.generate("node:n1"), node_id="n1", site="s1") as state:

            def put(doc: Any) -> None:
                for s in specs:
                    schema.put_workload(doc, s["metadata"]["name"], s)

            await state.write(state.fleet_doc, put)
            kwargs: dict[str, Any] = {}
            if "loop" in inspect.signature(Reconciler).parameters:
                kwargs["loop"] = False
            # Not entered: no loop task, no event watcher; passes are driven from here.
            rec = Reconciler(config=config, state=state, runtime=fake, **kwargs)
            for _ in range(5):
                await rec.reconcile_once()
            running = sum(1 for c in await fake.list_containers("n1") if c.state.value == "running")
            assert running == workloads, f"{running} of {workloads} running"
            writes = state.writes
            cpu0, wall0 = time.process_time(), time.perf_counter()
            for _ in range(passes):
                await rec.reconcile_once()
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
            assert state.writes == writes, "an idle pass wrote status"
    return {
        "code": noderuntime.__file__.rsplit("/noderuntime/", 1)[0],
        "workloads": workloads,
        "passes": passes,
        "passes_per_s": passes / wall,
        "cpu_s_per_1000": cpu / passes * 1000,
    }


def run_child(code: Path, workloads: int, passes: int) -> dict[str, Any]:
    out = subprocess.run(
        [
            sys.executable,
            str(Path(__file__).resolve()),
            "--child",
            str(code),
            "--workloads",
            str(workloads),
            "--passes",
            str(passes),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--workloads", type=int, default=50)
    p.add_argument("--passes", type=int, default=2000)
    p.add_argument("--baseline", type=Path, help="another checkout to compare with")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child is not None:
        sys.path.insert(0, str(args.child))
        print(json.dumps(asyncio.run(measure(args.workloads, args.passes))))
        return
    codes = {"this": ROOT} | ({"baseline": args.baseline.resolve()} if args.baseline else {})
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in codes}
    for _ in range(args.rounds):
        for name, code in reversed(codes.items()):
            results[name].append(run_child(code, args.workloads, args.passes))
    for name, runs in results.items():
        rate = statistics.median(r["passes_per_s"] for r in runs)
        cpu = statistics.median(r["cpu_s_per_1000"] for r in runs)
        cpus = ", ".join(f"{r['cpu_s_per_1000']:.2f}" for r in runs)
        print(
            f"{name:<8} {runs[0]['code']}: {args.workloads} idle workloads, "
            f"{rate:,.0f} passes/s, {cpu:.2f} CPU s per 1,000 passes (runs: {cpus})"
        )


if __name__ == "__main__":
    main()
