"""The start-up reserve (host/reserve.py): given back only on a full disk, made only with room."""

from __future__ import annotations

from pathlib import Path

import pytest

from noderuntime.host import reserve
from noderuntime.host.reserve import RESERVE_BYTES, RESERVE_FILE, keep_reserve, release_if_full


def test_made_allocated_when_there_is_room_and_kept_while_the_disk_has_space(
    tmp_path: Path,
) -> None:
    assert keep_reserve(tmp_path)
    path = tmp_path / RESERVE_FILE
    assert path.stat().st_size == RESERVE_BYTES
    assert path.stat().st_blocks * 512 >= RESERVE_BYTES  # real blocks, not a sparse file
    assert path.stat().st_mode & 0o777 == 0o600
    assert release_if_full(tmp_path) is None
    assert path.exists()


def test_released_on_a_full_disk_and_not_made_again_until_there_is_room(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert keep_reserve(tmp_path)
    monkeypatch.setattr(reserve, "free_bytes", lambda _p: 4096)
    said = release_if_full(tmp_path)
    assert said is not None and "released the node's 8 MiB reserve" in said
    assert str(tmp_path) in said
    assert not (tmp_path / RESERVE_FILE).exists()
    assert release_if_full(tmp_path) is None  # nothing left to give
    assert not keep_reserve(tmp_path)
    assert not (tmp_path / (RESERVE_FILE + ".tmp")).exists()
    monkeypatch.setattr(reserve, "free_bytes", lambda _p: 1 << 40)
    assert keep_reserve(tmp_path)
