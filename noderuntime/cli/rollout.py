"""`noderuntime rollout start|status|pause|resume|abort|undo|history` and `site window set`.

At a hub the node signs these changes itself; at any other enrolled node give ``--as FLEETDIR``
and the CLI signs the update the node prepared as the operator (as ``apply`` does).
"""

from __future__ import annotations

import argparse
import json
import re
import time
from typing import Any

from noderuntime.cli.common import call as _call
from noderuntime.cli.common import read_input, submit_signed
from noderuntime.errors import InvalidInputError

EXIT_OK = 0
EXIT_ERROR = 1
WATCH_EVERY_S = 1.0
_DURATION_RE = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)?\Z")
_UNITS_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def duration(text: str) -> float:
    m = _DURATION_RE.match(text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"{text!r}: give a duration such as 30s, 5m or 1h")
    return float(m.group(1)) * _UNITS_S[m.group(2) or "s"]


def _change(args: argparse.Namespace, method: str, params: dict[str, Any]) -> Any:
    """A fleet change: signed by the node (a hub), or prepared there and signed as --as."""
    from noderuntime.cli.fleet import operator_from_args

    operator = operator_from_args(args)
    if operator is None:
        return _call(args, method, params)
    ident, credential = operator
    reply = _call(args, method, params | {"prepare": True, "author": ident.name})
    if reply.get("prepared"):
        submit_signed(args, ident, credential, reply["prepared"])
    return reply


def cmd_start(args: argparse.Namespace) -> int:
    from noderuntime.api.protocol import MAX_MESSAGE_BYTES

    text, source = read_input(args.filename, limit=MAX_MESSAGE_BYTES)
    params: dict[str, Any] = {
        "name": args.name,
        "yaml": text,
        "source": source,
        "waves": args.waves,
        "gateFor": args.gate_for,
        "maxUnhealthy": args.max_unhealthy,
        "startDeadline": args.start_deadline,
    }
    r = _change(args, "rollout.start", params)
    print(
        f"rollout {r['id']} of {r['name']} started: revision {r['revision']} "
        f"({r['spec_hash']}), waves {', '.join(r['waves'])}"
    )
    return EXIT_OK


def render_status(s: dict[str, Any]) -> str:
    lines = [
        f"rollout {s['id']} of {s['name']}: {s['state']}, wave {s['current_wave']} of "
        f"{s['waves_total']} (revision {s['revision']}, {s['spec_hash']}; "
        f"gate {s['gate_for_seconds']:g}s, max unhealthy {s['max_unhealthy']})",
    ]
    if s["reason"]:
        lines.append(f"  reason: {s['reason']}")
    if s["failed_nodes"]:
        lines.append(f"  failed nodes: {', '.join(s['failed_nodes'])}")
    if s["waiting_sites"]:
        lines.append(f"  waiting for an update window: {', '.join(s['waiting_sites'])}")
    lines.append("  WAVE  SELECTOR           NODES  HEALTHY  PENDING  FAILED  OVERRIDDEN  GATE")
    for w in s["waves"]:
        lines.append(
            f"  {w['wave']:<5} {w['selector']:<18} {w['nodes']:<6} {w['healthy']:<8} "
            f"{w['pending']:<8} {w['failed']:<7} {w['overridden']:<11} {w['gate']}"
        )
    if not s.get("hub"):
        lines.append("  (judged at a node that holds only its own report; ask a hub for all)")
    return "\n".join(lines)


def cmd_status(args: argparse.Namespace) -> int:
    ended = ("Complete", "RolledBack", "Aborted")
    while True:
        s = _call(args, "rollout.status", {"name": args.name})
        if args.output == "json":
            print(json.dumps(s, indent=2, sort_keys=True), flush=True)
        else:
            print(render_status(s), flush=True)
        if not args.watch or s["state"] in ended:
            return EXIT_OK
        time.sleep(WATCH_EVERY_S)


def cmd_control(args: argparse.Namespace) -> int:
    r = _change(args, f"rollout.{args.rollout_cmd}", {"name": args.name})
    print(f"rollout of {r['name']}: {r['result']}")
    return EXIT_OK


def cmd_undo(args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"name": args.name}
    if args.to_revision is not None:
        params["toRevision"] = args.to_revision
    r = _change(args, "rollout.undo", params)
    print(f"{r['name']} goes back to revision {r['revision']} everywhere")
    return EXIT_OK


