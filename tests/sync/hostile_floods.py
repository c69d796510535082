"""Hostile sync traffic (issue 10): what an attacker on the bus, or holding a node's key, sends.

Each flood is a list of ``(subject, message)`` built from what such an attacker has: the fleet id
and subjects (visible on the bus), captured messages, and for the validly-signed floods a node's
own key (a stolen appliance). Used by the bounded suite (``tests/sync/test_hostile_suite.py``)
and the longer bench (``bench/hostile_sync.py``), so both send the same things.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pycrdt import Doc, Map

from noderuntime.crdt.envelope import signing_input
from noderuntime.identity.keys import Identity
from noderuntime.sync import protocol
from noderuntime.sync.protocol import WireUpdate

Message = tuple[str, bytes]


@dataclass(frozen=True)
class Target:
    """Who is attacked and with what key: a node at a site, linked to a hub."""

    fleet: str
    node_id: str
    site: str
    hub_id: str
    hub_site: str
    key: Identity  # the node's own key (validly-signed floods)

    def subjects(self) -> list[str]:
        f, s, n = self.fleet, self.site, self.node_id
        return [
            protocol.update_subject(f, "fleet"),
            protocol.update_subject(f, f"site.{s}"),
            protocol.update_subject(f, f"node.{s}.{n}"),
            protocol.state_subject(f, "fleet"),
            protocol.state_subject(f, f"site.{s}"),
            protocol.inbox_subject(f, s, n),
            protocol.inbox_subject(f, self.hub_site, self.hub_id),
            protocol.heartbeat_subject(f, s, n),
            protocol.credentials_subject(f),
        ]


def update(
    doc: str, key: Identity, mutate: Callable[[Doc[Any]], None], *, author: str = ""
) -> bytes:
    d: Doc[Any] = Doc()
    with d.transaction():
        mutate(d)
    data = d.get_update()
    meta = '{"summary":"hostile"}'
    sig = key.sign(signing_input(doc, data, meta))
    wire = WireUpdate(author or key.name, sig, time.time(), meta, data)
    return protocol.encode_updates("mallory", doc, [wire])


def state(
    key: Identity, doc: str, sv: bytes, *, target: str = "", ts: float | None = None
) -> bytes:
    part = protocol.state_signed_part(key.name, doc, target, time.time() if ts is None else ts, sv)
    return part + key.sign(protocol.signing_bytes(part))


def heartbeat(key: Identity, ts: float, payload: dict[str, Any] | bytes) -> bytes:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    part = protocol.heartbeat_signed_part(key.name, ts, raw)
    return part + key.sign(protocol.signing_bytes(part))


def _sv() -> bytes:
    """A state vector claiming one unit of some client: non-empty, so a hub takes it seriously."""
    d: Doc[Any] = Doc()
    d.get("x", type=Map)["k"] = "v"
    return d.get_state()


# --- floods ------------------------------------------------------------------------------------


def unknown_authors(t: Target, n: int) -> list[Message]:
    """Updates by ``n`` made-up authors (needs no key): the trial grew a hub by 207 MB."""
    subject = protocol.update_subject(t.fleet, "fleet")
    data = b"\x00\x00"
    return [
        (
            subject,
            protocol.encode_updates(
                "x", "fleet", [WireUpdate(f"node:a{i}", bytes(64), 1.0, "{}", data)]
            ),
        )
        for i in range(n)
    ]


def doc_names(t: Target, n: int) -> list[Message]:
    """State vectors signed by the node naming documents it may not write (and a name with a
    trailing newline): the trial made a hub create 10,718 documents in 30 s."""
    subject = protocol.inbox_subject(t.fleet, t.hub_site, t.hub_id)
    sv = _sv()
    names = ["site/plant-a\n", f"site/{t.site}\n"] + [
        f"site/x{i}" if i % 2 else f"node/y{i}" for i in range(n - 2)
    ]
    now = time.time()
    return [
        (subject, state(t.key, name, sv, target=t.hub_id, ts=now + i * 1e-6))
        for i, name in enumerate(names[:n])
    ]


def replayed_state(t: Target, n: int) -> list[Message]:
    """One captured state vector (empty: "send me everything") replayed ``n`` times."""
    subject = protocol.inbox_subject(t.fleet, t.hub_site, t.hub_id)
    captured = state(t.key, "fleet", b"\x00", target=t.hub_id)
    return [(subject, captured)] * n


def stale_heartbeats(t: Target, n: int) -> list[Message]:
    """Heartbeats of a start of the node signed 7 to 10 minutes ago (captured, replayed)."""
    subject = protocol.heartbeat_subject(t.fleet, t.site, t.node_id)
    now = time.time()
    boot = os.urandom(8).hex()
    return [
        (
            subject,
            heartbeat(
                t.key,
                now - 600 + i * (180 / max(n, 1)),
                {"node": t.node_id, "boot": boot, "n": i + 1},
            ),
        )
        for i in range(n)
    ]


def credential_requests(t: Target, n: int) -> list[Message]:
    """Requests (unsigned: anyone may ask) for 64 made-up principals each."""
    subject = protocol.credentials_subject(t.fleet)
    return [
        (
            subject,
            protocol.encode_credential_request(
                [f"node:q{i}-{j}" for j in range(protocol.MAX_REQUESTED)]
            ),
        )
        for i in range(n)
    ]


def unauthorised_updates(t: Target, n: int) -> list[Message]:
    """Validly signed by the node, to documents it may not write: the fleet document, another
    site's, another node's. Every one must be refused (``unauthorised``)."""
    targets = [
        ("fleet", "workloads", "evil"),
        ("site/other", "overrides", "w/image"),
        (f"node/{t.hub_id}", "status", "evil"),
    ]
    out = []
    for i in range(n):
        doc, map_name, key = targets[i % len(targets)]
        suffix = (
            "fleet"
            if doc == "fleet"
            else (f"site.{doc[5:]}" if doc.startswith("site/") else f"node.{t.hub_site}.{t.hub_id}")
        )

        def mutate(d: Doc[Any], map_name: str = map_name, key: str = key, i: int = i) -> None:
            d.get(map_name, type=Map)[f"{key}{i}"] = json.dumps({"metadata": {"name": f"evil{i}"}})

        out.append((protocol.update_subject(t.fleet, suffix), update(doc, t.key, mutate)))
    return out


def mutated(t: Target, n: int, seed: int = 10) -> list[Message]:
    """Random, truncated, bit-flipped, re-targeted, reordered and oversized messages on every
    subject, built from genuine ones (signed by the node where they need a signature)."""
    rnd = random.Random(seed)
    subjects = t.subjects()
    genuine = [
        update(
            f"site/{t.site}",
            t.key,
            lambda d: d.get("overrides", type=Map).__setitem__("w/image", '"x"'),
        ),
        state(t.key, "fleet", _sv()),
        heartbeat(t.key, time.time(), {"node": t.node_id, "boot": "b", "n": 1}),
        protocol.encode_credentials([b"nrc1.AAAA.BBBB"]),
        protocol.encode_credential_request(["node:zz"]),
    ]
    out: list[Message] = []
    for i in range(n):
        base = bytearray(rnd.choice(genuine))
        how = 6 if i % 50 == 49 else rnd.randrange(6)  # oversized ones cost the bus 600 KB
        if how == 0:
            data = bytes(rnd.randbytes(rnd.choice([0, 1, 2, 10, 300, 5000])))
        elif how == 1:
            data = bytes(base[: rnd.randrange(len(base))])
        elif how == 2:
            for _ in range(rnd.randint(1, 4)):
                base[rnd.randrange(len(base))] ^= 1 << rnd.randrange(8)
            data = bytes(base)
        elif how == 3:
            data = bytes(base) + rnd.randbytes(rnd.randint(1, 50))  # trailing bytes
        elif how == 4:
            base[0] = rnd.choice([0, 2, 255])  # another protocol version
            data = bytes(base)
        elif how == 5:
            data = bytes(base[:2]) + rnd.randbytes(rnd.randint(0, 64)) + bytes(base[2:])
        else:  # an update field far over the 256 KiB bound, the message within nats' 1 MiB
            data = protocol.encode_updates(
                "x", "fleet", [WireUpdate(t.key.name, bytes(64), 1.0, "{}", bytes(600_000))]
            )
        out.append((rnd.choice(subjects), data))
    return out


def reordered(t: Target, n: int) -> list[Message]:
    """Genuine changes the node may make (its site document), each depending on the one
    before, sent newest first and each twice: they apply once, in any order."""
    d: Doc[Any] = Doc()
    overrides = d.get("overrides", type=Map)
    chain = []
    for i in range(max(n // 2, 1)):
        before = d.get_state()
        overrides[f"ghost{i}/image"] = json.dumps(f"img{i}")
        data = d.get_update(before)
        meta = '{"summary":"reordered"}'
        doc = f"site/{t.site}"
        wire = WireUpdate(
            t.key.name, t.key.sign(signing_input(doc, data, meta)), time.time(), meta, data
        )
        chain.append(protocol.encode_updates("mallory", doc, [wire]))
    subject = protocol.update_subject(t.fleet, f"site.{t.site}")
    return [(subject, m) for m in reversed(chain) for _ in range(2)][:n]


def poison_heartbeats(t: Target, n: int) -> list[Message]:
    """Validly signed heartbeats whose payload no decoder should recurse into."""
    subject = protocol.heartbeat_subject(t.fleet, t.site, t.node_id)
    payloads = [b"[" * 3000, b'{"a":' * 2000, b"[" * 20_000 + b"]" * 20_000, b"\xff\xfe"]
    return [(subject, heartbeat(t.key, time.time(), payloads[i % len(payloads)])) for i in range(n)]


FLOODS: dict[str, Callable[[Target, int], list[Message]]] = {
    "mutated": mutated,
    "unknown_authors": unknown_authors,
    "doc_names": doc_names,
    "replayed_state": replayed_state,
    "stale_heartbeats": stale_heartbeats,
    "credential_requests": credential_requests,
    "unauthorised_updates": unauthorised_updates,
    "poison_heartbeats": poison_heartbeats,
    "reordered": reordered,
}
