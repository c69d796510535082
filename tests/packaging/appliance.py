"""A throwaway appliance root for tests: made by packaging/image/build-rootfs.sh, entered by chroot.

Mounts (the root bound onto itself, /proc, /sys, /dev and a fresh tmpfs /run) and every process
started inside are undone by :meth:`Appliance.cleanup`, which refuses to delete the tree while
anything is still mounted in it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUILD_ROOTFS = REPO / "packaging" / "image" / "build-rootfs.sh"

# What a bare appliance's root shell has: nothing from this test's virtualenv leaks in.
CHROOT_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "LANG": "C.UTF-8",
    "TERM": "dumb",
}


def mounts_under(root: Path) -> list[str]:
    prefix = str(root.resolve()).rstrip("/") + "/"
    out = []
    with open("/proc/self/mounts") as fh:
        for line in fh:
            target = line.split()[1].replace("\\040", " ")
            if (target + "/").startswith(prefix):
                out.append(target)
    return out


class Appliance:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.procs: list[subprocess.Popen[bytes]] = []

    # --- build and enter ---------------------------------------------------------------------

    def build(self, binary: Path, provision: Path | None = None, timeout: float = 600) -> None:
        cmd = ["bash", str(BUILD_ROOTFS), "--binary", str(binary), str(self.root)]
        if provision is not None:
            cmd[2:2] = ["--provision", str(provision)]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            raise AssertionError(f"build-rootfs.sh failed ({r.returncode}):\n{r.stderr[-4000:]}")

    def mount(self) -> None:
        r = str(self.root)
        steps = [
            # containers/storage remounts "/" inside its own chroot: the root must be a mount.
            ["mount", "--bind", r, r],
            ["mount", "-t", "proc", "proc", f"{r}/proc"],
            ["mount", "--rbind", "/sys", f"{r}/sys"],
            ["mount", "--make-rslave", f"{r}/sys"],
            ["mount", "--rbind", "/dev", f"{r}/dev"],
            ["mount", "--make-rslave", f"{r}/dev"],
            ["mount", "-t", "tmpfs", "-o", "mode=0755,nosuid,nodev", "tmpfs", f"{r}/run"],
        ]
        for step in steps:
            subprocess.run(step, check=True, capture_output=True, timeout=30)

    def _argv(self, argv: Sequence[str], env: dict[str, str] | None) -> list[str]:
        environ = CHROOT_ENV | (env or {})
        return [
            "chroot",
            str(self.root),
            "/usr/bin/env",
            "-i",
            *(f"{k}={v}" for k, v in environ.items()),
            *argv,
        ]

    def run(
        self,
        *argv: str,
        env: dict[str, str] | None = None,
        input: str | None = None,
        timeout: float = 60,
        check: bool = True,
        netns_of: int | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside the root (in the network namespace of pid ``netns_of``)."""
        cmd = self._argv(argv, env)
        if netns_of is not None:
            cmd = ["nsenter", f"--net=/proc/{netns_of}/ns/net", "--", *cmd]
        r = subprocess.run(
            cmd, capture_output=True, text=True, input=input, timeout=timeout, check=False
        )
        if check and r.returncode != 0:
            raise AssertionError(
                f"{' '.join(argv)} exited {r.returncode}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
            )
        return r

    def start(
        self,
        *argv: str,
        log: Path,
        env: dict[str, str] | None = None,
        own_netns: bool = False,
    ) -> subprocess.Popen[bytes]:
        """Start a long-running process inside the root, optionally in a new network namespace."""
        cmd = self._argv(argv, env)
        if own_netns:
            cmd = ["unshare", "--net", "--", *cmd]
        with open(log, "ab") as fh:
            proc = subprocess.Popen(
                cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        self.procs.append(proc)
        return proc

    def path(self, inside: str) -> Path:
        return self.root / inside.lstrip("/")

    # --- tear down ---------------------------------------------------------------------------

    def _pids_inside(self) -> list[int]:
        """Processes whose root directory is this tree (or a container root below it)."""
        prefix = str(self.root).rstrip("/") + "/"
        pids = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            with contextlib.suppress(OSError):
                link = os.readlink(f"/proc/{entry}/root")
                if (link + "/").startswith(prefix):
                    pids.append(int(entry))
        return pids

    def stop_processes(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 15
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.1, deadline - time.monotonic()))
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        # Anything they left behind in the tree (conmon, nats-server): started by this test.
        for sig in (signal.SIGTERM, signal.SIGKILL):
            pids = self._pids_inside()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            if pids:
                time.sleep(1)

    def unmount(self) -> list[str]:
        """Unmount everything under the root, deepest first. Returns what is still mounted."""
        for _ in range(3):
            remaining = sorted(mounts_under(self.root), key=len, reverse=True)
            if not remaining:
                break
            for target in remaining:
                if subprocess.run(["umount", target], capture_output=True).returncode != 0:
                    subprocess.run(["umount", "-l", target], capture_output=True)
        return mounts_under(self.root)

    def cleanup(self) -> None:
        self.stop_processes()
        left = self.unmount()
        if left:
            raise AssertionError(f"still mounted under {self.root}, not deleting it: {left}")
        subprocess.run(["rm", "-rf", "--one-file-system", str(self.root)], check=False)
