"""`noderuntime revoke MEMBER --as OPERATOR`: revoke a member's keys everywhere.

The node prepares the fleet change, the CLI signs it as the operator (``--as FLEETDIR``) and
submits it; every node that receives it refuses the member from then on
(:mod:`noderuntime.fleet.revocation`, docs/operations.md "Revocation").
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from noderuntime.cli.rollout import _change

EXIT_OK = 0


def cmd_revoke(args: argparse.Namespace) -> int:
    params = {"member": args.member, "reason": args.reason or ""}
    r = _change(args, "fleet.revoke", params)
    rev = r["revocation"]
    if args.output == "json":
        print(json.dumps(rev, indent=2, sort_keys=True))
        return EXIT_OK
    keys = len(rev["keys"])
    print(
        f"{rev['principal']} revoked ({keys} key{'s' if keys != 1 else ''} known here, and every "
        "credential issued before now): every node refuses it once the fleet document reaches it"
    )
    return EXIT_OK


def add_parsers(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    add_as_option: Any,
) -> None:
    s = sub.add_parser(
        "revoke", help="revoke a node's or operator's keys everywhere (signed with --as)"
    )
    s.add_argument("member", metavar="MEMBER", help="node:ID, operator:NAME, or a known name")
    s.add_argument("--reason", help="recorded with the revocation (e.g. 'appliance stolen')")
    s.add_argument("-o", "--output", choices=("text", "json"), default="text")
    add_as_option(s)
    s.set_defaults(func=cmd_revoke)
