"""`noderuntime audit`: the node's audit trail (list, follow, verify, export).

    noderuntime audit [--follow] [--since T] [-o json]   newest entries, or since T
    noderuntime audit verify                             exit 1 on a broken chain
    noderuntime audit export --since T                   JSON lines, for a SIEM

T is a Unix time, an ISO 8601 time, or an age such as 90s, 15m, 6h, 2d. ``verify`` reads the
log itself when the node is not running (the usual case after a break-in is found).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import sys
import time
from collections.abc import Callable
from typing import Any

from noderuntime.cli.common import _config_file, _data_dir
from noderuntime.errors import DaemonNotRunningError, InvalidInputError

EXIT_OK = 0
EXIT_BROKEN = 1
EXPORT_PAGE = 2000
_AGE = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_time(text: str, now: float | None = None) -> float:
    """A --since value as a Unix time; InvalidInputError (exit 2) if it is none of the forms."""
    text = text.strip()
    m = _AGE.match(text)
    if m:
        return (now if now is not None else time.time()) - float(m[1]) * _UNIT_S[m[2]]
    try:
        return float(text)
    except ValueError:
        pass
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInputError(
            f"--since {text!r} is not a time: give a Unix time, an ISO 8601 time "
            "(2026-12-03T14:00:00Z) or an age (90s, 15m, 6h, 2d)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()


def _socket(args: argparse.Namespace) -> Any:
    from noderuntime.config.model import NodePaths, load_config

    data_dir = _data_dir(args)
    return NodePaths(data_dir, load_config(data_dir, _config_file(args))).api_socket


async def _call(args: argparse.Namespace, method: str, params: dict[str, Any]) -> Any:
    from noderuntime.api.client import ApiClient

    async with ApiClient(_socket(args)) as client:
        return await client.call(method, params)


def render_entry(e: dict[str, Any]) -> str:
    when = dt.datetime.fromtimestamp(e["ts"], dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
    fields = " ".join(f"{k}={v}" for k, v in sorted(e["fields"].items()) if v is not None)
    return f"{e['seq']:>7}  {when}  {e['kind']:<18} {e['actor']:<26} {fields}".rstrip()


def cmd_audit(args: argparse.Namespace) -> int:
    sub = args.audit_cmd
    if sub == "verify":
        return cmd_verify(args)
    if sub == "export":
        return cmd_export(args)
    since = parse_time(args.since) if args.since else None
    as_json = args.output == "json"
    show: Callable[[dict[str, Any]], None] = (
        (lambda e: print(json.dumps(e, sort_keys=True), flush=True))
        if as_json and args.follow
        else (lambda e: print(render_entry(e), flush=True))
    )

    async def go() -> int:
        params: dict[str, Any] = {"limit": args.limit}
        if since is not None:
            params["since"] = since
        page = await _call(args, "audit.list", params)
        entries = page["entries"]
        if as_json and not args.follow:
            print(json.dumps(entries, indent=2, sort_keys=True))
            return EXIT_OK
        for e in entries:
            show(e)
        if not args.follow:
            return EXIT_OK
        from noderuntime.api.client import ApiClient

        after = entries[-1]["seq"] if entries else page["head"]
        async with ApiClient(_socket(args)) as client:
            async for e in client.stream("audit.follow", {"after": after}):
                show(e)
        return EXIT_OK

    import asyncio  # not at the top: one-shot commands never load it

    return asyncio.run(go())


def cmd_export(args: argparse.Namespace) -> int:
    """Every entry since T as one JSON object per line, oldest first (paged, not all at once)."""
    since = parse_time(args.since)

    async def go() -> int:
        after = 0
        while True:
            page = await _call(
                args, "audit.list", {"since": since, "after": after, "limit": EXPORT_PAGE}
            )
            for e in page["entries"]:
                sys.stdout.write(json.dumps(e, sort_keys=True) + "\n")
            if len(page["entries"]) < EXPORT_PAGE:
                return EXIT_OK
            after = page["entries"][-1]["seq"]

    import asyncio  # not at the top: one-shot commands never load it

    return asyncio.run(go())


def cmd_verify(args: argparse.Namespace) -> int:
    import asyncio  # not at the top: one-shot commands never load it

    try:
        verdict = asyncio.run(_call(args, "audit.verify", {}))
        where = "the running node"
    except DaemonNotRunningError:
        verdict = asyncio.run(_verify_offline(args))
        where = "audit.db (the node is not running)"
    if args.output == "json":
        print(json.dumps(verdict, indent=2, sort_keys=True))
    elif verdict["ok"]:
        anchor = (
            f", from the checkpoint at entry {verdict['anchored_at']} (older entries pruned)"
            if verdict["anchored_at"]
            else ""
        )
        print(
            f"audit chain ok: entries {verdict['first_seq']}-{verdict['last_seq']} "
            f"({verdict['entries']}), {verdict['checkpoints']} signed checkpoints{anchor}; "
            f"checked by {where}"
        )
    else:
        broken = verdict["broken"]
        print(f"audit chain BROKEN at entry {broken['seq']}: {broken['reason']}")
    return EXIT_OK if verdict["ok"] else EXIT_BROKEN


async def _verify_offline(args: argparse.Namespace) -> dict[str, Any]:
    from noderuntime.audit.log import verify_store
    from noderuntime.audit.store import SQLiteAuditStore
    from noderuntime.config.model import NodePaths
    from noderuntime.identity.keys import load_key

    paths = NodePaths(_data_dir(args))
    if not paths.audit_db.exists():
        raise InvalidInputError(f"no audit log at {paths.audit_db}")
    public_key = load_key(paths.identity_file, "node").public_bytes
    async with SQLiteAuditStore(paths.audit_db) as store:
        verdict = await verify_store(store, public_key)
    out = verdict.to_dict()
    out["last_checkpoint"] = None
    return out


def add_parsers(sub: Any) -> None:
    s = sub.add_parser("audit", help="the node's tamper-evident audit trail")
    s.add_argument("-f", "--follow", action="store_true", help="keep printing new entries")
    s.add_argument("--since", help="entries since T (Unix time, ISO 8601, or an age: 6h)")
    s.add_argument("--limit", type=int, default=200, help="at most this many (default 200)")
    s.add_argument("-o", "--output", choices=("table", "json"), default="table")
    asub = s.add_subparsers(dest="audit_cmd", metavar="{verify,export}")
    v = asub.add_parser("verify", help="check the hash chain; exit 1 naming the first bad entry")
    v.add_argument("-o", "--output", choices=("table", "json"), default="table")
    e = asub.add_parser("export", help="entries since T as JSON lines (for a SIEM)")
    e.add_argument("--since", required=True, help="Unix time, ISO 8601, or an age: 6h")
    s.set_defaults(func=cmd_audit)
