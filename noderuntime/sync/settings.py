"""The replication engine's settings and its default timings (units in the names)."""

from __future__ import annotations

from dataclasses import dataclass

from noderuntime.identity.principals import node_principal
from noderuntime.sync import protocol

HEARTBEAT_INTERVAL_S = 2.0
ANTI_ENTROPY_INTERVAL_S = 10.0
# 10,000 messages of up to 1 MiB each would be 10 GiB: bound what waits by bytes too.
INBOX_BYTES_LIMIT = 64 * 1024 * 1024


@dataclass(frozen=True)
class SyncSettings:
    fleet: str
    node_id: str
    site: str
    role: str = "node"
    sovereign: bool = False
    heartbeat_interval_s: float = HEARTBEAT_INTERVAL_S
    anti_entropy_interval_s: float = ANTI_ENTROPY_INTERVAL_S
    max_message_bytes: int = protocol.DEFAULT_MAX_MESSAGE_BYTES
    max_update_bytes: int = protocol.DEFAULT_MAX_UPDATE_BYTES
    max_inbox_bytes: int = INBOX_BYTES_LIMIT

    def __post_init__(self) -> None:
        protocol.check_token(self.fleet)
        protocol.check_token(self.site)
        protocol.check_token(self.node_id)

    @property
    def principal(self) -> str:
        return node_principal(self.node_id)
