"""The control API's route table (version 1), one module per concern, over :class:`NodeServices`.

    status     node.status
    store      store.reset, store.resync (a store hold)
    workloads  workloads.list, workloads.get, workloads.logs (stream), workloads.restart
    overrides  overrides.set, overrides.remove, workloads.stop, workloads.start
    fleet      workloads.apply, workloads.delete, policy.lock, updates.submit
    policy     policy.allow, policy.list (workload security policy)
    history    events.list, history.list, state.export (debug)
    peers      sync.peers, nodes.list
    rollouts   rollout.start/status/history/pause/resume/abort/undo, site.window.set
    site       site.status, site.drain, site.uncordon (site quorum)
    records    records.remove (a record set aside)
    images     images.list, images.archives, images.load (stream; from a file on the node)
    join       enrolment.status, enrolment.import (a credential file from a stick)
    network    network.get, network.set (through systemd-networkd or NetworkManager)
    secrets    secret.targets, secret.set, secret.ls, secret.rm
    audit      audit.list, audit.follow (stream), audit.verify, audit.witness
    revoke     fleet.revoke (an operator revokes a member's keys)
    rekey      node.rekey, rekey.pending, rekey.issue (a node's key rotated through the fleet)

Read routes answer anyone who may open the socket; write routes (``write=True``) also need the
daemon's uid or root (see ``api/server.py``).
"""

from __future__ import annotations

from collections.abc import Callable

from noderuntime.api.routes import (
    audit,
    fleet,
    history,
    images,
    join,
    network,
    overrides,
    peers,
    policy,
    records,
    rekey,
    revoke,
    rollouts,
    secrets,
    site,
    status,
    store,
    workloads,
)
from noderuntime.api.server import Route
from noderuntime.api.services import NodeServices

MODULES: tuple[Callable[[NodeServices], dict[str, Route]], ...] = (
    status.routes,
    store.routes,
    workloads.routes,
    overrides.routes,
    fleet.routes,
    policy.routes,
    history.routes,
    images.routes,
    join.routes,
    network.routes,
    peers.routes,
    records.routes,
    revoke.routes,
    rekey.routes,
    rollouts.routes,
    secrets.routes,
    site.routes,
    audit.routes,
)


def build_routes(svc: NodeServices) -> dict[str, Route]:
    table: dict[str, Route] = {}
    for module_routes in MODULES:
        for name, route in module_routes(svc).items():
            if name in table:
                raise ValueError(f"route {name!r} is defined twice")
            table[name] = route
    return table
