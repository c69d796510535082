"""Joining a fleet from the console: see the enrolment state and why sync is down, and import a
credential file from a stick (``fleet/trust.py`` checks it against this node's own key).

An enrolment *token* carries a node key of its own: it is for creating a node
(``noderuntime init --enroll``), not for one that already signs with its own key. The console
shows this node's public key instead, for the operator to issue a credential for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from functools import partial
from pathlib import Path
from typing import Any

from noderuntime.api.routes.common import record_action, str_param
from noderuntime.api.server import Params, Route
from noderuntime.api.services import NodeServices
from noderuntime.config.peers import parse_peer_url
from noderuntime.errors import EnrollmentError, NodeRuntimeError
from noderuntime.fleet.bundle import read_bundle
from noderuntime.fleet.credential import MemberRole
from noderuntime.fleet.trust import FleetTrust, install_bundle, node_public_key, show_public_key

# A down link's peer is tried this long to say why (refused, unreachable, no answer).
PROBE_TIMEOUT_S = 2.0


def routes(svc: NodeServices) -> dict[str, Route]:
    return {
        "enrolment.status": Route(
            partial(status, svc), doc="enrolled or not, sync state, each link and why it is down"
        ),
        "enrolment.import": Route(
            partial(import_file, svc),
            write=True,
            doc="install a fleet credential file from a path on the node (a stick)",
        ),
    }


async def probe(url: str) -> str | None:
    """Why ``url``'s host does not take a connection now; None if it does."""
    try:
        host, port = parse_peer_url(url)
    except ValueError as exc:
        return str(exc)
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_S):
            _r, w = await asyncio.open_connection(host, port)
    except TimeoutError:
        return f"{host}:{port} does not answer (no route, or a firewall drops it)"
    except OSError as exc:
        why = os.strerror(exc.errno) if exc.errno else str(exc)  # asyncio's own text is vague
        return f"{host}:{port}: {why}"
    w.close()
    with contextlib.suppress(OSError):
        await w.wait_closed()
    return None


async def status(svc: NodeServices, _: Params) -> dict[str, Any]:
    facts = svc.facts
    enrolled = FleetTrust.is_enrolled(facts.data_dir)
    out: dict[str, Any] = {
        "enrolled": enrolled,
        "node": facts.node_id,
        "site": facts.site,
        "public_key": await asyncio.to_thread(show_public_key, facts.data_dir),
    }
    if not enrolled:
        return out
    sync = svc.sync()
    out["problem"] = svc.sync_problem()
    out["sync"] = sync.status() if sync is not None else None
    with contextlib.suppress(NodeRuntimeError):
        out["fleet_id"] = svc.fleet_trust().fleet_id
    try:
        links = await svc.leaf_links()
    except Exception as exc:  # a monitoring endpoint that fails is shown, never fatal
        links = [{"peer": "?", "up": False, "error": f"cannot read the links: {exc}"}]
    down = [lk for lk in links if not lk.get("up") and lk.get("direction") == "outbound"]
    reasons = await asyncio.gather(*(probe(str(lk["peer"])) for lk in down))
    for lk, why in zip(down, reasons, strict=True):
        lk["error"] = why or "the peer takes connections, but the link is not up (TLS, trust?)"
    out["links"] = links
    out["peers"] = sync.peer_views() if sync is not None else []
    return out


async def import_file(svc: NodeServices, params: Params) -> dict[str, Any]:
    path = Path(str_param(params, "path"))
    if not path.is_absolute():
        raise EnrollmentError(f"{path}: give the file's full path (e.g. /media/usb/node.cred)")
    facts = svc.facts
    bundle = await asyncio.to_thread(read_bundle, path)
    if bundle.is_token:
        key = await asyncio.to_thread(show_public_key, facts.data_dir)
        raise EnrollmentError(
            f"{path.name} is an enrolment token, which carries a key of its own and is for "
            "setting up a new node; this node already has its key. Ask the operator for a "
            f"credential file for this node's key instead: {key}"
        )
    public_key = await asyncio.to_thread(node_public_key, facts.data_dir)
    trust = await asyncio.to_thread(
        partial(
            install_bundle,
            facts.data_dir,
            bundle,
            node_id=facts.node_id,
            site=facts.site,
            node_public_key=public_key,
            role=MemberRole(facts.role),
        )
    )
    who = record_action(svc, params, "enrolled", f"enrolled in {trust.fleet_id} from {path}")
    return {"fleet_id": trust.fleet_id, "restart_needed": True, "by": who}
