"""Two live instances of one node id: a cloned enrolment. Pure decisions, no I/O.

An enrolment token holds the node's private key, so a token used on a second machine makes a
working clone: both sign as ``node:<id>``, both write that node's status, and nothing in the
signatures tells them apart. What does: every process start picks a random instance id (the
heartbeat's signed ``boot``) and counts its heartbeats, and heartbeats also say how long the
instance has run (``uptime``, from a monotonic clock: no wall clock is trusted for this).

**Detection.** A restart changes the instance once: the old one falls silent. Two live
instances alternate: this node hears A, B, A, B... So a node id is *cloned* once its fresh
heartbeats switched between instances ``CLONE_SWITCHES`` times within ``CLONE_WINDOW_S``,
each switch to an instance while the other was heard within the peer timeout (a heartbeat of
the old instance still in flight after a restart makes at most two switches) and signed no
earlier than the other's first heartbeat (an old instance's heartbeats replayed after a restart
are all older than the new one's first). An instance that hears heartbeats of its own node id
from another instance, signed since it started, knows (:meth:`Instances.heard_self`) after
``SELF_CONFIRM`` of them.

**The newcomer** is the instance that started later: the larger ``now - uptime``; within
``START_TIE_S`` the larger instance id, so every receiver picks the same one. Receivers refuse
the newcomer's heartbeats (``cloned``) so views keep the original's; the newcomer, hearing its
twin, suspends its own sync (it publishes nothing) until an operator decides: stop one of the
two and restart the one to keep (a restart is a new instance with no live twin). Incidents stay
listed (``live`` false once one of the two fell silent) so the alert is not missed.

**Hubs tell the twins.** Two instances of one node usually cannot hear each other: the hub's
nats-server keeps one leaf link per server name, so the twins' links take turns. A hub lists the
clones it detected in its own signed heartbeats (``clones``: node, newcomer, instances); an
instance named there learns it has a twin from the hub (:meth:`Instances.reported`). Only hubs
are believed: a plain node could otherwise silence any other by naming it.

Bounded: incidents for at most ``MAX_INCIDENTS`` node ids, each remembering the few instances
it has seen.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from noderuntime.sync.bounded import LruTable

CLONE_SWITCHES = 4
# The heartbeat key a hub announces clones under, and how many it lists.
CLONES_KEY = "clones"
MAX_ANNOUNCED = 16
CLONE_WINDOW_S = 60.0
SELF_CONFIRM = 2
START_TIE_S = 2.0
MAX_INCIDENTS = 256
MAX_INSTANCES = 8


@dataclass
class Instance:
    boot: str
    started: float  # our clock: when it started, from its uptime
    last_heard: float
    first_ts: float  # the signed time of its first heartbeat heard (its own clock)
    heard: int = 0


@dataclass
class NodeInstances:
    """What this node heard of one node id's instances."""

    node: str
    instances: dict[str, Instance] = field(default_factory=dict)
    current: str | None = None  # the instance heard last
    switches: list[float] = field(default_factory=list)
    detected_at: float | None = None
    newcomer: str | None = None

    def live(self, now: float, timeout: float) -> list[Instance]:
        return [i for i in self.instances.values() if now - i.last_heard <= timeout]

    def view(self, now: float, timeout: float) -> dict[str, Any]:
        live = {i.boot for i in self.live(now, timeout)}
        return {
            "node": self.node,
            "detected_at": self.detected_at,
            "live": len(live) > 1,
            "newcomer": self.newcomer,
            "instances": [
                {
                    "instance": i.boot,
                    "started": round(i.started, 1),
                    "last_heard": i.last_heard,
                    "live": i.boot in live,
                    "newcomer": i.boot == self.newcomer,
                }
                for i in sorted(self.instances.values(), key=lambda i: i.started)
            ],
        }


@dataclass(frozen=True)
class Verdict:
    """What a heartbeat told: whether to accept it (False: a clone's newcomer), and the
    incident if it revealed a clone just now (to log once)."""

    accept: bool
    detected: dict[str, Any] | None = None


def newcomer(a: Instance, b: Instance) -> Instance:
    """The one of two live instances that started later (see the module docstring)."""
    if abs(a.started - b.started) < START_TIE_S:
        return a if a.boot > b.boot else b
    return a if a.started > b.started else b


