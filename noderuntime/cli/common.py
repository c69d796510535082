"""What every command needs: where the node's data dir and config file are, and how to read
the files given to it."""

from __future__ import annotations

import argparse
import base64
import sys
from pathlib import Path
from typing import Any

from noderuntime.config.paths import (
    CONFIG_FILE,
    default_api_socket,
    resolve_config_file,
    resolve_data_dir,
)
from noderuntime.errors import InvalidInputError

# node.yaml is a few hundred bytes; a larger one goes through the full parser and its checks.
_QUICK_CONFIG_MAX_BYTES = 64 * 1024


def _data_dir(args: argparse.Namespace) -> Path:
    return resolve_data_dir(args.data_dir)


def _config_file(args: argparse.Namespace) -> Path | None:
    return resolve_config_file(args.config, _data_dir(args))


def api_socket(args: argparse.Namespace) -> Path:
    """The node's control socket. A config that does not name ``apiSocket`` is not parsed: the
    default socket follows from the data dir, and the node validated its config when it
    started (pydantic alone is half a client command's start-up). Anything unusual takes the
    full parse, with its errors; :func:`check_skipped_config` gives a node that is not running
    the same answer as before."""
    data_dir, config_file = _data_dir(args), _config_file(args)
    quick = _quick_api_socket(data_dir, config_file)
    if quick is not None:
        return quick
    from noderuntime.config.model import NodePaths, load_config

    return NodePaths(data_dir, load_config(data_dir, config_file)).api_socket


def check_skipped_config(args: argparse.Namespace) -> None:
    """Parse the config if :func:`api_socket` did not, raising its ConfigError: when the node
    cannot be reached, a broken config is the better answer (and was, before the quick path)."""
    data_dir, config_file = _data_dir(args), _config_file(args)
    if _quick_api_socket(data_dir, config_file) is not None:
        from noderuntime.config.model import load_config

        load_config(data_dir, config_file)


def _quick_api_socket(data_dir: Path, config_file: Path | None) -> Path | None:
    try:
        with (config_file or data_dir / CONFIG_FILE).open("rb") as fh:
            raw = fh.read(_QUICK_CONFIG_MAX_BYTES + 1)
        if len(raw) > _QUICK_CONFIG_MAX_BYTES:
            return None
        return default_api_socket(raw.decode("utf-8"), data_dir)
    except (OSError, UnicodeDecodeError):
        return None


def api_client(args: argparse.Namespace) -> Any:
    """A client of this node's control API (its socket from the node's config)."""
    from noderuntime.api.client import ApiClient

    return ApiClient(api_socket(args))


def call(
    args: argparse.Namespace,
    method: str,
    params: dict[str, Any] | None = None,
    *,
    attached: bool = False,
) -> Any:
    """One control-API call from a command, on a blocking socket (no asyncio to import);
    ``attached``: the request asks for an attached result (bytes; api/protocol.py)."""
    from noderuntime.api import oneshot

    return oneshot.call(api_socket(args), method, params, attached=attached)


def submit_signed(
    args: argparse.Namespace, ident: Any, credential: bytes | str, prepared: dict[str, Any]
) -> None:
    """Sign an update the node prepared (``prepare: true``) with ``ident``'s key, here, and
    hand it back: the node verifies it like any signed update. The key never leaves this
    process."""
    from noderuntime.crdt.envelope import signing_input

    if prepared.get("data") is None:  # the change was already there: nothing to sign
        return
    data = base64.b64decode(prepared["data"])
    signature = ident.sign(signing_input(prepared["doc"], data, prepared["meta"]))
    call(
        args,
        "updates.submit",
        {
            "doc": prepared["doc"],
            "data": prepared["data"],
            "meta": prepared["meta"],
            "author": ident.name,
            "signature": base64.b64encode(signature).decode(),
            "credential": credential.decode() if isinstance(credential, bytes) else credential,
        },
    )


def decode_input(raw: bytes, source: str) -> str:
    """Bytes a user handed a command, as text; anything but UTF-8 is invalid input (exit 2)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInputError(
            f"{source} is not UTF-8 text (byte {exc.start} is {raw[exc.start]:#04x}); "
            "is it the right file? Save it as UTF-8"
        ) from None


def read_input(filename: str, *, limit: int) -> tuple[str, str]:
    """A file given to a command (``-``: stdin) as text, and the name errors call it by.

    More than ``limit`` bytes (what the command could ever use) is refused without reading on.
    """
    source = "<stdin>" if filename == "-" else filename
    try:
        if filename == "-":
            raw = sys.stdin.buffer.read(limit + 1)
        else:
            with open(filename, "rb") as fh:
                raw = fh.read(limit + 1)
    except OSError as exc:
        raise InvalidInputError(f"cannot read {filename}: {exc.strerror}") from exc
    if len(raw) > limit:
        raise InvalidInputError(
            f"{source} is too large: more than {limit} bytes, the most a node accepts in one "
            "request; nothing was sent (split it, e.g. one file per workload)"
        )
    return decode_input(raw, source), source
