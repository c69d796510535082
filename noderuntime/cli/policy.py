"""`noderuntime policy allow|deny|ls`: the fleet's workload security policy (issue 13 §4).

An enrolled node takes a change only signed by an operator (``--as FLEETDIR``); a node that is
not enrolled lets its root (or admin group) change it. Allowances are listed in
``docs/security.md`` and ``noderuntime/spec/policy.py``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

EXIT_OK = 0


def add_parsers(sub: Any, add_as_option: Callable[[argparse.ArgumentParser], None]) -> None:
    s = sub.add_parser(
        "policy", help="workload security policy: what workloads may take from their host"
    )
    psub = s.add_subparsers(dest="policy_command", metavar="COMMAND", required=True)
    for verb, helptext in (
        ("allow", "allow privileged, hostNetwork, capability:X, device:P, hostPath:P, ..."),
        ("deny", "take back allowances given with allow"),
    ):
        p = psub.add_parser(verb, help=helptext)
        p.add_argument("allowances", nargs="+", metavar="ALLOWANCE")
        p.add_argument("--workload", help="for this workload only (default: every workload)")
        p.add_argument("--site", help="at this site only (default: every site)")
        add_as_option(p)
        p.set_defaults(func=cmd_allow, remove=verb == "deny")
    p = psub.add_parser("ls", help="list the fleet's workload policy")
    p.add_argument("-o", "--output", choices=("table", "json"), default="table")
    p.set_defaults(func=cmd_ls)


def cmd_allow(args: argparse.Namespace) -> int:
    from noderuntime.cli.rollout import _change

    params = {
        "allow": args.allowances,
        "workload": args.workload,
        "site": args.site,
        "remove": args.remove,
    }
    r = _change(args, "policy.allow", params)
    allowed = ", ".join(r["allowed"]) or "nothing"
    print(f"policy site={r['site']} workload={r['workload']}: allowed {allowed}")
    return EXIT_OK


def cmd_ls(args: argparse.Namespace) -> int:
    from noderuntime.cli.common import call as _call

    entries = _call(args, "policy.list")
    if args.output == "json":
        json.dump(entries, sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write("\n")
        return EXIT_OK
    print(f"{'SITE':<16} {'WORKLOAD':<24} ALLOWED")
    for e in entries:
        print(f"{e['site']:<16} {e['workload']:<24} {', '.join(e['allowed'])}")
    return EXIT_OK
