"""One rooted error tree. Messages say what went wrong and what to do about it.

Foreign exceptions (podman, sqlite, yaml, pydantic, OS) are translated at the boundary with
``raise ... from exc`` so the cause stays attached.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class NodeRuntimeError(Exception):
    """Root of every error noderuntime raises on purpose."""

    #: Stable machine-readable code, sent over the control API.
    code = "error"

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": str(self)}


# --- configuration and identity -------------------------------------------------------------


class ConfigError(NodeRuntimeError):
    """The node's configuration is missing, unreadable or invalid."""

    code = "config"


class NotInitializedError(ConfigError):
    """The data directory holds no node; ``noderuntime init`` has not been run."""

    code = "not_initialized"


class AlreadyInitializedError(ConfigError):
    """``noderuntime init`` was asked to overwrite an existing node."""

    code = "already_initialized"


class IdentityError(NodeRuntimeError):
    """A key file is missing, unreadable, has unsafe permissions or does not parse."""

    code = "identity"


# --- fleet identity and transport -----------------------------------------------------------


class FleetError(NodeRuntimeError):
    """A fleet directory, enrolment or trust store is missing, damaged or inconsistent."""

    code = "fleet"


class CredentialError(FleetError):
    """A member credential is malformed, not signed by this fleet's root, or expired."""

    code = "invalid_credential"


class EnrollmentError(FleetError):
    """An enrolment token or credential file cannot be installed on this node."""

    code = "enrollment"


class EnrollmentFileError(EnrollmentError):
    """An enrolment token or credential file is malformed or does not verify; nothing was done."""

    code = "invalid_enrollment_file"


class NotEnrolledError(FleetError):
    """The node holds no fleet enrolment (``noderuntime init --enroll`` or ``enroll``)."""

    code = "not_enrolled"


class SecretError(NodeRuntimeError):
    """A secret cannot be sealed, found or opened here (not a target, missing, tampered)."""

    code = "secret"


class NatsServerError(NodeRuntimeError):
    """The node's nats-server could not be found, configured or started."""

    code = "nats_server"


class ChannelError(NodeRuntimeError):
    """The sync transport could not send a message (the link is down or the client failed)."""

    code = "sync_channel"


class SiteError(NodeRuntimeError):
    """The site's lease store (JetStream KV on the site cluster) cannot answer: no quorum yet."""

    code = "site_unavailable"


class HandoffRefusedError(SiteError):
    """JetStream answered a leadership transfer with an error: nothing moved, no election."""

    code = "handoff_refused"


class LeaseConflictError(SiteError):
    """A compare-and-set on a lease lost: someone else wrote the key since we last did."""

    code = "lease_conflict"


class UpdateRejectedError(NodeRuntimeError):
    """A signed update was refused (bad signature, unknown author, not allowed, corrupt)."""

    code = "update_rejected"


# --- workload specs -------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldProblem:
    """One problem in a user document: where it is and what is wrong."""

    field: str
    message: str
    line: int | None = None
    document: int | None = None

    def render(self, source: str | None = None) -> str:
        where = source or "<input>"
        if self.line is not None:
            where += f":{self.line}"
        if self.document is not None and self.document > 0:
            where += f" (document {self.document + 1})"
        return f"{where}: {self.field}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "field": self.field,
            "message": self.message,
            "line": self.line,
            "document": self.document,
        }


class SpecError(NodeRuntimeError):
    """A workload spec is invalid; ``problems`` says where and why. Nothing was changed."""

    code = "invalid_spec"

    def __init__(
        self, problems: list[FieldProblem], source: str | None = None, summary: str = ""
    ) -> None:
        self.problems = list(problems)
        self.source = source
        lines = [summary or "invalid workload spec; nothing was changed"]
        lines += ["  " + p.render(source) for p in self.problems]
        super().__init__("\n".join(lines))

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["problems"] = [p.to_dict() for p in self.problems]
        return out


class NotFoundError(NodeRuntimeError):
    """The named object (workload, container, document) does not exist."""

    code = "not_found"


class PolicyError(NodeRuntimeError):
    """A fleet policy forbids the requested change."""

    code = "forbidden_by_policy"


class ConflictError(NodeRuntimeError):
    """The change conflicts with what is under way (e.g. a rollout already in progress)."""

    code = "conflict"


# --- state store ----------------------------------------------------------------------------


class StoreError(NodeRuntimeError):
    """The local state database could not be read or written."""

    code = "store"


class StoreCorruptError(StoreError):
    """The state database holds data that cannot be loaded."""

    code = "store_corrupt"


# --- container runtime ----------------------------------------------------------------------


class RuntimeUnavailableError(NodeRuntimeError):
    """Podman cannot be reached; workloads are left as they are until it comes back."""

    code = "runtime_unavailable"


class ImageNotFoundError(NodeRuntimeError):
    """The workload's image is neither on the host nor pullable."""

    code = "image_not_found"


class ImageArchiveError(NodeRuntimeError):
    """A file given to load images is not an image archive the node can load."""

    code = "invalid_image_archive"


class NetworkConfigError(NodeRuntimeError):
    """The node's network cannot be set this way (no manager owns it, or it refused)."""

    code = "network_config"


class ContainerError(NodeRuntimeError):
    """Podman refused an operation on a container (create, start, stop, remove, exec)."""

    code = "container"


# --- control API ----------------------------------------------------------------------------


class DaemonNotRunningError(NodeRuntimeError):
    """The CLI/TUI could not reach the node's control socket."""

    code = "daemon_not_running"


class ApiError(NodeRuntimeError):
    """The control API answered with an error (or something it could not understand)."""

    code = "api"

    def __init__(self, message: str, code: str = "api", details: dict[str, Any] | None = None):
        super().__init__(message)
        self.code = code
        self.details = details or {}

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.details)
        out.update(super().to_dict())
        return out


class InvalidInputError(NodeRuntimeError):
    """An argument or file given to a command is malformed; the message says which and why."""

    code = "bad_request"


class PermissionDeniedError(NodeRuntimeError):
    """The caller may not use this control API route."""

    code = "permission_denied"


class LockedOutError(PermissionDeniedError):
    """A technician is locked out after too many wrong PINs (same wire code; audited apart)."""


__all__ = [
    "AlreadyInitializedError",
    "ApiError",
    "ChannelError",
    "ConfigError",
    "ContainerError",
    "CredentialError",
    "DaemonNotRunningError",
    "EnrollmentError",
    "EnrollmentFileError",
    "FieldProblem",
    "FleetError",
    "IdentityError",
    "ImageArchiveError",
    "ImageNotFoundError",
    "InvalidInputError",
    "LockedOutError",
    "NatsServerError",
    "NetworkConfigError",
    "NodeRuntimeError",
    "NotEnrolledError",
    "NotFoundError",
    "NotInitializedError",
    "PermissionDeniedError",
    "PolicyError",
    "RuntimeUnavailableError",
    "SpecError",
    "StoreCorruptError",
    "StoreError",
    "UpdateRejectedError",
]
