"""Control API route ``records.remove``: delete one record of a held document, whatever it holds.

For records no reader can use (``status`` lists them under ``store.quarantined``): one bad
record is set aside rather than stopping a site, and this is how an operator takes it out.

Who signs is the writer ACL's call (docs/sync.md): on an enrolled node the node signs only its
own documents (``node/<id>`` and its site's; fleet content is an operator's); anything else is
signed by an operator (the CLI's ``--as FLEETDIR`` asks for ``prepare: true``, signs the
prepared update and submits it), and without ``--as`` it is refused saying so. A node that is
not enrolled holds only its own documents and signs them.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

from noderuntime.api.server import ACTOR_PARAM, Params, Route
from noderuntime.api.services import NodeServices
from noderuntime.crdt import schema
from noderuntime.crdt.state import StateStore
from noderuntime.errors import ApiError, NotFoundError


def _str(params: Params, key: str, *, empty: bool = False) -> str:
    value = params.get(key)
    if not isinstance(value, str) or (not value and not empty):
        raise ApiError(f"parameter {key!r} must be a non-empty string", code="bad_request")
    return value


def routes(svc: NodeServices) -> dict[str, Route]:
    return record_routes(lambda: svc.state, enrolled=lambda: svc.sync() is not None)


def record_routes(
    state_of: Callable[[], StateStore], *, enrolled: Callable[[], bool]
) -> dict[str, Route]:
    def node_may_sign(st: StateStore, doc: str) -> bool:
        if not enrolled():
            return True
        # Fleet content is an operator's alone, a hub's too (receivers refuse more from a
        # hub's key than rollout facts; docs/sync.md).
        return doc in (st.site_doc, st.node_doc)

    async def remove(params: Params) -> dict[str, Any]:
        st = state_of()
        doc, map_name = _str(params, "doc"), _str(params, "map")
        key = _str(params, "key", empty=True)
        if not st.holds(doc):
            raise NotFoundError(
                f"this node does not hold {doc!r}; see `noderuntime status` (store.documents)"
            )
        if not st.read(doc, lambda d: schema.has_record(d, map_name, key)):
            raise NotFoundError(f"no record {key!r} in {map_name} of {doc}")
        summary = f"remove {map_name} record {key[:80]!r}"

        def mutate(d: Any) -> None:
            schema.remove_record(d, map_name, key)

        out: dict[str, Any] = {"doc": doc, "map": map_name, "key": key}
        if params.get("prepare"):
            data = st.prepare(doc, mutate)
            meta = json.dumps({"summary": summary}, sort_keys=True, separators=(",", ":"))
            encoded = base64.b64encode(data).decode() if data is not None else None
            return out | {"prepared": {"doc": doc, "data": encoded, "meta": meta}}
        if not node_may_sign(st, doc):
            raise ApiError(
                f"{doc} is not this node's to write: its records are removed by an operator; "
                "run the command with --as FLEETDIR (or set NODERUNTIME_AS)",
                code="operator_signature_required",
            )
        actor = params.get(ACTOR_PARAM)
        await st.write(
            doc, mutate, summary=summary, on_behalf=actor if isinstance(actor, str) else None
        )
        return out | {"removed": True}

    return {
        "records.remove": Route(
            remove, write=True, doc="delete one record of a held document (a record set aside)"
        )
    }
