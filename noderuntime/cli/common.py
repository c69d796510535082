"""What every command needs: where the node's data dir and config file are, and how to read
the files given to it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from noderuntime.config.model import resolve_config_file, resolve_data_dir
from noderuntime.errors import InvalidInputError


def _data_dir(args: argparse.Namespace) -> Path:
    return resolve_data_dir(args.data_dir)


def _config_file(args: argparse.Namespace) -> Path | None:
    return resolve_config_file(args.config, _data_dir(args))


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
