"""Versions of noderuntime and what it bundles, and where the bundled nats-server lives."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from noderuntime import __version__


def find_nats_server() -> Path | None:
    """The nats-server binary: bundled in a PyInstaller build, else the venv's, else PATH."""
    candidates: list[Path] = []
    bundle = getattr(sys, "_MEIPASS", None)
    if bundle:
        candidates.append(Path(bundle) / "bin" / "nats-server")
    candidates.append(Path(sys.executable).parent / "nats-server")
    candidates.append(Path(sys.prefix) / "bin" / "nats-server")
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return c
    found = shutil.which("nats-server")
    return Path(found) if found else None


def nats_server_version() -> str:
    binary = find_nats_server()
    if binary is None:
        return "not found"
    try:
        out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unusable ({exc})"
    text = (out.stdout or out.stderr).strip()
    # "nats-server: v2.15.1"
    return text.split()[-1].lstrip("v") if text else "unknown"


def _dist_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "unknown"


def version_report() -> str:
    py = sys.version.split()[0]
    frozen = " (single binary)" if getattr(sys, "frozen", False) else ""
    return (
        f"noderuntime {__version__}{frozen}\n"
        f"  nats-server {nats_server_version()}\n"
        f"  pycrdt      {_dist_version('pycrdt')}\n"
        f"  python      {py}"
    )
