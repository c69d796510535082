"""Run real `noderuntime run` processes for integration tests, driven through the real CLI."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

CLI = [sys.executable, "-m", "noderuntime.cli"]


def wait_for(
    probe: Callable[[], T | None],
    *,
    timeout: float = 30.0,
    interval: float = 0.1,
    what: str = "",
    raises: type[Exception] | None = None,
) -> T:
    """Poll ``probe`` until it returns something truthy; fail with ``what`` on timeout.
    ``raises``: an exception the probe raises to say waiting longer cannot help."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = probe()
        except Exception as exc:  # the thing may not be up yet
            if raises is not None and isinstance(exc, raises):
                raise
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or probe}: last={last!r}")


def podman(*args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["podman", *args], capture_output=True, text=True, check=check, timeout=timeout
    )


class NodeProcess:
    """One node: its own data dir, node id and supervised `podman system service`."""

    def __init__(
        self,
        *,
        node_id: str | None = None,
        site: str = "test",
        labels: dict[str, str] | None = None,
        extra_config: dict[str, Any] | None = None,
        data_dir: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.node_id = node_id or f"t{uuid.uuid4().hex[:8]}"
        self.site = site
        self.labels = labels or {}
        self.extra_config = extra_config or {
            "reconcileIntervalSeconds": 5,
            "crashBackoffInitialSeconds": 0.5,
            "crashBackoffMaxSeconds": 8,
        }
        # Unix socket paths must stay short: no pytest tmp_path here.
        self.data_dir = data_dir or Path(tempfile.mkdtemp(prefix="nr-", dir="/tmp"))
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}.log"
        # Extra environment for `run`; its own `podman system service` inherits it too.
        self.env = env or {}

    # --- lifecycle ---------------------------------------------------------------------------

    def init(self) -> None:
        args = ["init", "--node-id", self.node_id, "--site", self.site]
        for k, v in self.labels.items():
            args += ["--label", f"{k}={v}"]
        self.cli(*args, check=True)
        if self.extra_config:
            import yaml

            cfg_path = self.data_dir / "node.yaml"
            cfg = yaml.safe_load(cfg_path.read_text())
            cfg.update(self.extra_config)
            cfg_path.write_text(yaml.safe_dump(cfg))

    def start(self, *, wait: bool = True) -> None:
        assert self.proc is None or self.proc.poll() is not None
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            [*CLI, "--data-dir", str(self.data_dir), "run", "--log-level", "debug"],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **self.env},
        )
        log.close()
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout: float = 60) -> None:
        def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"node exited with {self.proc.returncode}:\n{self.log()}")
            return bool(self.status()["podman"]["connected"])

        try:
            wait_for(ready, timeout=timeout, what="node ready with Podman connected")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- node log ---\n{self.log()[-5000:]}") from None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError(f"node did not stop within {timeout}s on signal {sig}") from None

    def kill9(self) -> None:
        self.stop(signal.SIGKILL)

    def cleanup(self) -> None:
        with contextlib.suppress(Exception):
            self.stop()
        podman(
            "rm",
            "-f",
            "-t",
            "0",
            "--filter",
            f"label=io.noderuntime.node={self.node_id}",
            check=False,
        )
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    # --- driving it --------------------------------------------------------------------------

    def cli(
        self, *args: str, check: bool = False, input: str | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(
            [*CLI, "--data-dir", str(self.data_dir), *args],
            capture_output=True,
            text=True,
            input=input,
            timeout=timeout,
        )
        if check and r.returncode != 0:
            raise AssertionError(
                f"noderuntime {' '.join(args)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
            )
        return r

    def apply(self, yaml_text: str) -> subprocess.CompletedProcess[str]:
        return self.cli("apply", "-f", "-", input=yaml_text, check=True)

    def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """One control-API call from this process, its answer as the CLI's ``-o json`` has it.

        Tests poll status and workloads every 0.1 s: a CLI process per poll (~0.4 s of CPU for
        Python's start-up) kept a core busy on these 2-core machines and slowed the very daemons
        being waited for. The CLI's own output is covered by the tests that run ``cli(...)``.
        """
        from noderuntime.api.client import ApiClient

        async def go() -> Any:
            async with ApiClient(self.data_dir / "api.sock") as client:
                return await client.call(method, params)

        try:
            asyncio.get_running_loop()
        except RuntimeError:  # the usual case: a plain test, no loop in this thread
            answer = asyncio.run(go())
        else:  # called from an async test (the TUI's): block it, as the CLI process did
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                answer = pool.submit(asyncio.run, go()).result()
        return json.loads(json.dumps(answer))

    def workloads(self) -> dict[str, dict[str, Any]]:
        return {w["name"]: w for w in self.call("workloads.list")}

    def status(self) -> dict[str, Any]:
        return dict(self.call("node.status"))

    def wait_phase(
        self, name: str, phase: str, timeout: float = 60, **match: Any
    ) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            w = self.workloads().get(name)
            if w and w["phase"] == phase and all(w.get(k) == v for k, v in match.items()):
                return w
            return None

        try:
            return wait_for(probe, timeout=timeout, what=f"{name} {phase} {match}")
        except AssertionError as exc:
            raise AssertionError(
                f"{exc}\nworkloads: {self.workloads()}\n--- node log ---\n{self.log()[-4000:]}"
            ) from None

    def containers(self) -> list[dict[str, Any]]:
        r = podman(
            "ps", "-a", "--format", "json", "--filter", f"label=io.noderuntime.node={self.node_id}"
        )
        return list(json.loads(r.stdout or "[]"))


@contextlib.contextmanager
def running_node(**kw: Any) -> Iterator[NodeProcess]:
    node = NodeProcess(**kw)
    try:
        node.init()
        node.start()
        yield node
    except BaseException:
        sys.stderr.write(f"--- log of node {node.node_id} ---\n{node.log()[-6000:]}\n")
        raise
    finally:
        node.cleanup()


def workload_yaml(
    name: str,
    *,
    image: str = "localhost/busybox:1",
    command: list[str] | None = None,
    extra: str = "",
    restart: str = "always",
) -> str:
    cmd = json.dumps(command or ["sleep", "3600"])
    return (
        "apiVersion: noderuntime/v1\nkind: Workload\n"
        f"metadata: {{name: {name}}}\n"
        f"spec:\n  image: {image}\n  command: {cmd}\n  restartPolicy: {restart}\n{extra}"
    )


def env_flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0", "false")
