"""Make Podman work on this host, changing only what this host needs.

Some appliance kernels and container hosts run a *hybrid* cgroup layout (v1 controllers plus an
empty unified v2 hierarchy) and deny CAP_SYS_RESOURCE. Podman's defaults then fail every
`podman run` (crun refuses hybrid mode; Podman's default nofile limit exceeds the hard limit).
A normal cgroup-v2 host needs none of this, so the fix is derived from facts, never hard-coded,
and written as a containers.conf drop-in that leaves the distribution's own file alone.
"""

from __future__ import annotations

import os
import resource
import shutil
from dataclasses import dataclass
from pathlib import Path

DROPIN_DIR = Path("/etc/containers/containers.conf.d")
DROPIN_NAME = "50-noderuntime.conf"
CGROUP_ROOT = Path("/sys/fs/cgroup")

# Podman 4.x asks for this many open files by default; above the hard limit it needs
# CAP_SYS_RESOURCE to raise it.
PODMAN_DEFAULT_NOFILE = 1_048_576
PODMAN_DEFAULT_NPROC = 4_194_304
SAFE_NOFILE = 1024
SAFE_NPROC = 1000
CAP_SYS_RESOURCE = 24


@dataclass(frozen=True)
class HostFacts:
    cgroup_layout: str  # "v2" | "hybrid" | "v1"
    nofile_hard: int
    nproc_hard: int
    cap_sys_resource: bool
    runc_installed: bool


@dataclass(frozen=True)
class Fix:
    """One setting this host needs, and why (shown to the person running setup or doctor)."""

    section: str
    key: str
    value: str
    reason: str


def cgroup_layout(root: Path = CGROUP_ROOT) -> str:
    if (root / "cgroup.controllers").exists():
        return "v2"
    unified = root / "unified"
    if unified.is_dir():
        return "hybrid"
    return "v1"


def _has_capability(bit: int, status: Path = Path("/proc/self/status")) -> bool:
    try:
        for line in status.read_text().splitlines():
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> bit & 1)
    except (OSError, ValueError):
        pass
    return False


def _hard_limit(which: int) -> int:
    hard = resource.getrlimit(which)[1]
    return hard if hard != resource.RLIM_INFINITY else 2**62


def gather_facts() -> HostFacts:
    return HostFacts(
        cgroup_layout=cgroup_layout(),
        nofile_hard=_hard_limit(resource.RLIMIT_NOFILE),
        nproc_hard=_hard_limit(resource.RLIMIT_NPROC),
        cap_sys_resource=_has_capability(CAP_SYS_RESOURCE),
        runc_installed=shutil.which("runc") is not None,
    )


def needed_fixes(facts: HostFacts) -> list[Fix]:
    """What containers.conf must say for Podman to run containers on a host with ``facts``."""
    fixes: list[Fix] = []
    limits: list[str] = []
    if not facts.cap_sys_resource:
        if facts.nofile_hard < PODMAN_DEFAULT_NOFILE:
            nofile = min(SAFE_NOFILE, facts.nofile_hard)
            limits.append(f"nofile={nofile}:{nofile}")
        if facts.nproc_hard < PODMAN_DEFAULT_NPROC:
            nproc = min(SAFE_NPROC, facts.nproc_hard)
            limits.append(f"nproc={nproc}:{nproc}")
    if limits:
        fixes.append(
            Fix(
                "containers",
                "default_ulimits",
                "[" + ", ".join(f'"{x}"' for x in limits) + "]",
                "Podman's default rlimits exceed this host's hard limits and the process lacks "
                "CAP_SYS_RESOURCE (setrlimit: Operation not permitted)",
            )
        )
    if facts.cgroup_layout == "hybrid":
        fixes.append(
            Fix(
                "engine",
                "runtime",
                '"runc"',
                "hybrid cgroup layout: crun refuses it, runc works"
                + ("" if facts.runc_installed else " (install the 'runc' package)"),
            )
        )
    return fixes


def render_dropin(fixes: list[Fix]) -> str:
    lines = ["# Written by noderuntime host setup for this host's facts; see `noderuntime doctor`."]
    for section in ("containers", "engine"):
        chosen = [f for f in fixes if f.section == section]
        if not chosen:
            continue
        lines.append(f"[{section}]")
        for f in chosen:
            lines.append(f"# {f.reason}")
            lines.append(f"{f.key} = {f.value}")
    return "\n".join(lines) + "\n"


def dropin_path(base: Path = DROPIN_DIR) -> Path:
    return base / DROPIN_NAME


def apply_fixes(fixes: list[Fix], base: Path = DROPIN_DIR) -> Path | None:
    """Write (or remove, when nothing is needed) the drop-in. Returns its path if written."""
    path = dropin_path(base)
    if not fixes:
        path.unlink(missing_ok=True)
        return None
    base.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(render_dropin(fixes))
    os.replace(tmp, path)
    return path


def main() -> int:
    """`python -m noderuntime.host.hostsetup`: run by scripts/setup.sh before Podman is used."""
    fixes = needed_fixes(gather_facts())
    path = apply_fixes(fixes)
    if path is None:
        print("host setup: Podman needs no host-specific configuration here")
    else:
        for f in fixes:
            print(f"host setup: {f.section}.{f.key} = {f.value}  ({f.reason})")
        print(f"host setup: wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