class Instances:
    """Instances of every node id heard from (and of our own), and the clones among them."""

    def __init__(
        self,
        node_id: str,
        boot: str,
        timeout_s: float,
        uptime: Callable[[], float],
        on_evict: Callable[[], None] | None = None,
    ) -> None:
        self.node_id = node_id
        self.boot = boot
        self.timeout_s = timeout_s
        self.uptime = uptime
        self._nodes: LruTable[str, NodeInstances] = LruTable(MAX_INCIDENTS, on_evict)

    def _entry(self, node: str) -> NodeInstances:
        entry = self._nodes.get(node)
        if entry is None:
            entry = NodeInstances(node)
        self._nodes[node] = entry  # the most recently heard is forgotten last
        return entry

    @staticmethod
    def _note(
        entry: NodeInstances, boot: str, uptime: float | None, ts: float, now: float
    ) -> Instance:
        inst = entry.instances.get(boot)
        if inst is None:
            started = now - uptime if uptime is not None else now
            inst = entry.instances[boot] = Instance(boot, started, now, ts)
            if len(entry.instances) > MAX_INSTANCES:
                oldest = min(entry.instances.values(), key=lambda i: i.last_heard)
                del entry.instances[oldest.boot]
        elif uptime is not None:
            inst.started = now - uptime  # the latest estimate: heartbeats are sent when made
        inst.last_heard = now
        inst.heard += 1
        return inst

    def heard(self, node: str, boot: str, uptime: float | None, ts: float, now: float) -> Verdict:
        """A fresh heartbeat of ``node``'s instance ``boot`` signed at ``ts``."""
        entry = self._entry(node)
        previous = entry.instances.get(entry.current) if entry.current else None
        inst = self._note(entry, boot, uptime, ts, now)
        detected = None
        if previous is not None and previous.boot != boot:
            if now - previous.last_heard <= self.timeout_s and ts >= previous.first_ts:
                entry.switches = [t for t in entry.switches if now - t <= CLONE_WINDOW_S]
                entry.switches.append(now)
            if entry.detected_at is None and len(entry.switches) >= CLONE_SWITCHES:
                entry.detected_at = now
                entry.newcomer = newcomer(previous, inst).boot
                detected = entry.view(now, self.timeout_s)
        entry.current = boot
        return Verdict(boot != entry.newcomer, detected)

    def heard_self(self, boot: str, uptime: float | None, ts: float, now: float) -> Verdict:
        """A fresh heartbeat of our own node id from instance ``boot`` (not ours), signed at
        ``ts``. ``accept`` is False once a twin is confirmed live and we are its newcomer:
        then suspend. Heartbeats signed before we started (our previous start's, or replays
        of them) are not a twin."""
        started = now - self.uptime()
        entry = self._nodes.get(self.node_id)
        if ts < started:
            return Verdict(entry is None or entry.newcomer != self.boot)
        entry = self._entry(self.node_id)
        me = entry.instances.get(self.boot)
        if me is None:
            me = entry.instances[self.boot] = Instance(self.boot, started, now, started)
        me.last_heard = now
        twin = self._note(entry, boot, uptime, ts, now)
        detected = None
        if entry.detected_at is None and twin.heard >= SELF_CONFIRM:
            entry.detected_at = now
            entry.newcomer = newcomer(me, twin).boot
            detected = entry.view(now, self.timeout_s)
        return Verdict(entry.newcomer != self.boot, detected)

    def reported(self, newcomer_boot: str, instances: list[str], now: float) -> Verdict:
        """A hub says our node id runs as ``instances`` and ``newcomer_boot`` is the newcomer.
        ``accept`` False: we are the newcomer, suspend. Reports not naming us are ignored."""
        if self.boot not in instances:
            return Verdict(True)
        entry = self._entry(self.node_id)
        detected = None
        if entry.detected_at is None:
            started = now - self.uptime()
            for boot in instances:
                if boot not in entry.instances:
                    entry.instances[boot] = Instance(boot, started, now, started)
            entry.detected_at = now
            entry.newcomer = newcomer_boot
            detected = entry.view(now, self.timeout_s)
        return Verdict(entry.newcomer != self.boot, detected)

    def announce(self, now: float) -> list[dict[str, Any]]:
        """Clones to list in a hub's heartbeat: those with both instances live."""
        out = []
        for clone in self.clones(now)[:MAX_ANNOUNCED]:
            if clone["live"] and clone["node"] != self.node_id:
                live = [i["instance"] for i in clone["instances"] if i["live"]]
                out.append(
                    {"node": clone["node"], "newcomer": clone["newcomer"], "instances": live}
                )
        return out

    def clones(self, now: float) -> list[dict[str, Any]]:
        """Every node id seen with two instances at once, newest detection first."""
        found = [e for _, e in self._nodes.items() if e.detected_at is not None]
        found.sort(key=lambda e: e.detected_at or 0.0, reverse=True)
        return [e.view(now, self.timeout_s) for e in found]
