"""The command line finds the control socket without parsing node.yaml unless it names one."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from noderuntime.cli.common import api_socket, check_skipped_config
from noderuntime.config.paths import default_api_socket
from noderuntime.errors import ConfigError


def _args(data_dir: Path, config: Path | None = None) -> argparse.Namespace:
    return argparse.Namespace(data_dir=str(data_dir), config=str(config) if config else None)


def test_the_default_socket_needs_no_parse_and_a_named_one_is_read(tmp_path: Path) -> None:
    config = tmp_path / "node.yaml"
    config.write_text("nodeId: n1\nsite: s\n")
    assert api_socket(_args(tmp_path)) == tmp_path / "api.sock"
    config.write_text("nodeId: n1\nsite: s\napiSocket: /run/x/api.sock\n")
    assert api_socket(_args(tmp_path)) == Path("/run/x/api.sock")


def test_text_that_could_spell_the_key_takes_the_full_parse() -> None:
    assert default_api_socket('"\\x61piSocket": /x\n', Path("/d")) is None
    assert default_api_socket("apiSocket: /x\n", Path("/d")) is None
    assert default_api_socket("nodeId: n1\n", Path("/d")) == Path("/d/api.sock")


def test_a_broken_config_is_still_reported_when_the_node_is_not_running(tmp_path: Path) -> None:
    (tmp_path / "node.yaml").write_text("just a scalar\n")
    assert api_socket(_args(tmp_path)) == tmp_path / "api.sock"  # quick: not parsed
    with pytest.raises(ConfigError, match="mapping"):
        check_skipped_config(_args(tmp_path))
