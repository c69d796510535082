"""Real nats-server processes on 127.0.0.1 free ports, with leaf links; a fake fleet trust."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from noderuntime.crdt.envelope import signing_input
from noderuntime.crdt.mutation import Mutation
from noderuntime.crdt.state import StateStore
from noderuntime.crdt.store import NewUpdate
from noderuntime.errors import CredentialError
from noderuntime.identity import keys as identity
from noderuntime.identity.keys import Identity
from noderuntime.sync.acl import MemberLike, Trust
from noderuntime.sync.verify import submit_signed
from tests.ports import free_port

NATS_SERVER = str(Path(sys.executable).parent / "nats-server")


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


class NatsServer:
    """One nats-server; ``leaf_port`` accepts leaf links, ``remotes`` are leaf ports to dial.

    ``monitor_port`` serves the monitoring endpoints on loopback (``/leafz``), as a node's own
    server does; engines given it learn of leaf-link changes from it.
    """

    def __init__(self, name: str, *, accept_leafs: bool = False, remotes: list[int] | None = None):
        self.name = name
        self.port = free_port()
        self.leaf_port = free_port() if accept_leafs else None
        self.monitor_port = free_port()
        self.remotes = list(remotes or [])
        self.dir = Path(tempfile.mkdtemp(prefix=f"nats-{name}-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def config(self) -> str:
        lines = [
            f'server_name: "{self.name}"',
            f"listen: 127.0.0.1:{self.port}",
            f"http: 127.0.0.1:{self.monitor_port}",
        ]
        leaf = []
        if self.leaf_port:
            leaf.append(f"listen: 127.0.0.1:{self.leaf_port}")
        if self.remotes:
            urls = ", ".join(f'{{ url: "nats-leaf://127.0.0.1:{p}" }}' for p in self.remotes)
            leaf.append(f"remotes: [ {urls} ]")
            leaf.append("reconnect: 1")
        if leaf:
            lines.append("leafnodes { " + "\n".join(leaf) + " }")
        return "\n".join(lines) + "\n"

    def start(self) -> NatsServer:
        conf = self.dir / "server.conf"
        conf.write_text(self.config())
        self.proc = subprocess.Popen(
            [NATS_SERVER, "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=open(self.dir / "server.log", "ab"),  # noqa: SIM115
        )
        deadline = time.monotonic() + 10
        while not _port_open(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"nats-server {self.name} did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def rss_kib(self) -> int:
        if self.proc is None:
            return 0
        with contextlib.suppress(OSError), open(f"/proc/{self.proc.pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0


@dataclass(frozen=True)
class Member:
    principal: str
    role: str
    site: str | None
    public_key: bytes
    key_id: str
    blob: bytes | None = None  # nothing to relay: every node shares this store
    not_after: float | None = None


class FakeTrust:
    """The fleet trust sync uses (``noderuntime.sync.acl.Trust``), shared by a test's nodes.

    Every member is enrolled here by the test, so every node knows every member from the start:
    there is nothing to relay (no blobs, no own ``node``) and nothing to learn (:meth:`add`
    refuses). Relaying and expiry are tested with the real ``FleetTrust``.
    """

    node: Member | None = None

    def __init__(self) -> None:
        self.by_principal: dict[str, Member] = {}
        self.identities: dict[str, Identity] = {}
        # Keys a test revoked (the real store's rule is tested with FleetTrust).
        self.revoked_keys: set[bytes] = set()

    def enroll(self, principal: str, role: str, site: str | None) -> Identity:
        ident = identity.generate(principal)
        member = Member(principal, role, site, ident.public_bytes, ident.key_id)
        self.by_principal[principal] = member
        self.identities[principal] = ident
        return ident

    def member(self, principal: str) -> Member | None:
        return self.by_principal.get(principal)

    def members_of(self, principal: str) -> list[Member]:
        return [m for m in [self.by_principal.get(principal)] if m is not None]

    def members(self) -> list[Member]:
        return sorted(self.by_principal.values(), key=lambda m: m.principal)

    def add(self, blob: bytes) -> Member:
        raise CredentialError("the test trust learns no credentials from peers")

    def expired(self, member: MemberLike) -> bool:
        return False

    def revoked(self, member: MemberLike) -> bool:
        return member.public_key in self.revoked_keys


if TYPE_CHECKING:
    _checked: Trust = FakeTrust()  # mypy: FakeTrust implements the protocol sync uses


def env_flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0")


async def operator_write(trust: FakeTrust, state: StateStore, doc: str, mutate: Mutation) -> None:
    """Write ``doc`` at ``state`` as an operator would: prepared there, signed by the test's
    operator, submitted. Fleet content is an operator's to write (a hub's key only relays)."""
    op = trust.identities.get(OPERATOR) or trust.enroll(OPERATOR, "operator", None)
    data = state.prepare(doc, mutate)
    assert data is not None
    meta = "{}"
    sig = op.sign(signing_input(doc, data, meta))
    await submit_signed(state, trust, NewUpdate(doc, data, OPERATOR, sig, time.time(), meta))


OPERATOR = "operator:test"
