"""`get workloads --fleet` and `get sites`: what runs where, as a hub (or a site node) holds it."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any


def _age(ts: float | None, now: float) -> str:
    if not ts:
        return "-"
    secs = max(0, int(now - ts))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs >= size:
            return f"{secs // size}{unit}"
    return f"{secs}s"


def render_fleet_rows(
    rows: list[dict[str, Any]],
    table: Callable[[Sequence[str], Sequence[Sequence[str]]], str],
    *,
    wide: bool,
) -> str:
    if not rows:
        return "No workloads reported by any node this node holds status for."
    now = time.time()
    headers = ["SITE", "NODE", "NAME", "PHASE", "HEALTH", "RESTARTS", "REVISION", "SINCE"]
    headers += ["LAST SEEN", "STALE"]
    if wide:
        headers += ["SPEC HASH", "MESSAGE"]
    out = []
    for r in rows:
        row = [
            r.get("site") or "-",
            r["node"],
            r["name"],
            r["phase"],
            r.get("health") or "-",
            str(r["restarts"]),
            str(r["revision"]) if r.get("revision") is not None else "-",
            _age(r.get("since"), now),
            _age(r.get("last_seen"), now),
            "stale" if r["stale"] else "-",
        ]
        if wide:
            row += [(r.get("spec_hash") or "-")[:12], r.get("message") or ""]
        out.append(row)
    return table(headers, out)


def render_sites(
    sites: list[dict[str, Any]], table: Callable[[Sequence[str], Sequence[Sequence[str]]], str]
) -> str:
    if not sites:
        return "No sites known."
    now = time.time()
    rows = []
    for s in sites:
        wl = ", ".join(f"{k} {v}" for k, v in sorted((s.get("workloads") or {}).items())) or "-"
        ro = s.get("rollout_in_progress")
        rollouts = "?" if ro is None else (", ".join(r["workload"] for r in ro) or "-")
        rows.append(
            [
                s.get("site") or "-",
                f"{s['nodes_up']}/{s['nodes_total']}",
                wl,
                _age(s.get("last_heard"), now),
                "yes" if s.get("sovereign") else "-",
                rollouts,
            ]
        )
    return table(["SITE", "NODES UP", "WORKLOADS", "LAST HEARD", "SOVEREIGN", "ROLLOUTS"], rows)


def fleet_params(args: argparse.Namespace) -> dict[str, Any]:
    return {"site": args.site, "node": args.node, "labels": list(args.selector or [])}


def add_get_arguments(s: argparse.ArgumentParser) -> None:
    s.add_argument(
        "--fleet",
        action="store_true",
        help="one row per (node, workload) from the status this hub (or site node) holds",
    )
    s.add_argument("--site", help="with --fleet: only this site")
    s.add_argument("--node", help="with --fleet: only this node")
    s.add_argument(
        "-l",
        "--selector",
        action="append",
        metavar="KEY=VALUE",
        help="with --fleet: node or workload label (repeatable; all must match)",
    )


def fleet_events(
    args: argparse.Namespace,
    client: Callable[[argparse.Namespace], Any],
    table: Callable[[Sequence[str], Sequence[Sequence[str]]], str],
) -> int:
    """`events --fleet [--follow]`: a table (or JSON: a list, JSON lines when following)."""
    params = {"follow": args.follow, "limit": args.limit}
    headers = ["TIME", "SITE", "NODE", "WORKLOAD", "TRANSITION", "MESSAGE"]

    def row(e: dict[str, Any]) -> list[str]:
        when = time.strftime("%H:%M:%S", time.localtime(e["ts"]))
        site = e.get("site") or "-"
        return [when, site, e["node"], e["workload"] or "-", e["transition"], e["message"]]

    async def go() -> None:
        got: list[dict[str, Any]] = []
        async with client(args) as c:
            async for line in c.stream("fleet.events", params):
                event = json.loads(line)
                if args.follow:
                    text = line if args.output == "json" else "   ".join(row(event))
                    sys.stdout.write(text + "\n")
                    sys.stdout.flush()
                else:
                    got.append(event)
        if args.follow:
            return
        if args.output == "json":
            print(json.dumps(got, indent=2, sort_keys=True))
        else:
            print(table(headers, [row(e) for e in got]) if got else "No fleet events yet.")

    import asyncio  # not at the top: one-shot commands never load it

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(go())
    return 0


def remote_logs_params(args: argparse.Namespace) -> dict[str, Any]:
    """`logs NAME --node N`: the operator-signed request for ``fleet.logs``."""
    import base64

    from noderuntime.cli.fleet import operator_from_args
    from noderuntime.errors import InvalidInputError
    from noderuntime.sync.remotelogs import make_request

    operator = operator_from_args(args)
    if operator is None:
        raise InvalidInputError(
            "reading a node's logs remotely needs an operator: --as DIR or $NODERUNTIME_AS"
        )
    identity, credential = operator
    wire = make_request(
        identity,
        credential,
        node=args.node,
        workload=args.name,
        tail=args.tail,
        follow=args.follow,
        now=time.time(),
    )
    return {"node": args.node, "request": base64.b64encode(wire).decode()}
