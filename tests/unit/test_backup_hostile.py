"""`noderuntime restore` against crafted and damaged archives (issue 9, section 6).

Restore runs as root on archives that travel, so every archive here is refused with an
InvalidBackupError that names what is wrong, and nothing is written anywhere: not the data
dir, not beside it, not where the archive points.
"""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from noderuntime.cli import main as cli
from noderuntime.host.backup import InvalidBackupError, restore

Member = tuple[tarfile.TarInfo, bytes]


@pytest.fixture(scope="module")
def good_members(tmp_path_factory: pytest.TempPathFactory) -> list[Member]:
    """The members of a real backup, to mutate."""
    src = tmp_path_factory.mktemp("src")
    assert cli.main(["--data-dir", str(src), "init", "--node-id", "n1", "--site", "s"]) == 0
    (src / "fleet").mkdir()
    (src / "fleet" / "trust.json").write_text("{}")
    archive = tmp_path_factory.mktemp("arch") / "b.tar.gz"
    assert cli.main(["--data-dir", str(src), "backup", "-o", str(archive)]) == 0
    out = []
    with tarfile.open(archive) as tar:
        for m in tar.getmembers():
            f = tar.extractfile(m)
            out.append((m, f.read() if f else b""))
    return out


def _file(name: str, blob: bytes) -> Member:
    info = tarfile.TarInfo(name)
    info.size = len(blob)
    return info, blob


def _special(name: str, kind: bytes, linkname: str = "") -> Member:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info, b""


def _write(path: Path, members: list[Member]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info, blob in members:
            tar.addfile(info, io.BytesIO(blob) if info.isreg() else None)
    return path


def _manifest(members: list[Member]) -> dict[str, object]:
    return dict(json.loads(members[0][1]))


def _with_manifest(members: list[Member], blob: bytes) -> list[Member]:
    assert members[0][0].name == "noderuntime-backup.json"
    return [_file("noderuntime-backup.json", blob), *members[1:]]


def _patched(**changes: object) -> Callable[[list[Member]], list[Member]]:
    def make(members: list[Member]) -> list[Member]:
        m = _manifest(members)
        for k, v in changes.items():
            if v is _DROP:
                del m[k]
            else:
                m[k] = v
        return _with_manifest(members, json.dumps(m).encode())

    return make


_DROP = object()


def _plus(*extra: Member) -> Callable[[list[Member]], list[Member]]:
    return lambda members: [*members, *extra]


def _without(name: str) -> Callable[[list[Member]], list[Member]]:
    return lambda members: [(i, b) for i, b in members if i.name != name]


def _replace(name: str, blob: bytes) -> Callable[[list[Member]], list[Member]]:
    return lambda members: [(i, b) if i.name != name else _file(name, blob) for i, b in members]


# (mutation, what the error must say)
HOSTILE: dict[str, tuple[Callable[[list[Member]], list[Member]], str]] = {
    "manifest without configFile": (_patched(configFile=_DROP), "configFile"),
    "manifest without nodeId": (_patched(nodeId=_DROP), "nodeId"),
    "manifest format as a string": (_patched(format="1"), "unknown backup format"),
    "manifest format 2": (_patched(format=2), "unknown backup format 2"),
    "manifest nodeId a number": (_patched(nodeId=5), "nodeId"),
    "manifest nodeId not an id": (_patched(nodeId="../etc"), "invalid node id"),
    "manifest createdAt a string": (_patched(createdAt="yesterday"), "createdAt"),
    "manifest storeSchema a bool": (_patched(storeSchema=True), "storeSchema"),
    "manifest configFile a list": (_patched(configFile=["/etc/passwd"]), "configFile"),
    "manifest with an unknown key": (_patched(hook="rm -rf /"), "hook"),
    "manifest not JSON": (lambda ms: _with_manifest(ms, b"{nope"), "not JSON"),
    "manifest not UTF-8": (lambda ms: _with_manifest(ms, b'{"a": "\xff"}'), "not JSON"),
    "manifest a list": (lambda ms: _with_manifest(ms, b"[1]"), "not a JSON object"),
    "manifest nested deeply": (lambda ms: _with_manifest(ms, b"[" * 50_000), "not JSON"),
    "manifest too large": (
        lambda ms: _with_manifest(ms, b" " * 100_000 + b"{}"),
        "more than a backup holds",
    ),
    "no manifest": (_without("noderuntime-backup.json"), "no manifest"),
    "no config": (_without("config/node.yaml"), "no node config"),
    "no identity": (_without("data/identity.key"), "no node identity"),
    "config not UTF-8": (_replace("config/node.yaml", b"nodeId: \xff\n"), "not UTF-8"),
    "config for another node": (
        _replace("config/node.yaml", b"nodeId: n2\nsite: s\n"),
        "for node n2",
    ),
    "config not a node config": (_replace("config/node.yaml", b"[1, 2]"), "mapping"),
    "absolute member": (_plus(_file("/tmp/nr-evil", b"x")), "absolute path"),
    "dot-dot member": (_plus(_file("data/../../escape", b"x")), "'..'"),
    "dot-dot at the top": (_plus(_file("../escape", b"x")), "'..'"),
    "non-canonical member": (_plus(_file("data/./x", b"x")), "not a plain relative path"),
    "symlink member": (
        _plus(_special("data/fleet/link", tarfile.SYMTYPE, "/etc/shadow")),
        "symbolic link",
    ),
    "symlink over the key": (
        lambda ms: [
            *_without("data/identity.key")(ms),
            _special("data/identity.key", tarfile.SYMTYPE, "/etc/shadow"),
        ],
        "symbolic link",
    ),
    "hardlink member": (
        _plus(_special("data/hard", tarfile.LNKTYPE, "/etc/shadow")),
        "hard link",
    ),
    "device member": (_plus(_special("data/sda", tarfile.BLKTYPE)), "a device"),
    "char device member": (_plus(_special("data/null", tarfile.CHRTYPE)), "a device"),
    "fifo member": (_plus(_special("data/pipe", tarfile.FIFOTYPE)), "a fifo"),
    "directory member": (_plus(_special("data/fleet", tarfile.DIRTYPE)), "a directory"),
    "member twice": (
        lambda ms: [*ms, _file("data/identity.key", b"other key")],
        "twice",
    ),
    "member outside config and data": (_plus(_file("etc/cron.d/x", b"x")), "outside"),
    "a WAL beside the store": (_plus(_file("data/state.db-wal", b"x")), "never holds"),
    "the control socket": (_plus(_file("data/api.sock", b"x")), "never holds"),
}


def _tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() if p.is_file() else b"<dir>"
        for p in sorted(root.rglob("*"))
    }


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_crafted_archive_is_refused_and_writes_nothing(
    case: str, good_members: list[Member], tmp_path: Path
) -> None:
    mutate, says = HOSTILE[case]
    archive = _write(tmp_path / "evil.tar.gz", mutate(good_members))
    (tmp_path / "bystander").write_text("untouched")
    before = _tree(tmp_path)
    with pytest.raises(InvalidBackupError, match="cannot restore from") as err:
        restore(archive, tmp_path / "node", tmp_path / "etc" / "node.yaml", force=True)
    assert says in str(err.value)
    assert _tree(tmp_path) == before


