"""End to end: the real `noderuntime tui` command in a real terminal (tmux, TERM=linux, 80x24)."""

from __future__ import annotations

import re
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
        # A crash loop: it writes a line, exits with code 3, is restarted.
        crash = ["sh", "-c", "echo starting; sleep 1; exit 3"]
        node.apply(workload_yaml("crash", command=crash))
        node.wait_phase("web", "Running")
        cmd = f"env TERM=linux {sys.executable} -m noderuntime.cli --data-dir {node.data_dir} tui"
        tmux(sock, "new-session", "-d", "-s", "tui", "-x", "80", "-y", "24", cmd)
        try:

            def screen() -> str:
                return tmux(sock, "capture-pane", "-p", "-t", "tui").stdout

            text = wait_for(
                lambda: (s := screen()) and node.node_id in s and "2 desired" in s and s,
                timeout=20,
                what="overview on screen",
            )
            assert "Podman    connected" in text
            assert "Quit" in text  # key bindings are visible
            assert "Peers and hubs" not in text  # not enrolled: no empty peers box
            seen = [text]
            tmux(sock, "send-keys", "-t", "tui", "2")
            text = wait_for(
                lambda: (s := screen()) and "web" in s and "MESSAGE" in s and s,
                timeout=10,
                what="workloads",
            )
            seen.append(text)
            # Problems first: the crash loop above web (at every point of its loop).
            assert text.index("crash") < text.index("web")
            tmux(sock, "send-keys", "-t", "tui", "l")
            # Each line's time, a divider at a start of the container (real Podman's stamps).
            text = wait_for(
                lambda: (
                    (s := screen())
                    and re.search(r"---- \d\d:\d\d:\d\d container (created|restarted)", s)
                    and re.search(r"\d\d:\d\d:\d\d starting", s)
                    and s
                ),
                timeout=15,
                what="crash loop logs with times and a divider",
            )
            seen.append(text)
            tmux(sock, "send-keys", "-t", "tui", "Escape")
            # Back on the list before the next key (Esc then d at once reads as Alt+d).
            wait_for(lambda: "MESSAGE" in screen(), timeout=10, what="back on the list")
            tmux(sock, "send-keys", "-t", "tui", "d")
            wait_for(lambda: "Effective spec" in screen(), timeout=10, what="detail")
            seen.append(screen())
            # 2 from the detail opens the list, not the detail again.
            tmux(sock, "send-keys", "-t", "tui", "2")
            wait_for(lambda: "MESSAGE" in screen(), timeout=10, what="the list")
            # The Linux console's font: no rounded corners, no thin block glyphs.
            assert not any(set("╭╮╰╯▔▁▊▎") & set(s) for s in seen)
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
