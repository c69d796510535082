"""TUI: time from launch to the first complete screen (target <= 1 s).

Two figures:
- the real command (`noderuntime tui`) in tmux (80x24, TERM=linux) against a real node: from
  spawning the process until the pane shows the complete overview (node id, workload counts,
  host figures), polled every 10 ms with `tmux capture-pane`;
- in process (Textual headless): from starting the app until the overview holds data.

    .venv/bin/python bench/tui_startup.py [runs=5]
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid

from _common import ROOT, NodeProcess, summary, workload_yaml

sys.path.insert(0, str(ROOT))

from noderuntime.api.client import ApiClient
from tui.app import NodeRuntimeApp


def tmux(sock: str, *args: str) -> str:
    return subprocess.run(
        ["tmux", "-L", sock, *args], capture_output=True, text=True, timeout=10
    ).stdout


def real_command(node: NodeProcess) -> float:
    sock = f"nrbench-{uuid.uuid4().hex[:8]}"
    cmd = f"env TERM=linux {sys.executable} -m noderuntime.cli --data-dir {node.data_dir} tui"
    started = time.perf_counter()
    tmux(sock, "new-session", "-d", "-s", "b", "-x", "80", "-y", "24", cmd)
    try:
        while time.perf_counter() - started < 20:
            screen = tmux(sock, "capture-pane", "-p", "-t", "b")
            if node.node_id in screen and "desired" in screen and "Disk" in screen:
                return time.perf_counter() - started
            time.sleep(0.01)
        raise RuntimeError("the overview did not appear within 20 s")
    finally:
        tmux(sock, "kill-server")


async def in_process(node: NodeProcess) -> float:
    started = time.perf_counter()
    app = NodeRuntimeApp(ApiClient(node.data_dir / "api.sock"))
    async with app.run_test(size=(80, 24)) as pilot:
        while not app.screen.has_class("-loaded"):
            await pilot.pause(0.005)
        return time.perf_counter() - started


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    node = NodeProcess()
    try:
        node.init()
        node.start()
        for i in range(3):
            node.apply(workload_yaml(f"w{i}"))
        node.wait_phase("w2", "Running")
        real = [real_command(node) for _ in range(runs)]
        inproc = [asyncio.run(in_process(node)) for _ in range(runs)]
        print(f"real command in tmux, launch -> complete overview: {summary(real)}")
        print(f"in process (headless), start -> overview with data: {summary(inproc)}")
    finally:
        node.cleanup()


if __name__ == "__main__":
    main()
