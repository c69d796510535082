"""Workload security policy (issue 13 §4, §6): what a spec may take from its host. Pure.

Refused unless an operator-signed fleet policy allows it, each named by one *allowance*:

| what the spec asks for                      | allowance                  |
|---------------------------------------------|----------------------------|
| ``securityContext.privileged: true``        | ``privileged``             |
| ``hostNetwork`` / ``hostPID`` / ``hostIPC``  | ``hostNetwork``, ...       |
| ``securityContext.capabilities.add: [X]``   | ``capability:X``           |
| ``devices: [{hostPath: P}]``                | ``device:P`` (or a parent) |
| a ``hostPath`` volume at or above a         | ``hostPath:P`` (or a       |
| protected path (:data:`PROTECTED_PATHS`)     | parent)                    |
| ``user`` explicitly root (0, root)          | ``runAsRoot``              |
| ``hostPort`` 22 (the host's SSH)            | ``hostPort:22``            |

``*`` after the colon allows any (``capability:*``). Technician overrides that widen privilege
are allowances too (``override:image``, ``override:command``, ``override:args``,
``override:resources``): see :mod:`noderuntime.reconcile.desired`.

Protected host paths are the static ones below plus the node's own (its data dir and Podman
socket), which only the node knows: ``apply`` checks the static ones and the node checks all.
A mount of a path *above* a protected one (``/var`` holds ``/var/lib/noderuntime``) is as
good as a mount of it, so it is refused too. Paths are compared as written, after
normalisation: a symlink on the host that points into a protected path is not seen here.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from noderuntime.spec.models import Workload, is_root_user
from noderuntime.spec.values import Loc

PRIVILEGED = "privileged"
HOST_NETWORK = "hostNetwork"
HOST_PID = "hostPID"
HOST_IPC = "hostIPC"
RUN_AS_ROOT = "runAsRoot"
CAPABILITY = "capability"
DEVICE = "device"
HOST_PATH = "hostPath"
HOST_PORT = "hostPort"
OVERRIDE = "override"
ANY = "*"

# Host ports a workload may not publish without policy: 22 is the host's SSH, and a container
# holding it (sshd restarting, or not yet bound) takes the host's own login.
PROTECTED_HOST_PORTS = frozenset({22})
# Paths whose mount gives the container the host: its configuration, its programs and
# libraries, kernel interfaces, devices, boot files, home directories, container storage, and
# the control sockets of Podman (and podman-docker's docker.sock), systemd and D-Bus. /var/run
# is /run on current systems, but paths are compared as written, so both spellings are here.
PROTECTED_PATHS: tuple[str, ...] = (
    "/",
    "/etc",
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/proc",
    "/sys",
    "/dev",
    "/boot",
    "/root",
    "/home",
    "/var/lib/containers",
    "/var/lib/noderuntime",
    *(
        f"{run}/{name}"
        for run in ("/run", "/var/run")
        for name in ("podman", "docker.sock", "systemd", "dbus", "containerd")
    ),
)
# Overrides that widen what a workload does (issue 13 §6): a technician's PIN may not change
# them unless the fleet policy allows it.
WIDENING_OVERRIDES = ("image", "command", "args", "resources")
NAMED_KINDS = (CAPABILITY, DEVICE, HOST_PATH, HOST_PORT, OVERRIDE)
PLAIN_ALLOWANCES = (PRIVILEGED, HOST_NETWORK, HOST_PID, HOST_IPC, RUN_AS_ROOT)

# Policy records are kept per (site, workload); "*" in either place means every one.
POLICY_ANY = "*"


@dataclass(frozen=True)
class Refusal:
    """One thing a spec asks for that policy does not allow."""

    loc: Loc  # wire path, for the field and line
    allowance: str  # what an operator would allow to permit it
    message: str


def normal_path(path: str) -> str:
    # posixpath keeps a leading "//" (POSIX leaves it implementation-defined); Linux does not.
    return posixpath.normpath("/" + path.lstrip("/"))


def _under(path: str, parent: str) -> bool:
    return parent == "/" or path == parent or path.startswith(parent + "/")


def check_allowance(item: str) -> str | None:
    """Why ``item`` is not an allowance, or None."""
    if item in PLAIN_ALLOWANCES:
        return None
    kind, sep, value = item.partition(":")
    if not sep or kind not in NAMED_KINDS or not value:
        return (
            f"unknown allowance {item!r}: allowances are {', '.join(PLAIN_ALLOWANCES)}, "
            + ", ".join(f"{k}:VALUE" for k in NAMED_KINDS)
        )
    if kind in (DEVICE, HOST_PATH) and value != ANY and not value.startswith("/"):
        return f"{item!r}: a {kind} allowance names an absolute path (or *)"
    if kind == HOST_PORT and value != ANY and not (value.isascii() and value.isdigit()):
        return f"{item!r}: a hostPort allowance names a port number (or *)"
    if kind == OVERRIDE and value not in (*WIDENING_OVERRIDES, ANY):
        return f"{item!r}: overrides that need policy are {', '.join(WIDENING_OVERRIDES)}"
    return None


def allows(allowed: frozenset[str], kind: str, value: str | None = None) -> bool:
    if value is None:
        return kind in allowed
    if f"{kind}:{ANY}" in allowed or f"{kind}:{value}" in allowed:
        return True
    if kind in (DEVICE, HOST_PATH):
        path = normal_path(value)
        prefix = kind + ":"
        return any(
            a.startswith(prefix) and _under(path, normal_path(a[len(prefix) :])) for a in allowed
        )
    return False


def refusals(
    workload: Workload,
    allowed: frozenset[str],
    *,
    protected_paths: Iterable[str] = PROTECTED_PATHS,
) -> list[Refusal]:
    """What ``workload`` asks of its host that ``allowed`` does not permit."""
    spec = workload.spec
    name = workload.metadata.name
    out: list[Refusal] = []

    def refuse(loc: Loc, allowance: str, what: str) -> None:
        out.append(
            Refusal(
                ("spec", *loc),
                allowance,
                f"{what} is refused by fleet policy; an operator may allow it with "
                f"`noderuntime policy allow {allowance} --workload {name} --as FLEETDIR`",
            )
        )

    context = spec.security_context
    if context is not None and context.privileged and not allows(allowed, PRIVILEGED):
        refuse(("securityContext", "privileged"), PRIVILEGED, "a privileged container")
    for flag, field in (
        (spec.host_network, HOST_NETWORK),
        (spec.host_pid, HOST_PID),
        (spec.host_ipc, HOST_IPC),
    ):
        if flag and not allows(allowed, field):
            refuse((field,), field, f"the host's {field[4:].lower()} namespace")
    if context is not None and context.capabilities is not None:
        for i, cap in enumerate(context.capabilities.add):
            if not allows(allowed, CAPABILITY, cap):
                refuse(
                    ("securityContext", "capabilities", "add", i),
                    f"{CAPABILITY}:{cap}",
                    f"adding capability {cap}",
                )
    for i, device in enumerate(spec.devices or ()):
        if not allows(allowed, DEVICE, device.host_path):
            refuse(("devices", i), f"{DEVICE}:{device.host_path}", f"device {device.host_path}")
    protected = [normal_path(p) for p in protected_paths]
    for i, volume in enumerate(spec.volumes):
        if volume.host_path is None:
            continue
        path = normal_path(volume.host_path)
        # "/" lies above everything, so it is protected as itself only.
        hit = next(
            (p for p in protected if _under(p, path) or (p != "/" and _under(path, p))), None
        )
        if hit is not None and not allows(allowed, HOST_PATH, path):
            where = "" if hit == path else f" (it holds or lies in {hit})"
            refuse(
                ("volumes", i, "hostPath"),
                f"{HOST_PATH}:{path}",
                f"mounting host path {path}{where}",
            )
    if is_root_user(spec.user) and not allows(allowed, RUN_AS_ROOT):
        refuse(("user",), RUN_AS_ROOT, f"running as root (user {spec.user!r})")
    for i, port in enumerate(spec.ports):
        hp = port.host_port
        if hp in PROTECTED_HOST_PORTS and not allows(allowed, HOST_PORT, str(hp)):
            refuse(("ports", i, "hostPort"), f"{HOST_PORT}:{hp}", f"host port {hp}")
    return out


def policy_key(site: str, workload: str) -> str:
    return f"{site}/{workload}"


def allowed_for(
    policy: Mapping[str, frozenset[str]], workload: str, site: str | None
) -> frozenset[str]:
    """What policy allows ``workload`` at ``site``; ``site`` None: at any site (what ``apply``
    can know: it may run anywhere, so it passes if some site allows it and each node checks
    again with its own)."""
    out: set[str] = set()
    for key, items in policy.items():
        s, _, w = key.partition("/")
        if w in (workload, POLICY_ANY) and (site is None or s in (site, POLICY_ANY)):
            out |= items
    return frozenset(out)


def apply_check(
    policy: Mapping[str, frozenset[str]],
    on_refused: Callable[[Workload, list[Refusal]], None] | None = None,
) -> Callable[[Workload], list[tuple[Loc, str]]]:
    """The check ``parse_workloads`` runs where a spec is applied (``apply``, ``rollout
    start``): where the workload will run is not known there, so what some site is allowed
    passes, and each node checks again with its own site and paths."""

    def check(workload: Workload) -> list[tuple[Loc, str]]:
        found = refusals(workload, allowed_for(policy, workload.metadata.name, None))
        if found and on_refused is not None:
            on_refused(workload, found)
        return [(r.loc, r.message) for r in found]

    return check
