"""The one-file `noderuntime` executable, on this host and on a bare Debian root without Python.

Builds dist/noderuntime with packaging/build.sh (skipped when it is newer than every source) and
an appliance root with packaging/image/build-rootfs.sh (its debootstrapped Debian base is cached
under build/rootfs-cache/, so only the first run pays ~50 s). In that root, entered by chroot:
first boot provisions the node from a provisioning file with a fleet enrolment token (through
`noderuntime init --enroll`), then `noderuntime run` is started exactly as the systemd unit
starts it, against Podman's API socket as Debian's podman.socket provides it, and
`noderuntime status` and `apply` are run as a technician would, with no flags.

The Podman service inside the root runs in a network namespace of its own, so the root's
netavark never touches this host's container networks.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path

import pytest
from appliance import REPO, Appliance

import noderuntime
from noderuntime.identity.technicians import hash_pin
from tests.integration.node_harness import running_node, wait_for, workload_yaml

# Cold (no cached base, no binary): ~35 s PyInstaller + ~50 s debootstrap; then ~10 s.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

BUILD = REPO / "packaging" / "build.sh"
BINARY = REPO / "dist" / "noderuntime"
UNIT = REPO / "packaging" / "systemd" / "noderuntime.service"
MAX_BINARY_BYTES = 60 * 1000 * 1000
NODE_ID = "appl-1"
SITE = "lab"
TECHNICIAN, TECHNICIAN_PIN = "tess", "2468"


def _wait(probe: object, timeout: float, what: str) -> object:
    assert callable(probe)
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


@pytest.fixture(scope="module")
def binary() -> Path:
    if os.geteuid() != 0:
        pytest.skip("building and entering an appliance root needs root")
    r = subprocess.run(
        ["bash", str(BUILD), "--if-stale"], capture_output=True, text=True, timeout=900
    )
    assert r.returncode == 0, f"packaging/build.sh failed:\n{r.stdout[-3000:]}\n{r.stderr[-5000:]}"
    assert BINARY.is_file() and os.access(BINARY, os.X_OK)
    return BINARY


def test_version_names_what_is_bundled(binary: Path) -> None:
    r = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == f"noderuntime {noderuntime.__version__} (single binary)"
    fields = dict(line.split(None, 1) for line in lines[1:])
    venv_nats = Path(sys.executable).parent / "nats-server"
    expected_nats = subprocess.run(
        [str(venv_nats), "--version"], capture_output=True, text=True, timeout=10
    ).stdout.split()[-1]
    assert fields["nats-server"].strip() == expected_nats.lstrip("v")
    assert fields["pycrdt"].strip() == metadata.version("pycrdt")
    assert re.fullmatch(r"3\.\d+\.\d+", fields["python"].strip())
    assert binary.stat().st_size <= MAX_BINARY_BYTES, f"{binary.stat().st_size} bytes"


def _unit_command() -> tuple[dict[str, str], list[str]]:
    """Environment= and ExecStart= of the systemd unit: the test starts the node the same way."""
    env: dict[str, str] = {}
    exec_start: list[str] = []
    for line in UNIT.read_text().splitlines():
        if line.startswith("Environment="):
            key, _, value = line.removeprefix("Environment=").partition("=")
            env[key] = value
        elif line.startswith("ExecStart="):
            exec_start = line.removeprefix("ExecStart=").split()
    assert exec_start, f"no ExecStart= in {UNIT}"
    return env, exec_start


@pytest.fixture
def appliance(binary: Path, busybox_image: str) -> Iterator[tuple[Appliance, Path]]:
    """A freshly built appliance root with a provisioning file and enrolment token on it."""
    work = Path(tempfile.mkdtemp(prefix="nr-appliance-", dir="/var/tmp"))
    app = Appliance(work / "root")
    try:
        fleet, prov = work / "fleet", work / "prov"
        prov.mkdir()
        token = prov / f"{NODE_ID}.token"
        cli = [sys.executable, "-m", "noderuntime.cli", "fleet"]
        for args in (
            ["init", "--dir", str(fleet)],
            ["enroll", NODE_ID, "--site", SITE, "--dir", str(fleet), "-o", str(token)],
            ["add-operator", "tester", "--dir", str(fleet), "-o", str(work / "operator")],
        ):
            r = subprocess.run([*cli, *args], capture_output=True, text=True, timeout=60)
            assert r.returncode == 0, f"fleet {args[0]}: {r.stderr}"
        provision = prov / "provision.yaml"
        provision.write_text(
            "# made by tests/packaging/test_binary.py\n"
            f"nodeId: {NODE_ID}\n"
            f"site: {SITE}\n"
            "labels: line=3, zone=a\n"
            f"enrollToken: {NODE_ID}.token   # relative to this file\n"
            "natsPort: 0\n"
            f"technicians: {TECHNICIAN}={hash_pin(TECHNICIAN_PIN)}\n"
        )
        app.build(binary, provision)
        # An operator's profile: workload changes on an enrolled node are signed by one.
        shutil.copytree(work / "operator", app.path("/root/operator"))
        app.mount()
        yield app, work
    finally:
        try:
            app.cleanup()
        finally:
            if not app.root.exists():
                shutil.rmtree(work, ignore_errors=True)


def test_runs_on_bare_debian_root(appliance: tuple[Appliance, Path], busybox_image: str) -> None:
    app, work = appliance

    # --- the root is bare: no Python, no virtualenv ----------------------------------------
    assert not list(app.path("/usr/bin").glob("python*")), "the appliance root has a Python"
    assert not list(app.path("/usr/lib").glob("python3*"))
    assert app.run("sh", "-c", "command -v python3 python", check=False).returncode != 0
    assert app.path("/usr/bin/podman").exists()

    # --- the units are valid for this systemd ----------------------------------------------
    r = app.run(
        "systemd-analyze",
        "verify",
        "/etc/systemd/system/noderuntime.service",
        "/etc/systemd/system/noderuntime-firstboot.service",
        check=False,
    )
    ours = [ln for ln in (r.stdout + r.stderr).splitlines() if "noderuntime" in ln]
    assert r.returncode == 0 and not ours, r.stdout + r.stderr

    # --- first boot: provisioning file + token -> `noderuntime init --enroll` --------------
    r = app.run("/usr/local/lib/noderuntime/firstboot.sh", timeout=120)
    assert f"node {NODE_ID} (site {SITE}) initialised" in r.stdout, r.stdout + r.stderr
    config = app.path("/etc/noderuntime/node.yaml")
    assert "apiSocket: /run/noderuntime/api.sock" in config.read_text()
    key = app.path("/var/lib/noderuntime/identity.key")
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert not app.path(f"/etc/noderuntime/{NODE_ID}.token").exists(), "token not deleted"
    assert not app.path("/etc/noderuntime/provision.yaml").exists()
    assert app.path("/etc/noderuntime/provision.yaml.applied").exists()
    techs = app.path("/var/lib/noderuntime/technicians.json")
    assert stat.S_IMODE(techs.stat().st_mode) == 0o600
    assert app.run("noderuntime", "technician", "list").stdout.split() == [TECHNICIAN]
    assert TECHNICIAN_PIN not in techs.read_text()

    # --- Podman's API socket, as podman.socket provides it, in its own network namespace --
    image_tar = app.path("/var/tmp/busybox.tar")
    subprocess.run(
        ["podman", "save", "-q", "-o", str(image_tar), busybox_image], check=True, timeout=120
    )
    app.run("podman", "load", "-q", "-i", "/var/tmp/busybox.tar", timeout=120)
    image_tar.unlink()
    app.path("/run/podman").mkdir(parents=True, exist_ok=True)
    podman_svc = app.start(
        "podman",
        "system",
        "service",
        "--time=0",
        "unix:///run/podman/podman.sock",
        log=work / "podman-service.log",
        own_netns=True,
    )
    _wait(lambda: app.path("/run/podman/podman.sock").exists(), 30, "Podman's API socket")

    # --- `noderuntime run`, started the way noderuntime.service starts it ---------------------
    env, exec_start = _unit_command()
    node_log = work / "node.log"
    node = app.start(*exec_start, env=env, log=node_log)

    def node_log_tail() -> str:
        return node_log.read_text(errors="replace")[-5000:]

    def ready() -> dict[str, object] | None:
        assert node.poll() is None, f"node exited {node.returncode}:\n{node_log_tail()}"
        # A technician's shell: no --config/--data-dir, no environment; /etc is found.
        r = app.run("noderuntime", "status", "-o", "json", check=False, timeout=30)
        if r.returncode != 0:
            return None
        status: dict[str, object] = json.loads(r.stdout)
        podman = status["podman"]
        assert isinstance(podman, dict)
        return status if podman["connected"] else None

    try:
        status = _wait(ready, 90, "`noderuntime status` with Podman connected")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- node log ---\n{node_log_tail()}") from None
    assert isinstance(status, dict)
    assert status["node"]["id"] == NODE_ID
    assert status["node"]["data_dir"] == "/var/lib/noderuntime"
    assert status["sync"]["enabled"] is True, status["sync"]

    # The bundled nats-server runs, unpacked from the binary (enrolled nodes sync over it).
    def nats_running() -> bool:
        for pid in app._pids_inside():
            try:
                if os.readlink(f"/proc/{pid}/exe").endswith("/bin/nats-server"):
                    return True
            except OSError:
                continue
        return False

    _wait(nats_running, 30, "the bundled nats-server")

    human = app.run("noderuntime", "status").stdout
    assert f"Node:       {NODE_ID} (site {SITE}" in human and "connected" in human

    # --- a workload runs through the appliance's Podman ----------------------------------------
    spec = (
        "apiVersion: noderuntime/v1\nkind: Workload\nmetadata: {name: hello}\n"
        f'spec:\n  image: {busybox_image}\n  command: ["sleep", "3600"]\n'
    )
    app.run("noderuntime", "--as", "/root/operator", "apply", "-f", "-", input=spec)

    def running() -> bool:
        r = app.run("noderuntime", "get", "workloads", "-o", "json", check=False)
        return r.returncode == 0 and any(
            w["name"] == "hello" and w["phase"] == "Running" for w in json.loads(r.stdout)
        )

    try:
        _wait(running, 90, "workload hello Running")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- node log ---\n{node_log_tail()}") from None

    # --- a clean stop ---------------------------------------------------------------------------
    node.send_signal(signal.SIGTERM)
    assert node.wait(30) == 0, node_log_tail()
    app.run("podman", "rm", "-a", "-f", "-t", "0", netns_of=podman_svc.pid, timeout=60)


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_tui_from_the_binary_in_a_linux_console(binary: Path, busybox_image: str) -> None:
    """The frozen TUI: stylesheets and Textual's lazily imported widgets are in the binary."""

    def tmux(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["tmux", "-L", sock, *args], capture_output=True, text=True, check=check, timeout=10
        )

    def screen() -> str:
        return tmux("capture-pane", "-p", "-t", "tui").stdout

    sock = f"nrbin-{os.getpid()}"
    with running_node() as node:
        node.apply(workload_yaml("web", command=["sh", "-c", "echo hello-from-web; sleep 3600"]))
        node.wait_phase("web", "Running")
        cmd = f"env TERM=linux {binary} --data-dir {node.data_dir} tui"
        tmux("new-session", "-d", "-s", "tui", "-x", "80", "-y", "24", cmd)
        try:
            wait_for(
                lambda: node.node_id in screen() and "1 desired" in screen(),
                timeout=30,
                what="overview from the binary",
            )

            def web_row(text: str) -> bool:
                # The workloads view's own header and its row: the overview says "Running" too,
                # and a key sent before the table holds the row is a key for nothing.
                rows = text.splitlines()
                return "RESTARTS" in text and any("web" in r and "Running" in r for r in rows)

            steps: tuple[tuple[str, str, Callable[[str], bool]], ...] = (
                ("2", "the workloads view with web Running", web_row),
                ("l", "'hello-from-web' on screen", lambda text: "hello-from-web" in text),
                ("?", "'Views' on screen", lambda text: "Views" in text),
            )
            for key, what, shown in steps:
                tmux("send-keys", "-t", "tui", key)
                wait_for(lambda shown=shown: shown(screen()), timeout=15, what=what)  # type: ignore[misc]
            assert "Traceback" not in screen()
            tmux("send-keys", "-t", "tui", "Escape")
            wait_for(lambda: "Views" not in screen(), timeout=15, what="help closed")
            tmux("send-keys", "-t", "tui", "q")
            try:
                wait_for(
                    lambda: tmux("has-session", "-t", "tui", check=False).returncode != 0,
                    timeout=15,
                    what="the TUI to exit on q",
                )
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n{screen()}") from None
        finally:
            tmux("kill-server", check=False)
