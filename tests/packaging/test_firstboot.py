"""packaging/firstboot.sh: how it reads and checks a provisioning file, without an appliance.

The real first boot (token, `noderuntime init --enroll`, the node starting) runs in
test_binary.py inside a bare Debian root. These cases need no root file system: the script's
paths are pointed into a temporary directory, and invalid files must stop it before it writes
anything.
"""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest

from noderuntime.errors import PermissionDeniedError
from noderuntime.identity.technicians import TechnicianStore, hash_pin

FIRSTBOOT = Path(__file__).resolve().parents[2] / "packaging" / "firstboot.sh"


def firstboot(tmp_path: Path, provision: str | None, nr_bin: Path | None = None) -> tuple[int, str]:
    etc = tmp_path / "etc"
    etc.mkdir(exist_ok=True)
    if provision is not None:
        (etc / "provision.yaml").write_text(provision)
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "NODERUNTIME_CONFIG": str(etc / "node.yaml"),
        "NODERUNTIME_HOME": str(tmp_path / "data"),
        "NODERUNTIME_API_SOCKET": str(tmp_path / "api.sock"),
        "NODERUNTIME_BIN": str(nr_bin or tmp_path / "missing-noderuntime"),
        # No stick on this machine; do not wait for one.
        "NODERUNTIME_USB_WAIT_S": "0",
        "NODERUNTIME_USB_LABEL": "NR-TEST-NO-SUCH-LABEL",
    }
    r = subprocess.run(
        ["bash", str(FIRSTBOOT)], capture_output=True, text=True, env=env, timeout=30
    )
    return r.returncode, r.stdout + r.stderr


@pytest.mark.parametrize(
    ("provision", "message"),
    [
        ("site: lab\n", "nodeId is required"),
        ("nodeId: n1\n", "site is required"),
        ("nodeId: N_1\nsite: lab\n", "nodeId 'N_1'"),
        ("nodeId: n1\nsite: lab\nsite: lab2\n", "'site' is given twice"),
        ("nodeId: n1\nsite: lab\nnodeid: n2\n", "unknown key 'nodeid'"),
        ("nodeId: n1\nsite: lab\nrole: king\n", "role must be node or hub"),
        ("nodeId: n1\nsite: lab\nleafPort: 70000\n", "leafPort must be a port number"),
        ("nodeId: n1\nsite: lab\nenrollToken: gone.token\n", "gone.token: no such file"),
        ("nodeId: n1\n  site: lab\n", "expected 'key: value'"),
    ],
)
def test_invalid_provisioning_is_refused_before_anything_is_written(
    tmp_path: Path, provision: str, message: str
) -> None:
    code, out = firstboot(tmp_path, provision)
    assert code == 1
    assert message in out
    assert not (tmp_path / "etc" / "node.yaml").exists()
    assert not (tmp_path / "data").exists()
    assert (tmp_path / "etc" / "provision.yaml").exists(), "an invalid file must stay for a fix"


def test_no_provisioning_file_fails_and_says_where_to_put_one(tmp_path: Path) -> None:
    code, out = firstboot(tmp_path, None)
    assert code == 1
    assert "no provisioning file" in out and "systemctl start noderuntime-firstboot" in out


def test_quotes_comments_and_token_kept_when_init_cannot_enrol(tmp_path: Path) -> None:
    """A noderuntime without `init --enroll`: init runs without it, the token is kept private."""
    calls = tmp_path / "calls"
    stub = tmp_path / "noderuntime"
    stub.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> {calls}\n'
        'case "$*" in *--help*) echo "usage: noderuntime init --node-id ID";; esac\n'
    )
    stub.chmod(0o755)
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "n1.token").write_text('{"kind": "noderuntime-enrollment-token"}')
    code, out = firstboot(
        tmp_path,
        "# comment\n"
        'nodeId: "n1"\n'
        "site: 'lab'   # trailing comment\n"
        "labels: line=3, zone=a\n"
        "peers: nats-leaf://hub:7422\n"
        "enrollToken: n1.token\n"
        "podmanSocket: none\n",
        nr_bin=stub,
    )
    assert code == 0, out
    init = [c for c in calls.read_text().splitlines() if " init " in c and "--help" not in c]
    assert len(init) == 1
    args = init[0].split()
    assert args[args.index("--node-id") + 1] == "n1"
    assert args[args.index("--site") + 1] == "lab"
    assert "--label" in args and "line=3" in args and "zone=a" in args
    assert args[args.index("--peer") + 1] == "nats-leaf://hub:7422"
    assert "--podman-socket" not in args and "--enroll" not in args
    assert "cannot enrol at init" in out
    kept = tmp_path / "data" / "pending-enrollment.token"
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert not (tmp_path / "etc" / "n1.token").exists()
    assert (tmp_path / "etc" / "provision.yaml.applied").exists()


def _passthrough_cli(tmp_path: Path) -> Path:
    """The real CLI from this virtualenv, except `doctor` (it would configure this host)."""
    real = Path(sys.executable).with_name("noderuntime")
    stub = tmp_path / "noderuntime"
    stub.write_text(f'#!/bin/sh\ncase "$*" in *doctor*) exit 0;; esac\nexec {real} "$@"\n')
    stub.chmod(0o755)
    return stub


def test_technicians_from_the_provisioning_file_can_authenticate(tmp_path: Path) -> None:
    alice, bob = hash_pin("4711"), hash_pin("correct horse")
    code, out = firstboot(
        tmp_path,
        f"nodeId: n1\nsite: lab\npodmanSocket: none\ntechnicians: alice={alice}, bob={bob}\n",
        nr_bin=_passthrough_cli(tmp_path),
    )
    assert code == 0, out
    store = TechnicianStore(tmp_path / "data")
    assert store.names() == ["alice", "bob"]
    assert store.verify("alice", "4711") == "technician:alice"
    assert store.verify("bob", "correct horse") == "technician:bob"
    with pytest.raises(PermissionDeniedError):
        store.verify("alice", "4712")


def test_a_technician_entry_that_is_not_a_pin_hash_stops_init(tmp_path: Path) -> None:
    code, out = firstboot(
        tmp_path,
        "nodeId: n1\nsite: lab\npodmanSocket: none\ntechnicians: alice=4711\n",
        nr_bin=_passthrough_cli(tmp_path),
    )
    assert code == 1
    assert "--technician alice: not a PIN hash" in out
    assert not (tmp_path / "etc" / "node.yaml").exists()
    assert not (tmp_path / "data").exists()
