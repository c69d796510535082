"""Where a node's data dir, config file and control socket are, without parsing the config.

Every client command needs only these, and :mod:`noderuntime.config.model` costs a pydantic
import (~0.25 s of a ~0.5 s start-up, bench/fleet_view.py): the command-line path imports this
module, and the model only where a command reads the whole config.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_DATA_DIR = Path("/var/lib/noderuntime")
# The appliance layout (packaging/, docs/operations.md): config in /etc, data in /var/lib.
DEFAULT_CONFIG_FILE = Path("/etc/noderuntime/node.yaml")
CONFIG_FILE = "node.yaml"
API_SOCKET_FILE = "api.sock"
# The only key the socket path depends on (NodeConfig.api_socket's alias).
API_SOCKET_KEY = "apiSocket"


def resolve_data_dir(cli_value: str | os.PathLike[str] | None) -> Path:
    if cli_value:
        return Path(cli_value).expanduser().absolute()
    env = os.environ.get("NODERUNTIME_HOME")
    if env:
        return Path(env).expanduser().absolute()
    return DEFAULT_DATA_DIR


def resolve_config_file(cli_value: str | os.PathLike[str] | None, data_dir: Path) -> Path | None:
    """``--config``, else ``$NODERUNTIME_CONFIG``, else None (meaning ``<data_dir>/node.yaml``).

    One exception keeps the installed layout usable without flags: for the default data dir
    with no ``node.yaml`` of its own, ``/etc/noderuntime/node.yaml`` is the config if it exists.
    """
    value = cli_value or os.environ.get("NODERUNTIME_CONFIG")
    if value:
        return Path(value).expanduser().absolute()
    if (
        data_dir == DEFAULT_DATA_DIR
        and not (data_dir / CONFIG_FILE).exists()
        and DEFAULT_CONFIG_FILE.exists()
    ):
        return DEFAULT_CONFIG_FILE
    return None


def default_api_socket(text: str, data_dir: Path) -> Path | None:
    """The control socket for a config whose text never names ``apiSocket``: the data dir's.

    None when the text may set it (the key, or a backslash escape that could spell it in a
    quoted key): the caller then parses the whole config. Reading the text, not the YAML,
    keeps YAML and pydantic off the path of every command on a node with the default socket.
    """
    if API_SOCKET_KEY in text or "\\" in text:
        return None
    return data_dir / API_SOCKET_FILE
