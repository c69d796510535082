"""What a site with no network needs, on the command line: ``image ls|load``, ``network
[show]|set``, ``join [FILE]``.

The same routes the console uses (``api/routes/images.py``); a load is a write route, so it
runs as root, and is recorded with who ran it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

from noderuntime.cli.common import api_client as _client
from noderuntime.cli.common import call as _call

EXIT_OK = 0
# A progress line at most this often when stderr is not a terminal (a log, CI).
PROGRESS_LINE_EVERY_S = 5.0


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    lines = [headers, *rows]
    return "\n".join(
        "   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in lines
    )


def megabytes(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def render_images(images: list[dict[str, Any]]) -> str:
    if not images:
        return "No images on this node."
    rows = [
        [
            ", ".join(i["names"]) or "<untagged>",
            i["id"] or "-",
            megabytes(i["size_bytes"]) if i["present"] else "MISSING",
            ", ".join(i["workloads"]) or "-",
        ]
        for i in images
    ]
    return _table(["IMAGE", "ID", "SIZE", "USED BY"], rows)


def cmd_image_ls(args: argparse.Namespace) -> int:
    images = _call(args, "images.list")
    if args.output == "json":
        print(json.dumps(images, indent=2, sort_keys=True))
    else:
        print(render_images(images))
    return EXIT_OK


def progress_text(item: dict[str, Any]) -> str:
    total = item.get("total_bytes") or 0
    sent = item.get("sent_bytes") or 0
    pct = f"{100 * sent // total}%" if total else "-"
    return f"loading {pct} ({megabytes(sent)} of {megabytes(total)})"


def cmd_image_load(args: argparse.Namespace) -> int:
    path = os.path.abspath(args.file)  # the node reads it; its working dir is not ours
    tty = sys.stderr.isatty()
    last: dict[str, Any] = {}

    async def go() -> None:
        shown_at = 0.0
        async with _client(args) as client:
            async for item in client.stream("images.load", {"path": path}):
                last.clear()
                last.update(item)
                if item["phase"] == "verifying":
                    print(f"checking {item['path']}...", file=sys.stderr)
                elif item["phase"] == "loading" and (
                    tty or time.monotonic() - shown_at >= PROGRESS_LINE_EVERY_S
                ):
                    shown_at = time.monotonic()
                    end = "\r" if tty else "\n"
                    print(progress_text(item), end=end, file=sys.stderr, flush=True)

    import asyncio  # not at the top: one-shot commands never load it

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(go())
    if tty:
        print(file=sys.stderr)
    if last.get("phase") != "loaded":
        return 1
    if args.output == "json":
        print(json.dumps(last, indent=2, sort_keys=True))
        return EXIT_OK
    print(f"loaded {', '.join(last['names']) or 'an untagged image'} from {path}")
    if last["workloads"]:
        print(f"starting now: {', '.join(last['workloads'])}")
    return EXIT_OK


def render_network(net: dict[str, Any]) -> str:
    rows = [
        [
            lk["name"],
            str(lk["state"]).upper(),
            ", ".join(lk["addresses"]) or "-",
            lk.get("manager") or "-",
            lk.get("mac") or "-",
        ]
        for lk in net["links"]
    ]
    lines = [_table(["LINK", "STATE", "ADDRESSES", "MANAGED BY", "MAC"], rows), ""]
    gw = net.get("gateway")
    lines.append(f"Gateway:  {gw or 'none'}" + (f" (via {net['gateway_link']})" if gw else ""))
    lines.append(f"DNS:      {', '.join(net['dns']) or 'none'}")
    if net.get("why_not"):
        lines.append(f"Setting:  refused here: {net['why_not']}")
    return "\n".join(lines)


def cmd_network_show(args: argparse.Namespace) -> int:
    net = _call(args, "network.get")
    if args.output == "json":
        print(json.dumps(net, indent=2, sort_keys=True))
    else:
        print(render_network(net))
    return EXIT_OK


def cmd_network_set(args: argparse.Namespace) -> int:
    from noderuntime.errors import InvalidInputError

    if args.dhcp == bool(args.address):
        raise InvalidInputError("give either --dhcp or --address CIDR (a static address)")
    params: dict[str, Any] = {"name": args.link, "mode": "dhcp" if args.dhcp else "static"}
    if args.address:
        params |= {"address": args.address, "gateway": args.gateway or "", "dns": args.dns}
    done = _call(args, "network.set", params)
    if args.output == "json":
        print(json.dumps(done, indent=2, sort_keys=True))
    else:
        where = done.get("file") or done.get("connection")
        print(f"network set {done['change']} through {done['manager']} ({where})")
    return EXIT_OK


def render_join(info: dict[str, Any]) -> str:
    if not info["enrolled"]:
        return (
            f"node {info['node']} is not enrolled: it runs on its own.\n"
            f"Its public key (for the operator's `fleet enroll {info['node']} --site "
            f"{info['site']} --public-key KEY`):\n  {info['public_key']}\n"
            "Then install the credential: `noderuntime join FILE`."
        )
    sync = info.get("sync") or {}
    lines = [f"node {info['node']} enrolled in {info.get('fleet_id', '?')}"]
    if info.get("problem"):
        lines.append(f"sync is down: {info['problem']}")
    else:
        lines.append("sync " + ("connected" if sync.get("connected") else "NOT connected"))
    rows = [
        [str(lk.get("peer")), "up" if lk.get("up") else "DOWN", lk.get("error") or "-"]
        for lk in info.get("links") or []
    ]
    if rows:
        lines += ["", _table(["LINK", "STATE", "WHY DOWN"], rows)]
    return "\n".join(lines)


def cmd_join(args: argparse.Namespace) -> int:
    if args.file:
        done = _call(args, "enrolment.import", {"path": os.path.abspath(args.file)})
        if args.output == "json":
            print(json.dumps(done, indent=2, sort_keys=True))
        else:
            print(f"enrolled in {done['fleet_id']}; restart the node to link up")
        return EXIT_OK
    info = _call(args, "enrolment.status")
    if args.output == "json":
        print(json.dumps(info, indent=2, sort_keys=True))
    else:
        print(render_join(info))
    return EXIT_OK


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    s = sub.add_parser("image", help="images on this node; load one from a file (no network)")
    isub = s.add_subparsers(dest="image_cmd", required=True)
    i = isub.add_parser("ls", help="images on this node and the workloads using each")
    i.add_argument("-o", "--output", choices=["text", "json"], default="text")
    i.set_defaults(func=cmd_image_ls)
    i = isub.add_parser(
        "load", help="load a docker or OCI image archive (e.g. from /media/usb) into the node"
    )
    i.add_argument("file", metavar="FILE", help="the archive (`podman save` / `docker save`)")
    i.add_argument("-o", "--output", choices=["text", "json"], default="text")
    i.set_defaults(func=cmd_image_load)
    s = sub.add_parser("network", help="this node's network: see it, or set a link")
    nsub = s.add_subparsers(dest="network_cmd")
    s.add_argument("-o", "--output", choices=["text", "json"], default="text")
    s.set_defaults(func=cmd_network_show)
    n = nsub.add_parser("show", help="links, addresses, gateway, DNS and who manages them")
    n.add_argument("-o", "--output", choices=["text", "json"], default="text")
    n.set_defaults(func=cmd_network_show)
    n = nsub.add_parser(
        "set", help="set a link through systemd-networkd or NetworkManager (refused without)"
    )
    n.add_argument("link", metavar="LINK", help="the interface, e.g. eth0")
    n.add_argument("--dhcp", action="store_true", help="get the address by DHCP")
    n.add_argument("--address", metavar="CIDR", help="a static address, e.g. 192.168.1.20/24")
    n.add_argument("--gateway", metavar="IP", help="the default gateway (with --address)")
    n.add_argument("--dns", metavar="IP", action="append", default=[], help="repeatable")
    n.add_argument("-o", "--output", choices=["text", "json"], default="text")
    n.set_defaults(func=cmd_network_set)
    s = sub.add_parser(
        "join", help="fleet enrolment and why sync is down; join FILE installs a credential"
    )
    s.add_argument("file", metavar="FILE", nargs="?", help="a credential file (e.g. on a stick)")
    s.add_argument("-o", "--output", choices=["text", "json"], default="text")
    s.set_defaults(func=cmd_join)
