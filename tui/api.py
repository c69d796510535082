"""What the TUI needs from the node's control API, and the technician's credentials.

The app is given something that implements :class:`NodeApi`: the real
:class:`noderuntime.api.client.ApiClient` in production, an in-process fake with canned data in
snapshot tests. The TUI never opens the database.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

from noderuntime.errors import ApiError, DaemonNotRunningError, NodeRuntimeError

# Error codes of the control API that mean "this node does not have that feature".
UNKNOWN_METHOD = "unknown_method"


class NodeApi(Protocol):
    async def call(self, method: str, params: dict[str, Any] | None = None) -> Any: ...

    def stream(self, method: str, params: dict[str, Any] | None = None) -> AsyncIterator[Any]: ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class Credentials:
    """A technician's name and PIN, checked by the daemon on every state-changing request."""

    technician: str
    pin: str

    def as_param(self) -> dict[str, str]:
        return {"technician": self.technician, "pin": self.pin}


def error_code(exc: BaseException) -> str:
    if isinstance(exc, ApiError):
        return exc.code
    if isinstance(exc, NodeRuntimeError):
        return exc.code
    return "internal"


def is_unknown_method(exc: BaseException) -> bool:
    return isinstance(exc, ApiError) and exc.code == UNKNOWN_METHOD


def is_disconnected(exc: BaseException) -> bool:
    return isinstance(exc, DaemonNotRunningError)


async def perform(
    api: NodeApi, method: str, params: dict[str, Any], credentials: Credentials
) -> Any:
    """A state-changing call, always carrying the technician's credentials."""
    return await api.call(method, {**params, "auth": credentials.as_param()})