DAMAGED: dict[str, Callable[[bytes], bytes]] = {
    "empty file": lambda good: b"",
    "random bytes": lambda good: bytes(range(256)) * 40,
    "a plain tar, not gzip": lambda good: gzip.decompress(good),
    "gzip of something else": lambda good: gzip.compress(b"hello" * 1000),
    "truncated to a tenth": lambda good: good[: len(good) // 10],
    "truncated by half": lambda good: good[: len(good) // 2],
    "truncated header": lambda good: good[:12],
    "a flipped byte": lambda good: good[:200] + bytes([good[200] ^ 0xFF]) + good[201:],
}


@pytest.mark.parametrize("case", sorted(DAMAGED))
def test_a_damaged_archive_gives_a_clear_error(
    case: str, good_members: list[Member], tmp_path: Path
) -> None:
    good = _write(tmp_path / "good.tar.gz", good_members).read_bytes()
    (tmp_path / "good.tar.gz").unlink()
    archive = tmp_path / "damaged.tar.gz"
    archive.write_bytes(DAMAGED[case](good))
    before = _tree(tmp_path)
    with pytest.raises(InvalidBackupError, match="cannot restore from"):
        restore(archive, tmp_path / "node", None, force=True)
    assert _tree(tmp_path) == before


def test_the_config_goes_to_the_node_being_restored_not_where_the_archive_says(
    good_members: list[Member], tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere" / "node.yaml"
    archive = _write(
        tmp_path / "b.tar.gz",
        _patched(configFile=str(elsewhere))(good_members),
    )
    dst = tmp_path / "node"
    assert cli.main(["--data-dir", str(dst), "restore", str(archive)]) == 0
    assert not elsewhere.parent.exists()
    assert b"nodeId: n1" in (dst / "node.yaml").read_bytes()
    assert (dst / "fleet" / "trust.json").read_text() == "{}"
    # An explicit --config is where the node reads it: the config goes there.
    cfg = tmp_path / "etc" / "node.yaml"
    code = cli.main(
        ["--data-dir", str(dst), "--config", str(cfg), "restore", "--force", str(archive)]
    )
    assert code == 0
    assert b"nodeId: n1" in cfg.read_bytes()
    assert not elsewhere.parent.exists()


def test_restore_never_follows_a_symlink_out_of_the_data_dir(
    good_members: list[Member], tmp_path: Path
) -> None:
    dst, outside = tmp_path / "node", tmp_path / "outside"
    dst.mkdir()
    outside.mkdir()
    (dst / "fleet").symlink_to(outside)
    archive = _write(tmp_path / "b.tar.gz", good_members)
    with pytest.raises(Exception, match="not a directory of the node"):
        restore(archive, dst, None, force=True)
    assert list(outside.iterdir()) == []


def test_the_cli_reports_a_hostile_archive_as_invalid_input(
    good_members: list[Member], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    archive = _write(tmp_path / "evil.tar.gz", _patched(configFile=_DROP)(good_members))
    assert cli.main(["--data-dir", str(tmp_path / "node"), "restore", str(archive)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot restore from") and "Traceback" not in err
    assert not (tmp_path / "node").exists()
