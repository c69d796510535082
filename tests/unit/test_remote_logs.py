"""Remote logs (noderuntime/sync/remotelogs.py): what a node checks before it reads a line, and
that a hub takes lines only from the node it asked. Over an in-memory publish."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from noderuntime.identity import keys
from noderuntime.sync import protocol
from noderuntime.sync.protocol import Kind, LogLinesMsg, LogRequestMsg
from noderuntime.sync.remotelogs import RemoteLogs, make_request

NOW = 1000.0


@dataclass(frozen=True)
class Member:
    principal: str
    role: str
    public_key: bytes
    site: str | None = None


class Trust:
    def __init__(self, *ids: tuple[keys.Identity, str]) -> None:
        self.by = {i.name: Member(i.name, role, i.public_bytes) for i, role in ids}

    def member(self, principal: str) -> Member | None:
        return self.by.get(principal)

    def add(self, blob: bytes) -> Member:
        raise ValueError("not a credential")

    def expired(self, member: Member) -> bool:
        return False

    def revoked(self, member: Member) -> bool:
        return False


OPS = keys.generate("operator:ops")
TECH = keys.generate("node:imposter")
HUB = keys.generate("node:hub")
NODE = keys.generate("node:n1")
TRUST = Trust((OPS, "operator"), (TECH, "node"), (HUB, "hub"), (NODE, "node"))


async def read_lines(workload: str, tail: int | None, follow: bool) -> AsyncIterator[str]:
    for i in range(3):
        yield f"{workload} line {i}"


def node_side(*, sovereign: bool = False) -> tuple[RemoteLogs, list[tuple[str, bytes]], list[Any]]:
    sent: list[tuple[str, bytes]] = []
    records: list[Any] = []

    async def publish(subject: str, data: bytes) -> None:
        sent.append((subject, data))

    logs = RemoteLogs(
        fleet="f",
        site="lab",
        node_id="n1",
        sovereign=sovereign,
        identity=NODE,
        trust=TRUST,  # type: ignore[arg-type]
        publish=publish,
        clock=lambda: NOW,
        log=logging.getLogger("t"),
        reader=read_lines,
        record=lambda *a: records.append(a),
    )
    return logs, sent, records


def forwarded(request: bytes, via: keys.Identity = HUB) -> LogRequestMsg:
    env = json.dumps({"request": base64.b64encode(request).decode(), "site": "hq", "hub": "hub"})
    part = protocol.signed_blob_part(Kind.LOG_REQUEST, via.name, NOW, env.encode())
    msg = protocol.decode(part + via.sign(protocol.signing_bytes(part)))
    assert isinstance(msg, LogRequestMsg)
    return msg


def answers(sent: list[tuple[str, bytes]]) -> list[dict[str, Any]]:
    out = []
    for subject, data in sent:
        msg = protocol.decode(data)
        assert isinstance(msg, LogLinesMsg) and subject == "nr.f.in.hq.hub"
        out.append(json.loads(msg.payload))
    return out


def serve(logs: RemoteLogs, msg: LogRequestMsg) -> None:
    async def go() -> None:
        logs.forwarded(msg)
        await asyncio.gather(*list(logs._serving))

    asyncio.run(go())


def request(who: keys.Identity = OPS, node: str = "n1", ts: float = NOW) -> bytes:
    return make_request(who, b"", node=node, workload="web", tail=5, follow=False, now=ts)


def test_an_operators_request_is_recorded_then_answered() -> None:
    logs, sent, records = node_side()
    serve(logs, forwarded(request()))
    assert records == [("web", "operator:ops", "node:hub")]
    got = answers(sent)
    assert [line for a in got for line in a.get("lines", [])] == [f"web line {i}" for i in range(3)]
    assert got[-1]["end"] is True and not got[-1].get("error")


def test_a_sovereign_node_refuses_and_reads_nothing() -> None:
    logs, sent, records = node_side(sovereign=True)
    serve(logs, forwarded(request()))
    (only,) = answers(sent)
    assert "sovereign" in only["error"] and records == []


def test_not_an_operator_a_replay_an_old_request_or_another_node_are_refused() -> None:
    for bad in (request(TECH), request(ts=NOW - 3600)):
        logs, sent, records = node_side()
        serve(logs, forwarded(bad))
        assert answers(sent)[0]["error"] and records == []
    logs, sent, records = node_side()
    ok = request()
    serve(logs, forwarded(ok))
    serve(logs, forwarded(ok))
    assert "replayed" in answers(sent)[-1]["error"] and len(records) == 1
    logs, sent, records = node_side()
    serve(logs, forwarded(request(node="n2")))
    assert sent == [] and records == []


def test_only_a_hub_may_forward_a_request() -> None:
    logs, sent, records = node_side()
    serve(logs, forwarded(request(), via=TECH))
    assert sent == [] and records == [] and logs.refused == 1


def test_the_hub_takes_lines_only_from_the_node_it_asked() -> None:
    async def go() -> list[str]:
        hub_sent: list[tuple[str, bytes]] = []

        async def publish(subject: str, data: bytes) -> None:
            hub_sent.append((subject, data))

        hub = RemoteLogs(
            fleet="f",
            site="hq",
            node_id="hub",
            sovereign=False,
            identity=HUB,
            trust=TRUST,  # type: ignore[arg-type]
            publish=publish,
            clock=lambda: NOW,
            log=logging.getLogger("t"),
        )
        wire = request()
        req_id = json.loads(protocol.decode(wire).payload)["id"]  # type: ignore[union-attr]

        def lines(who: keys.Identity, body: dict[str, Any]) -> LogLinesMsg:
            part = protocol.signed_blob_part(
                Kind.LOG_LINES, who.name, NOW, json.dumps({"id": req_id, **body}).encode()
            )
            msg = protocol.decode(part + who.sign(protocol.signing_bytes(part)))
            assert isinstance(msg, LogLinesMsg)
            return msg

        got: list[str] = []

        async def reader() -> None:
            async for line in hub.request(wire, "lab"):
                got.append(line)

        task = asyncio.create_task(reader())
        await asyncio.sleep(0)
        assert hub_sent and hub_sent[0][0] == "nr.f.in.lab.n1"
        hub.lines(lines(TECH, {"lines": ["forged"], "end": True}))
        hub.lines(lines(NODE, {"lines": ["real"], "end": True}))
        await asyncio.wait_for(task, 5)
        return got

    assert asyncio.run(go()) == ["real"]
