"""`noderuntime reset` and `resync`: end a store hold (see crdt/mark.py, sync/resync.py).

``reset --i-mean-it`` takes the store as it is (destructive: containers it does not name go).
``resync`` asks the node's peers for its documents now and waits until the hold lifts by
itself (a hub gave them all back) or ``--timeout`` passes; it changes nothing by itself.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

from noderuntime.cli.common import _data_dir
from noderuntime.cli.common import call as _call
from noderuntime.errors import DaemonNotRunningError, InvalidInputError

EXIT_OK = 0
EXIT_ERROR = 1
RESYNC_POLL_S = 0.5
RESYNC_ASK_AGAIN_S = 10.0


def cmd_reset(args: argparse.Namespace) -> int:
    if not args.i_mean_it:
        raise InvalidInputError(
            "reset takes the store as it is now: every container of this node that the store "
            "does not name is stopped and removed. If that is what you want, add --i-mean-it; "
            "otherwise restore a backup or let the node resync from a hub"
        )
    try:
        out = _call(args, "store.reset", {"confirm": True})
    except DaemonNotRunningError:
        return _reset_offline(args)
    if args.output == "json":
        print(json.dumps(out, indent=2))
    elif out["result"] == "reset":
        print(
            f"store hold ended ({out['hold']['reason']}); the node now reconciles from the "
            "store as it is"
        )
    else:
        print("the store is not held: nothing to reset")
    return EXIT_OK


def _reset_offline(args: argparse.Namespace) -> int:
    from noderuntime.crdt.mark import MARK_FILE, accept_store
    from noderuntime.node.daemon import acquire_node_lock

    data_dir = _data_dir(args)
    fd = acquire_node_lock(data_dir)  # no node may start meanwhile
    try:
        accept_store(data_dir / MARK_FILE, "reset while the node was stopped")
    finally:
        os.close(fd)
    if args.output == "json":
        print(json.dumps({"result": "reset_at_next_start", "hold": None}, indent=2))
    else:
        print("the node is not running: it will take the store as it is when it starts")
    return EXIT_OK


def cmd_resync(args: argparse.Namespace) -> int:
    out = _call(args, "store.resync")
    if out["result"] == "not_held":
        ended = f" (its last hold ended: {out['ended']})" if out.get("ended") else ""
        print(f"the store is not held{ended}: nothing to resync (sync runs anyway)")
        return EXIT_OK
    deadline = time.monotonic() + args.timeout
    ask_again = time.monotonic() + RESYNC_ASK_AGAIN_S
    hold: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        hold = _call(args, "node.status")["store"]["hold"]
        if hold is None:
            print("the documents are back from a peer; the hold is lifted")
            return EXIT_OK
        time.sleep(RESYNC_POLL_S)
        if time.monotonic() >= ask_again:  # peers may have come up meanwhile
            ask_again = time.monotonic() + RESYNC_ASK_AGAIN_S
            _call(args, "store.resync")
    progress = (hold or {}).get("resync") or {}
    back = progress.get("back_from") or {}
    got = "; ".join(f"{peer}: {', '.join(docs)}" for peer, docs in back.items()) or "nothing"
    print(
        f"still held after {args.timeout:g}s: no single peer gave back all of "
        f"{', '.join(progress.get('docs') or [])} (so far: {got}). The node keeps asking; "
        "see `noderuntime peers`, or decide with `restore` or `reset --i-mean-it`"
    )
    return EXIT_ERROR


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    s = sub.add_parser(
        "reset",
        help="end a store hold: take the store as it is (removes containers it does not name)",
    )
    s.add_argument(
        "--i-mean-it",
        action="store_true",
        help="required: containers of this node the store does not name are removed",
    )
    s.add_argument("-o", "--output", choices=["text", "json"], default="text")
    s.set_defaults(func=cmd_reset)
    s = sub.add_parser(
        "resync",
        help="a held node: ask peers for its documents now, and wait until the hold lifts",
    )
    s.add_argument("--timeout", type=float, default=60.0, help="seconds to wait (default 60)")
    s.set_defaults(func=cmd_resync)
