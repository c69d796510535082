"""End to end: the real `noderuntime tui` command in a real terminal (tmux, TERM=linux, 80x24)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "integration"))

from node_harness import running_node, wait_for, workload_yaml

pytestmark = [pytest.mark.podman, pytest.mark.slow, pytest.mark.usefixtures("busybox_image")]


def tmux(sock: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["tmux", "-L", sock, *args], capture_output=True, text=True, check=check, timeout=10
    )


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_real_command_in_a_linux_console() -> None:
    sock = f"nrtui-{uuid.uuid4().hex[:8]}"
    with running_node() as node:
        node.apply(workload_yaml("web"))
        node.wait_phase("web", "Running")
        cmd = f"env TERM=linux {sys.executable} -m noderuntime.cli --data-dir {node.data_dir} tui"
        tmux(sock, "new-session", "-d", "-s", "tui", "-x", "80", "-y", "24", cmd)
        try:

            def screen() -> str:
                return tmux(sock, "capture-pane", "-p", "-t", "tui").stdout

            text = wait_for(
                lambda: (s := screen()) and node.node_id in s and "1 desired" in s and s,
                timeout=20,
                what="overview on screen",
            )
            assert "Podman    connected" in text
            assert "Quit" in text  # key bindings are visible
            tmux(sock, "send-keys", "-t", "tui", "2")
            wait_for(
                lambda: "web" in screen() and "Running" in screen(), timeout=10, what="workloads"
            )
            tmux(sock, "send-keys", "-t", "tui", "d")
            wait_for(lambda: "Effective spec" in screen(), timeout=10, what="detail")
            tmux(sock, "send-keys", "-t", "tui", "Escape")
            tmux(sock, "send-keys", "-t", "tui", "?")
            wait_for(lambda: "Views" in screen(), timeout=10, what="help")
            tmux(sock, "send-keys", "-t", "tui", "Escape")
            wait_for(lambda: "Views" not in screen(), timeout=10, what="help closed")
            tmux(sock, "send-keys", "-t", "tui", "q")
            wait_for(
                lambda: tmux(sock, "has-session", "-t", "tui", check=False).returncode != 0,
                timeout=10,
                what="the TUI to exit on q",
            )
        finally:
            tmux(sock, "kill-server", check=False)
