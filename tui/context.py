"""State the app's screens share: the API, the clock, the latest node status, the link state."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tui.api import NodeApi
from tui.model import OverrideFields


@dataclass
class TuiContext:
    api: NodeApi
    # Client for state-changing calls: a restart waits out the container's stop timeout, so
    # these get a connection (and a timeout) of their own and never hold up the live refresh.
    write_api: NodeApi | None = None
    clock: Callable[[], float] = time.time
    # Latest node.status answer (None until the first one arrives).
    status: dict[str, Any] | None = None
    connected: bool = False
    # Why the node cannot be reached, while it cannot.
    last_error: str = ""
    # Status polls that failed in a row (0 while the node answers).
    poll_failures: int = 0
    # When the node was last heard from (clock time), for "data is N s old" while disconnected.
    last_contact: float | None = None
    # What a node override may set, as the node said with its first status (None until then).
    override_fields: OverrideFields | None = None
    # Technician name of the last successful action, pre-filled in the next confirmation.
    technician: str = ""
    # Node-wide counters for tests and the benchmark: completed status refreshes.
    refreshes: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def writer(self) -> NodeApi:
        return self.write_api if self.write_api is not None else self.api

    @property
    def node_id(self) -> str | None:
        node = (self.status or {}).get("node") or {}
        value = node.get("id")
        return str(value) if value else None
