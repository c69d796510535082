"""The node's own network: see it (links, addresses, gateway, DNS, who manages it) and set one
link through its manager (``host/network.py``). Setting is a write: root, or a technician's
PIN at the console; the server audits it, and it is recorded as a ``network-set`` event."""

from __future__ import annotations

from functools import partial
from typing import Any

from noderuntime.api.routes.common import record_action
from noderuntime.api.server import Params, Route
from noderuntime.api.services import NodeServices


def routes(svc: NodeServices) -> dict[str, Route]:
    return {
        "network.get": Route(
            partial(get_network, svc), doc="links, addresses, gateway, DNS, and who manages them"
        ),
        "network.set": Route(
            partial(set_network, svc),
            write=True,
            doc="set one link (dhcp or static address, gateway, DNS) through its manager",
        ),
    }


async def get_network(svc: NodeServices, _: Params) -> dict[str, Any]:
    return await svc.network().read()


async def set_network(svc: NodeServices, params: Params) -> dict[str, Any]:
    done = await svc.network().apply(params)
    who = record_action(
        svc, params, "network-set", f"network set {done['change']} via {done['manager']}"
    )
    return {**done, "by": who}
