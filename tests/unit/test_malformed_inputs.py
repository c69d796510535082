"""Every command that reads a file, fed the malformed corpus: a clear error and exit 2.

The CLI runs in-process through its main(), so an exception that escapes it (a traceback for
the user) fails the test. Files the node parses (`apply` without --dry-run) go through a real
node in tests/integration/test_malformed_apply.py, with `doctor`.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

from noderuntime.cli.main import main
from tests.malformed_corpus import CORPUS, WORKLOAD_HEAD, is_utf8

NOT_UTF8 = sorted(k for k, v in CORPUS.items() if not is_utf8(v))
NOT_UTF8_FIRST_LINE = sorted(k for k, v in CORPUS.items() if not is_utf8(v.split(b"\n")[0]))
PIN_HASH = "scrypt-n14r8p1$" + "0" * 32 + "$" + "0" * 64

# Every command that reads node.yaml, with what else it needs (FILE: a valid workload file).
CONFIG_READERS: list[list[str]] = [
    ["run"],
    ["status"],
    ["get", "workloads"],
    ["get", "nodes"],
    ["describe", "workload", "w"],
    ["peers"],
    ["events"],
    ["history"],
    ["logs", "w"],
    ["apply", "-f", "FILE"],
    ["delete", "workload", "w"],
    ["lock", "w", "image"],
    ["restart", "w"],
    ["stop", "w"],
    ["start", "w"],
    ["override", "set", "w", "image", "x"],
    ["override", "rm", "w", "image"],
    ["technician", "list"],
    ["technician", "rm", "x"],
    ["technician", "add", "x", "--pin-hash", PIN_HASH],
    ["enroll", "--show-public-key"],
    ["backup", "-o", "OUT"],
    ["tui"],
    ["image", "ls"],
    ["image", "load", "FILE"],
    ["network"],
    ["network", "set", "eth0", "--dhcp"],
    ["join"],
]


@pytest.fixture(autouse=True)
def _no_operator(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("NODERUNTIME_AS", "NODERUNTIME_CONFIG", "NODERUNTIME_HOME"):
        monkeypatch.delenv(var, raising=False)


def _refused(
    argv: list[str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    stdin: bytes = b"",
) -> str:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, f"noderuntime {' '.join(argv)} exited {code}: {err}"
    assert err.startswith("error: ") and "Traceback" not in err, err
    return err


@pytest.fixture(scope="module")
def node_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("node")
    assert main(["--data-dir", str(d), "init", "--node-id", "n1", "--site", "s"]) == 0
    return d


def _config_readers_refuse(
    commands: list[list[str]],
    config_blob: bytes,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = tmp_path / "node.yaml"
    config.write_bytes(config_blob)
    workload = tmp_path / "w.yaml"
    workload.write_bytes(WORKLOAD_HEAD + b"spec: {image: x}\n")
    for command in commands:
        args = [
            {"FILE": str(workload), "OUT": str(tmp_path / "b.tar.gz")}.get(a, a) for a in command
        ]
        err = _refused(
            ["--data-dir", str(tmp_path / "d"), "--config", str(config), *args],
            capsys,
            monkeypatch,
        )
        assert str(config) in err, (command, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["node.yaml", "w.yaml"]


# Every command reads node.yaml through load_config; the whole corpus goes through the ones
# that call it themselves, and a few of the worst files through every command.
@pytest.mark.parametrize("case", sorted(CORPUS))
def test_the_corpus_as_node_yaml(
    case: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    direct = [["run"], ["status"], ["technician", "list"], ["enroll", "--show-public-key"]]
    _config_readers_refuse(
        [*direct, ["backup", "-o", "OUT"]], CORPUS[case], tmp_path, capsys, monkeypatch
    )


@pytest.mark.parametrize("case", ["latin-1", "billion laughs", "flow mappings, deep", "empty"])
def test_every_command_refuses_a_malformed_node_yaml(
    case: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _config_readers_refuse(CONFIG_READERS, CORPUS[case], tmp_path, capsys, monkeypatch)


@pytest.mark.parametrize("case", sorted(CORPUS))
def test_apply_dry_run_refuses_a_malformed_file_and_stdin(
    case: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    f = tmp_path / "in.yaml"
    f.write_bytes(CORPUS[case])
    assert str(f) in _refused(["apply", "--dry-run", "-f", str(f)], capsys, monkeypatch)
    assert "<stdin>" in _refused(
        ["apply", "--dry-run", "-f", "-"], capsys, monkeypatch, stdin=CORPUS[case]
    )


@pytest.mark.parametrize("case", NOT_UTF8)
def test_apply_refuses_a_file_that_is_not_utf8_before_calling_the_node(
    case: str,
    node_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No node runs here: the refusal (exit 2, not 3) proves the CLI checked first."""
    f = tmp_path / "in.yaml"
    f.write_bytes(CORPUS[case])
    base = ["--data-dir", str(node_dir), "apply"]
    assert "not UTF-8" in _refused([*base, "-f", str(f)], capsys, monkeypatch)
    assert "not UTF-8" in _refused([*base, "-f", "-"], capsys, monkeypatch, stdin=CORPUS[case])


@pytest.mark.parametrize("case", sorted(CORPUS))
def test_enrolment_files_archives_and_technicians_json(
    case: str,
    node_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    f = tmp_path / "file"
    f.write_bytes(CORPUS[case])
    _refused(["--data-dir", str(node_dir), "enroll", "--credential", str(f)], capsys, monkeypatch)
    fresh = tmp_path / "fresh"
    _refused(
        ["--data-dir", str(fresh), "init", "--node-id", "n2", "--site", "s", "--enroll", str(f)],
        capsys,
        monkeypatch,
    )
    assert not fresh.exists()
    _refused(["--data-dir", str(fresh), "restore", str(f)], capsys, monkeypatch)
    assert not fresh.exists()
    other = tmp_path / "other"
    assert main(["--data-dir", str(other), "init", "--node-id", "n3", "--site", "s"]) == 0
    (other / "technicians.json").write_bytes(CORPUS[case])
    assert "technicians.json" in _refused(
        ["--data-dir", str(other), "technician", "list"], capsys, monkeypatch
    )


@pytest.mark.parametrize("case", NOT_UTF8_FIRST_LINE)
def test_a_pin_on_stdin_that_is_not_utf8(
    case: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    err = _refused(["technician", "hash", "--pin-stdin"], capsys, monkeypatch, stdin=CORPUS[case])
    assert "the PIN on stdin is not UTF-8" in err
