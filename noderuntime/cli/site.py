"""`noderuntime site status|drain|uncordon`: the site cluster and its leases (issue 11)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from noderuntime.cli.common import call as _call

EXIT_OK = 0


def add_parsers(ssub: Any) -> None:
    st = ssub.add_parser("status", help="site cluster members, meta leader, quorum, KV, leases")
    st.add_argument("-o", "--output", choices=("table", "json"), default="table")
    st.set_defaults(func=cmd_status)
    for verb, helptext in (
        ("drain", "move NODE's placed instances to other nodes (before maintenance)"),
        ("uncordon", "let NODE hold placed instances again"),
    ):
        p = ssub.add_parser(verb, help=helptext)
        p.add_argument("node", metavar="NODE")
        p.set_defaults(func=cmd_cordon, verb=verb)


def cmd_status(args: argparse.Namespace) -> int:
    s = _call(args, "site.status")
    if args.output == "json":
        json.dump(s, sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(render_status(s) + "\n")
    return EXIT_OK


def cmd_cordon(args: argparse.Namespace) -> int:
    r = _call(args, f"site.{args.verb}", {"node": args.node})
    print(f"node/{r['node']} {'drained' if r['cordoned'] else 'uncordoned'}")
    return EXIT_OK


def render_status(s: dict[str, Any]) -> str:
    quorum = {True: "yes", False: "NO (placed instances stop on this side)", None: "unknown"}
    kv = s.get("kv") or {}
    lines = [
        f"Node:         {s.get('node')} ({s.get('mode')})",
        f"Quorum:       {quorum.get(s.get('quorum'), 'unknown')}",
        f"Meta leader:  {s.get('meta_leader') or '-'}",
        f"Routes:       {', '.join(str(r.get('name')) for r in s.get('routes') or []) or '-'}",
        f"KV:           {'healthy' if kv.get('healthy') else 'PROBLEM: ' + str(kv.get('problem'))}",
    ]
    js = s.get("jetstream")
    if js:
        used, limit = js["storage_bytes"] / 2**20, js["max_storage_bytes"] / 2**20
        full = " FULL" if js.get("full") else ""
        lines.append(f"JetStream:    {used:.1f} of {limit:.1f} MiB on this node{full}")
    lines.append("Members:")
    for node, m in sorted((s.get("members") or {}).items()):
        flags = [
            "up" if m.get("up") else "DOWN",
            *(["cordoned"] if m.get("cordoned") else []),
            *(["witness"] if m.get("witness") else []),
            *(["podman down"] if m.get("runtimeOk") is False else []),
        ]
        lines.append(f"  {node:<20} {' '.join(flags)}")
    lines.append("Leases:")
    for row in s.get("leases") or []:
        holder = row.get("holder") or "-"
        problem = f"  ({row['problem']})" if row.get("problem") else ""
        lines.append(
            f"  {row['key']:<28} {holder:<20} rev {row.get('revision')}  "
            f"changed {row.get('age_s')}s ago{problem}"
        )
    return "\n".join(lines)
