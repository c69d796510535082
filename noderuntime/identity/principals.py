"""Principal names: who signs a change or acts through the control API, as ``kind:name``.

    node:<id>          a node or hub; its key signs its own writes and sync messages
    operator:<name>    a fleet operator; signs fleet and site changes (``--as FLEETDIR``)
    technician:<name>  a technician known to one node by PIN; never signs, but is recorded
                       as ``onBehalf`` in the meta of the node's own signed write

These strings are signed into credentials and updates, so they never change shape.
"""

from __future__ import annotations

NODE = "node"
OPERATOR = "operator"
TECHNICIAN = "technician"


def node_principal(node_id: str) -> str:
    return f"{NODE}:{node_id}"


def operator_principal(name: str) -> str:
    return f"{OPERATOR}:{name}"


def technician_principal(name: str) -> str:
    return f"{TECHNICIAN}:{name}"


def parse_principal(principal: str) -> tuple[str, str] | None:
    """``(kind, name)`` of ``kind:name``, or None if there is no ``:``. The kind is not checked."""
    kind, sep, name = principal.partition(":")
    return (kind, name) if sep else None


def node_id_of(principal: str) -> str | None:
    """The node id of a ``node:<id>`` principal; None for any other kind."""
    parsed = parse_principal(principal)
    return parsed[1] if parsed is not None and parsed[0] == NODE else None