def cmd_history(args: argparse.Namespace) -> int:
    rows = _call(args, "rollout.history", {"name": args.name})
    if args.output == "json":
        print(json.dumps(rows, indent=2, sort_keys=True))
        return EXIT_OK
    print("REVISION  SPEC HASH     AUTHOR                 WHEN                  ROLLOUT / NOTE")
    for r in rows:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r["at"] or 0))
        mark = "*" if r["stable"] else " "
        print(
            f"{r['revision']:<8}{mark} {r['spec_hash'] or '-':<13} {r['author'] or '-':<22} "
            f"{when:<21} {r['rollout'] or r['note'] or ''}"
        )
    return EXIT_OK


def cmd_window(args: argparse.Namespace) -> int:
    if args.window_cmd == "set" and not args.window.strip():
        raise InvalidInputError("give a window such as 'Sat 02:00-04:00', or use `window rm`")
    window = args.window if args.window_cmd == "set" else None
    r = _change(args, "site.window.set", {"site": args.site, "window": window})
    print(f"site {r['site']}: update window {r['window'] or 'none (any time)'}")
    return EXIT_OK


def add_parsers(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    add_as_option: Any,
) -> None:
    s = sub.add_parser("rollout", help="staged rollouts: waves, health gates, automatic rollback")
    rsub = s.add_subparsers(dest="rollout_cmd", required=True)

    r = rsub.add_parser("start", help="roll a new spec out wave by wave")
    r.add_argument("name", metavar="NAME")
    r.add_argument("-f", "--filename", required=True, help="YAML file holding the workload")
    r.add_argument(
        "--waves",
        required=True,
        help="ordered waves: site=S, label=K=V or cumulative percentages, e.g. 'site=lab,50%%'",
    )
    r.add_argument("--gate-for", type=duration, default=60.0, help="healthy this long (60s)")
    r.add_argument("--max-unhealthy", type=int, default=0, help="failures a gate allows (0)")
    r.add_argument(
        "--start-deadline",
        type=duration,
        default=120.0,
        help="a released node not Running the new revision by then has failed (120s)",
    )
    add_as_option(r)
    r.set_defaults(func=cmd_start)

    r = rsub.add_parser("status", help="a rollout's state, waves and nodes")
    r.add_argument("name", metavar="NAME")
    r.add_argument("-o", "--output", choices=("table", "json"), default="table")
    r.add_argument("--watch", action="store_true", help="print again every second until it ends")
    r.set_defaults(func=cmd_status)

    for verb, text in (
        ("pause", "hold the rollout where it is (released waves keep the new revision)"),
        ("resume", "carry on a paused rollout"),
        ("abort", "end the rollout: every node goes back to the stable revision"),
        (
            "promote",
            "release the next wave at every site now, gate or not (how an operator carries a "
            "rollout on with no hub)",
        ),
    ):
        r = rsub.add_parser(verb, help=text)
        r.add_argument("name", metavar="NAME")
        add_as_option(r)
        r.set_defaults(func=cmd_control)

    r = rsub.add_parser("undo", help="make an earlier revision stable everywhere")
    r.add_argument("name", metavar="NAME")
    r.add_argument("--to-revision", type=int, help="default: the one before the stable one")
    add_as_option(r)
    r.set_defaults(func=cmd_undo)

    r = rsub.add_parser("history", help="a workload's revisions")
    r.add_argument("name", metavar="NAME")
    r.add_argument("-o", "--output", choices=("table", "json"), default="table")
    r.set_defaults(func=cmd_history)

    s = sub.add_parser("site", help="site settings, the site cluster and its leases")
    ssub = s.add_subparsers(dest="site_cmd", required=True)
    w = ssub.add_parser("window", help="when rollouts may change a site (UTC)")
    wsub = w.add_subparsers(dest="window_cmd", required=True)
    ws = wsub.add_parser("set", help="e.g. site window set lab 'Sat 02:00-04:00'")
    ws.add_argument("site", metavar="SITE")
    ws.add_argument("window", metavar="WINDOW")
    add_as_option(ws)
    ws.set_defaults(func=cmd_window)
    wr = wsub.add_parser("rm", help="no window: rollouts may change the site at any time")
    wr.add_argument("site", metavar="SITE")
    add_as_option(wr)
    wr.set_defaults(func=cmd_window)
    from noderuntime.cli import site as cli_site

    cli_site.add_parsers(ssub)
