"""`noderuntime rekey`: rotate a node's key online (the flow: noderuntime.fleet.rekey).

At the node: ``noderuntime rekey`` makes a new key and asks the fleet for a credential.
At the fleet authority's machine, against a node holding the request (a hub):
``noderuntime rekey --issue NODE --as FLEETDIR [--grace 24h]`` issues it (the fleet root key
signs it here, in the CLI; it never goes to a node) and sends it, signed as the operator.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from noderuntime.cli.common import call as _call
from noderuntime.cli.common import submit_signed
from noderuntime.cli.rollout import duration
from noderuntime.errors import InvalidInputError

EXIT_OK = 0


def cmd_rekey(args: argparse.Namespace) -> int:
    if args.issue is None:
        r = _call(args, "node.rekey", {})
        print(
            f"node {r['node']}: new key {r['key_id']} requested (current {r['current_key_id']}); "
            f"the fleet authority issues it: noderuntime rekey --issue {r['node']} --as FLEETDIR "
            "(at a hub). The node installs it and restarts in place; its workloads keep running"
        )
        return EXIT_OK
    from noderuntime.fleet.authority import FleetAuthority, load_operator, resolve_operator_dir
    from noderuntime.fleet.credential import MemberRole

    fleet_dir = resolve_operator_dir(getattr(args, "as_operator", None))
    if fleet_dir is None:
        raise InvalidInputError(
            "--issue needs --as FLEETDIR: the fleet directory with the root key"
        )
    authority = FleetAuthority.open(fleet_dir)
    ident, operator_cred = load_operator(fleet_dir)
    p = _call(args, "rekey.pending", {"node": args.issue})
    bundle = authority.enroll_node(
        args.issue,
        p["site"],
        role=MemberRole(p["role"]),
        public_key=bytes.fromhex(p["key"]),
        addresses=tuple(p["addresses"]),
    )
    after = time.time() + args.grace
    r = _call(
        args,
        "rekey.issue",
        {
            "node": args.issue,
            "credential": bundle.credential_blob.decode(),
            "cert": bundle.node_cert_pem.decode(),
            "retireKey": p["current_key_id"],
            "retireAfter": after,
            "prepare": True,
        },
    )
    for prepared in r["prepared"]:
        submit_signed(args, ident, operator_cred, prepared)
    print(
        f"node {args.issue}: credential issued for key {p['key_id']}; the old key "
        f"{p['current_key_id']} is refused everywhere after "
        f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(after))} UTC"
    )
    return EXIT_OK


def add_parsers(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    add_as_option: Any,
) -> None:
    s = sub.add_parser("rekey", help="rotate this node's key online (or --issue one, as the fleet)")
    s.add_argument(
        "--issue", metavar="NODE", help="issue NODE's requested key (needs --as FLEETDIR)"
    )
    s.add_argument(
        "--grace",
        type=duration,
        default=24 * 3600.0,
        help="the old key is refused after this long (default 24h)",
    )
    add_as_option(s)
    s.set_defaults(func=cmd_rekey)
