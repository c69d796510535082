"""`noderuntime secret set|ls|rm`: fleet secrets, sealed here to each target node's key.

The value never leaves this process in the clear: the node answers which nodes a selector names
and their sealing keys (``secret.targets``), this command seals the value to each one, and only
the sealed boxes go to the node, which stores them signed as the operator (``--as``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from noderuntime.errors import InvalidInputError

EXIT_OK = 0
SECRET_RECORD_V = 1


def _read_value(args: argparse.Namespace) -> bytes:
    from noderuntime.reconcile.secrets import MAX_SECRET_BYTES

    if args.from_literal is not None:
        value: bytes = args.from_literal.encode()
    else:
        try:
            if args.from_file == "-":
                value = sys.stdin.buffer.read(MAX_SECRET_BYTES + 1)
            else:
                with open(args.from_file, "rb") as fh:
                    value = fh.read(MAX_SECRET_BYTES + 1)
        except OSError as exc:
            raise InvalidInputError(f"cannot read {args.from_file}: {exc.strerror}") from exc
    if len(value) > MAX_SECRET_BYTES:
        raise InvalidInputError(f"a secret is at most {MAX_SECRET_BYTES} bytes; nothing was sent")
    return value


def build_record(
    name: str,
    value: bytes,
    reply: dict[str, Any],
    *,
    by: str,
    selector: dict[str, Any],
    now: float,
) -> dict[str, Any]:
    """Seal ``value`` to every target ``secret.targets`` answered; refuse a partial set."""
    from noderuntime.identity.sealing import public_key_from_text, seal

    if reply.get("unknown"):
        raise InvalidInputError(
            f"this node holds no node {', '.join(reply['unknown'])}: run the command at a hub "
            "(it holds every node) or check the names; nothing was set"
        )
    targets = reply.get("targets") or []
    if not targets:
        raise InvalidInputError(
            f"no node this node holds matches (it holds {reply.get('held_nodes', 0)}); give "
            "--node, --site or -l, and run at a hub; nothing was set"
        )
    version = int(reply["version"])
    sealed: dict[str, Any] = {}
    for t in targets:
        key = public_key_from_text(t.get("sealKey"))
        if key is None:
            raise InvalidInputError(
                f"node {t['node']} publishes no sealing key (it runs a noderuntime from before "
                "secrets, or has not reported yet): upgrade or start it; nothing was set"
            )
        box = seal(value, key, name=name, node_id=t["node"], version=version)
        sealed[t["node"]] = box.to_wire()
    return {
        "v": SECRET_RECORD_V,
        "version": version,
        "sealed": sealed,
        # Which site each target is in: a site's nodes rotate one at a time (docs/security.md).
        "sites": {t["node"]: str(t.get("site", "")) for t in targets},
        "targets": selector,
        "by": by,
        "at": now,
        "size": len(value),
    }


def cmd_set(args: argparse.Namespace) -> int:
    from noderuntime.cli.common import call as _call
    from noderuntime.cli.fleet import operator_from_args
    from noderuntime.cli.rollout import _change
    from noderuntime.config.model import parse_label_args

    if not (args.node or args.site or args.label):
        raise InvalidInputError("say which nodes may open it: --node N, --site S or -l k=v")
    value = _read_value(args)
    labels = parse_label_args(args.label or [])
    selector = {"nodes": args.node or [], "sites": args.site or [], "labels": labels}
    reply = _call(args, "secret.targets", {"name": args.name, **selector})
    operator = operator_from_args(args)
    by = operator[0].name if operator is not None else "node"
    record = build_record(args.name, value, reply, by=by, selector=selector, now=time.time())
    del value
    r = _change(args, "secret.set", {"name": args.name, "record": record})
    print(f"secret {r['name']}: version {r['version']} sealed for {', '.join(r['nodes'])}")
    return EXIT_OK


def cmd_ls(args: argparse.Namespace) -> int:
    from noderuntime.cli.common import call as _call

    rows = _call(args, "secret.ls")
    if args.output == "json":
        json.dump(rows, sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write("\n")
        return EXIT_OK
    print(f"{'NAME':<24} {'VERSION':>7}  {'BY':<20} NODES")
    for row in rows:
        print(
            f"{row['name']:<24} {row['version']!s:>7}  {row.get('by') or '-':<20} "
            f"{','.join(row['nodes']) or '-'}"
        )
    return EXIT_OK


def cmd_rm(args: argparse.Namespace) -> int:
    from noderuntime.cli.rollout import _change

    r = _change(args, "secret.rm", {"name": args.name})
    print(f"secret {r['name']} removed")
    return EXIT_OK


def add_parsers(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], add_as_option: Any
) -> None:
    s = sub.add_parser("secret", help="fleet secrets, sealed to each target node")
    ssub = s.add_subparsers(dest="secret_cmd", required=True)
    p = ssub.add_parser("set", help="set (or rotate) a secret for the nodes named")
    p.add_argument("name", metavar="NAME")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--from-file", metavar="FILE", help="the value is this file ('-': stdin)")
    src.add_argument("--from-literal", metavar="VALUE", help="the value (seen by `ps`: avoid)")
    p.add_argument("--node", action="append", metavar="NODE", help="a target node (repeatable)")
    p.add_argument("--site", action="append", metavar="SITE", help="every node of a site")
    p.add_argument(
        "-l", "--label", action="append", metavar="K=V", help="nodes with all these labels"
    )
    add_as_option(p)
    p.set_defaults(func=cmd_set)
    p = ssub.add_parser("ls", help="secrets: names, versions, target nodes (never values)")
    p.add_argument("-o", "--output", choices=("table", "json"), default="table")
    p.set_defaults(func=cmd_ls)
    p = ssub.add_parser("rm", help="remove a secret (workloads using it go Pending)")
    p.add_argument("name", metavar="NAME")
    add_as_option(p)
    p.set_defaults(func=cmd_rm)
