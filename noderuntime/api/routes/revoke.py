"""``fleet.revoke``: an operator revokes a member's keys (``noderuntime revoke MEMBER --as OP``);
``fleet.member.add``: this node learns a member's credential (``noderuntime enroll --member``).

The change is a record in the fleet document's ``revocations`` map (what it covers, and who may
write it: :mod:`noderuntime.fleet.revocation`). Like every fleet change on an enrolled node it
must be signed by an operator: the CLI asks for ``prepare: true``, signs the update and submits
it (``updates.submit``), which verifies it as a peer's update would be.
"""

from __future__ import annotations

import time
from functools import partial
from typing import Any

from pycrdt import Doc

from noderuntime.api.routes.common import check_fleet_write, prepared, str_param
from noderuntime.api.server import Params, Route
from noderuntime.api.services import NodeServices
from noderuntime.crdt import schema
from noderuntime.errors import ApiError, NotFoundError
from noderuntime.fleet.revocation import revocation_entry
from noderuntime.identity.principals import (
    NODE,
    OPERATOR,
    node_principal,
    operator_principal,
    parse_principal,
)

MAX_REASON_CHARS = 200


def routes(svc: NodeServices) -> dict[str, Route]:
    return {
        "fleet.revoke": Route(
            partial(revoke, svc),
            write=True,
            doc="revoke a member's keys everywhere (operator-signed)",
        ),
        "fleet.member.add": Route(
            partial(add_member, svc),
            write=True,
            doc="learn a member's credential (verified against the fleet root)",
        ),
    }


async def add_member(svc: NodeServices, params: Params) -> dict[str, Any]:
    """Once a revocation is in force a node's listeners accept only members it knows: a member
    enrolled later is let in by handing its credential to the nodes it links with (the pins
    follow within ``node.revocations.PIN_CHECK_S``). A credential is public; it is verified
    against the fleet root like one a peer relays."""
    member = svc.fleet_trust().add(str_param(params, "credential").encode())
    return {"principal": member.principal, "key_id": member.key_id, "role": member.role.value}


def resolve_member(member: str, known: set[str]) -> str:
    """The principal ``member`` names: ``node:ID`` or ``operator:NAME`` as given, or a bare
    name this node knows as exactly one of them."""
    parsed = parse_principal(member)
    if parsed is not None:
        if parsed[0] not in (NODE, OPERATOR) or not parsed[1]:
            raise ApiError(
                f"{member!r}: name a member as node:ID or operator:NAME", code="bad_request"
            )
        return member
    found = [p for p in (node_principal(member), operator_principal(member)) if p in known]
    if len(found) == 1:
        return found[0]
    if found:
        raise ApiError(
            f"{member!r} is both a node and an operator: say node:{member} or operator:{member}",
            code="bad_request",
        )
    raise NotFoundError(
        f"this node knows no member {member!r}; name it as node:ID or operator:NAME to "
        "revoke it all the same"
    )


async def revoke(svc: NodeServices, params: Params) -> dict[str, Any]:
    trust = svc.fleet_trust()
    principal = resolve_member(str_param(params, "member"), {m.principal for m in trust.members()})
    author = params.get("author")
    if principal == author:
        raise ApiError(
            "an operator cannot revoke the key that signs the revocation; sign it as another "
            "operator",
            code="bad_request",
        )
    reason = str_param(params, "reason", required=False)[:MAX_REASON_CHARS]
    rev = revocation_entry(
        principal,
        keys=[m.key_id for m in trust.members_of(principal)],
        by=author if isinstance(author, str) else "",
        at=time.time(),
        reason=reason,
    )

    def mutate(doc: Doc[Any]) -> None:
        schema.put_entry(doc, schema.REVOCATIONS, principal, rev.to_dict())

    summary = f"revoke {principal}"
    out: dict[str, Any] = {"revocation": rev.to_dict()}
    if params.get("prepare"):
        return out | {"prepared": prepared(svc.state, svc.state.fleet_doc, mutate, summary)}
    check_fleet_write(svc, params)
    await svc.state.write(svc.state.fleet_doc, mutate, summary=summary)
    return out
