"""`noderuntime backup` and `restore`: the command-line side of :mod:`noderuntime.host.backup`."""

from __future__ import annotations

import argparse
from pathlib import Path

from noderuntime.cli.common import _config_file, _data_dir
from noderuntime.config.paths import CONFIG_FILE, DEFAULT_CONFIG_FILE, DEFAULT_DATA_DIR


def cmd_backup(args: argparse.Namespace) -> int:
    # Imported here, not at the top: every command builds this parser (start-up time).
    from noderuntime.host.backup import BackupError, backup

    data_dir = _data_dir(args)
    config_file = _config_file(args) or data_dir / CONFIG_FILE
    out = Path(args.output).expanduser().absolute()
    if out.exists() and not args.force:
        raise BackupError(f"{out} exists; choose another file or add --force")
    m = backup(data_dir, config_file, out)
    print(
        f"backed up node {m['nodeId']} (site {m['site']}, store schema {m['storeSchema']}) "
        f"to {out}; it holds the node's private key: keep it like the key"
    )
    return 0


def restore_config_path(args: argparse.Namespace, data_dir: Path) -> Path:
    """Where the node being restored reads its config, decided here and never by the archive:
    ``--config`` / ``$NODERUNTIME_CONFIG``; else, for the default data dir of an installed
    appliance (``/etc/noderuntime`` exists), ``/etc/noderuntime/node.yaml``, which is what its
    service reads; else ``<data-dir>/node.yaml``."""
    explicit = _config_file(args)
    if explicit is not None:
        return explicit
    if (
        data_dir == DEFAULT_DATA_DIR
        and not (data_dir / CONFIG_FILE).exists()
        and DEFAULT_CONFIG_FILE.parent.is_dir()
    ):
        return DEFAULT_CONFIG_FILE
    return data_dir / CONFIG_FILE


def cmd_restore(args: argparse.Namespace) -> int:
    from noderuntime.host.backup import restore

    data_dir = _data_dir(args)
    node = restore(
        Path(args.archive).expanduser().absolute(),
        data_dir,
        restore_config_path(args, data_dir),
        force=args.force,
    )
    print(f"restored node {node} into {data_dir}; start it with `systemctl start noderuntime`")
    return 0


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    s = sub.add_parser("backup", help="write a consistent backup of this node's data")
    s.add_argument("-o", "--output", required=True, help="archive to write (.tar.gz)")
    s.add_argument("--force", action="store_true", help="overwrite the archive if it exists")
    s.set_defaults(func=cmd_backup)
    s = sub.add_parser("restore", help="restore a backup into the data dir (node stopped)")
    s.add_argument("archive", help="a file written by `noderuntime backup`")
    s.add_argument("--force", action="store_true", help="replace the node that is there")
    s.set_defaults(func=cmd_restore)
