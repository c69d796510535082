"""What every command needs: where the node's data dir and config file are."""

from __future__ import annotations

import argparse
from pathlib import Path

from noderuntime.config.model import resolve_config_file, resolve_data_dir


def _data_dir(args: argparse.Namespace) -> Path:
    return resolve_data_dir(args.data_dir)


def _config_file(args: argparse.Namespace) -> Path | None:
    return resolve_config_file(args.config, _data_dir(args))
