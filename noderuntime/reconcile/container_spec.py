"""A workload as the runtime sees it: the container to create and the probe to run.

This is the seam between the spec (what users write) and the runtime (what Podman is asked for);
it lives here, above both, so neither of them imports the other.
"""

from __future__ import annotations

from typing import Any

from noderuntime.runtime.base import (
    LABEL_MANAGED,
    LABEL_NODE,
    LABEL_SPEC_HASH,
    LABEL_WORKLOAD,
    ContainerSpec,
    PortMapping,
    ProbeKind,
    ProbeSpec,
    VolumeMount,
)
from noderuntime.spec.models import DEFAULT_SECURITY_CONTEXT, Workload, spec_hash


def to_container_spec(workload: Workload, *, node_id: str, container_name: str) -> ContainerSpec:
    """The container the runtime creates for ``workload`` on node ``node_id``."""
    spec = workload.spec
    labels = dict(workload.metadata.labels)
    # Validation already refuses user labels under the reserved prefix; these still go last.
    labels.update(
        {
            LABEL_MANAGED: "true",
            LABEL_NODE: node_id,
            LABEL_WORKLOAD: workload.metadata.name,
            LABEL_SPEC_HASH: spec_hash(workload),
        }
    )
    ports = sorted(
        (
            PortMapping(
                container_port=p.container_port,
                host_port=p.host_port,
                protocol=p.protocol,
                host_ip=p.host_ip,
            )
            for p in spec.ports
        ),
        key=lambda p: (p.container_port, p.protocol, p.host_ip, p.host_port or 0),
    )
    volumes = sorted(
        (
            VolumeMount(
                target=v.mount_path,
                source=v.name if v.name is not None else (v.host_path or ""),
                kind="volume" if v.name is not None else "bind",
                read_only=v.read_only,
            )
            for v in spec.volumes
        ),
        key=lambda v: v.target,
    )
    resources = spec.resources
    context = spec.security_context or DEFAULT_SECURITY_CONTEXT
    caps = context.capabilities
    return ContainerSpec(
        name=container_name,
        image=spec.image,
        command=tuple(spec.command or ()),
        args=tuple(spec.args or ()),
        env=tuple(sorted(spec.env.items())),
        ports=tuple(ports),
        volumes=tuple(volumes),
        labels=tuple(sorted(labels.items())),
        cpus=resources.cpus if resources else None,
        memory_bytes=resources.memory_bytes if resources else None,
        working_dir=spec.working_dir,
        user=spec.user,
        stop_timeout_s=spec.stop_timeout_s,
        privileged=context.privileged,
        host_network=bool(spec.host_network),
        host_pid=bool(spec.host_pid),
        host_ipc=bool(spec.host_ipc),
        cap_add=tuple(sorted(set(caps.add))) if caps else (),
        cap_drop=tuple(sorted(set(caps.drop))) if caps else (),
        devices=tuple(
            f"{d.host_path}:{d.container_path or d.host_path}:{d.permissions}"
            for d in spec.devices or ()
        ),
        read_only_rootfs=context.read_only_root_filesystem,
        no_new_privileges=context.no_new_privileges,
    )


def to_probe_spec(workload: Workload) -> ProbeSpec | None:
    """The health probe noderuntime runs for ``workload``; None if it has no health check."""
    check = workload.spec.health_check
    if check is None:
        return None
    timing: dict[str, Any] = {
        "interval_s": check.interval_s,
        "timeout_s": check.timeout_s,
        "retries": check.retries,
        "start_period_s": check.start_period_s,
    }
    if check.exec is not None:
        return ProbeSpec(kind=ProbeKind.EXEC, command=tuple(check.exec.command), **timing)
    if check.http is not None:
        return ProbeSpec(
            kind=ProbeKind.HTTP,
            port=check.http.port,
            path=check.http.path,
            scheme=check.http.scheme,
            **timing,
        )
    if check.tcp is not None:
        return ProbeSpec(kind=ProbeKind.TCP, port=check.tcp.port, **timing)
    raise AssertionError("HealthCheck validation guarantees exactly one probe")
