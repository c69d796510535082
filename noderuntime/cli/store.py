"""`noderuntime reset`: end a store hold by taking the store as it is (see crdt/mark.py)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from typing import Any

from noderuntime.cli.common import _config_file, _data_dir
from noderuntime.errors import DaemonNotRunningError, InvalidInputError

EXIT_OK = 0


def _call(args: argparse.Namespace, method: str, params: dict[str, Any] | None = None) -> Any:
    from noderuntime.api.client import ApiClient
    from noderuntime.config.model import NodePaths, load_config

    data_dir = _data_dir(args)
    socket = NodePaths(data_dir, load_config(data_dir, _config_file(args))).api_socket

    async def go() -> Any:
        async with ApiClient(socket) as client:
            return await client.call(method, params)

    return asyncio.run(go())


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
