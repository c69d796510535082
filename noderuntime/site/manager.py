"""The site lease manager: campaigns for the slots this node should hold, renews, releases.

An async component (``async with SiteManager(...)``) like the others in ``node/daemon.py``. It is
the reconciler's ``PlacementSource``: the reconciler says what it wants and what runs here, the
manager answers which slots are held *now* (``site/lease.py`` fencing applied at every call) and
triggers a pass whenever that set changes, including at each fence deadline.

Presence: every node puts ``node.<id>`` (labels, Podman health, witness) each renewal period; a
node whose record has not changed for a TTL on our clock is down. ``cordon.<id>`` marks a node
drained by a technician. Leases are ``<workload>.<slot>`` (``site/placement.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from noderuntime.aio import raise_if_cancelled
from noderuntime.errors import HandoffRefusedError, LeaseConflictError, SiteError
from noderuntime.reconcile.placement import PlacementWant, SlotHolder, SlotInfo
from noderuntime.site import lease as L
from noderuntime.site.kv import Entry, LeaseStore
from noderuntime.site.placement import (
    Candidate,
    campaign_rank,
    eligible,
    leader_handoff,
    parse_slot_key,
    slot_key,
)

TICK_S = 0.5
ADOPT_TIMEOUT_S = 3.0
PRESENCE_PREFIX = "node."
CORDON_PREFIX = "cordon."
# While holding and leading the lease stream with nobody to hand it to, look again this often
# (a replica catches up within a round or two)...
HANDOFF_RETRY_S = 1.0
# ...but ask for a transfer at most this often, whatever elections are announced meanwhile:
# each transfer is an election, and a stream kept electing serves no renewal at all.
HANDOFF_EVERY_S = 10.0


@dataclass(frozen=True)
class LeaseRow:
    """One row of ``site status``'s lease table."""

    key: str
    workload: str
    slot: int
    holder: str | None
    revision: int | None
    age_s: float
    mine: bool
    problem: str | None


class SiteManager:
    def __init__(
        self,
        *,
        node_id: str,
        labels: Mapping[str, str],
        store: LeaseStore,
        on_change: Callable[[], None],
        witness: bool = False,
        alone: bool = False,
        timing: L.LeaseTiming | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        log: logging.Logger | None = None,
        run_loop: bool = True,
    ) -> None:
        """``alone``: a site of one node; nobody else can hold, so nothing waits for a TTL."""
        self.node_id = node_id
        self._labels = dict(labels)
        self._store = store
        self._on_change = on_change
        self._witness = witness
        self._alone = alone
        self.timing = timing or L.LeaseTiming()
        self._clock = clock
        self._wall = wall
        self._log = log or logging.getLogger(__name__)
        self._run_loop = run_loop
        self._wanted: dict[str, PlacementWant] = {}
        # Until the reconciler has said what it wants, renew what we hold and decide nothing.
        self._informed = False
        self._running: frozenset[str] = frozenset()
        self._runtime_ok = True
        self._held: dict[str, L.Held] = {}
        self._alone_since: dict[str, float] = {}
        self._current: dict[str, int | None] = {}
        self._releasing: set[str] = set()
        self._seen: dict[str, L.Observed] = {}
        self._presence: dict[str, tuple[L.Observed, dict[str, Any]]] = {}
        self._cordoned: set[str] = set()
        self._last_presence = -1e18
        self._handoff_look_at = -1e18
        self._handoff_request_at = -1e18
        self.handoffs = 0
        self.elections = 0  # leader elections of the lease stream announced to us
        self._published: frozenset[tuple[str, int]] = frozenset()
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self.problem: str | None = None  # why the store cannot be used now
        self.renewals = 0
        self.store_errors = 0

    # --- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> SiteManager:
        # Before the reconciler's first pass: a daemon restarted while it held a slot keeps
        # it (and its running instance) if a CAS at the lease's revision still succeeds.
        self._store.watch_leadership(self._leader_elected)
        with contextlib.suppress(SiteError, TimeoutError):
            async with asyncio.timeout(ADOPT_TIMEOUT_S):
                await self.adopt()
        self._publish()
        if self._run_loop:
            self._task = asyncio.create_task(self._loop(), name="site-manager")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        while True:
            try:
                # A tick that hangs must not stop the wake-ups at fence deadlines below.
                async with asyncio.timeout(self.timing.renew_every_s * 2):
                    await self.tick()
            except TimeoutError:
                self.store_errors += 1
                if self.problem is None:
                    self._log.warning("site leases: a round took too long; retrying")
                self.problem = "the lease store did not answer in time"
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug here must not take the node down: log, keep fencing
                self._log.exception("site manager tick failed")
            raise_if_cancelled()
            wait = TICK_S
            now = self._clock()
            for held in self._held.values():
                wait = min(wait, max(0.01, L.fence_at(held, self.timing) - now))
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake.wait()
            self._publish()

    # --- PlacementSource ---------------------------------------------------------------------

    def update(
        self, wanted: Mapping[str, PlacementWant], running: frozenset[str], runtime_ok: bool
    ) -> None:
        changed = dict(wanted) != self._wanted or running != self._running
        self._wanted = dict(wanted)
        self._informed = True
        self._running = running
        self._runtime_ok = runtime_ok
        if changed:
            self._wake.set()

    def held_slots(self) -> Mapping[str, SlotInfo]:
        now = self._clock()
        out: dict[str, SlotInfo] = {}
        if self._alone and not self._witness and not self.cordoned:
            # Nobody else can hold: answer at once, so a restart never stops an instance.
            for workload in self._wanted:
                since = self._alone_since.setdefault(workload, self._wall())
                out[workload] = SlotInfo(0, since)
            return out
        for key, held in self._held.items():
            workload, _, slot = key.rpartition(".")
            if key in self._releasing or not self._holds(held, now):
                continue
            out[workload] = SlotInfo(int(slot), held.acquired_wall)
        return out

    def slots_of(self, workload: str) -> list[SlotHolder]:
        want = self._wanted.get(workload)
        out: list[SlotHolder] = []
        for slot in range(want.replicas if want else 0):
            key = slot_key(workload, slot)
            held = self._held.get(key)
            if held is not None and self._holds(held, self._clock()):
                out.append(SlotHolder(slot, self.node_id, held.acquired_wall))
                continue
            obs = self._seen.get(key)
            holder = obs.holder if obs is not None and not obs.released else None
            out.append(SlotHolder(slot, holder, None))
        return out

    # --- status ------------------------------------------------------------------------------

    def lease_table(self) -> list[LeaseRow]:
        now = self._clock()
        rows = []
        for key, obs in sorted(self._seen.items()):
            workload, _, slot = key.rpartition(".")
            rows.append(
                LeaseRow(
                    key=key,
                    workload=workload,
                    slot=int(slot),
                    holder=None if obs.released else obs.holder,
                    revision=obs.revision,
                    age_s=round(now - obs.seen_at, 1),
                    mine=key in self._held and self._holds(self._held[key], now),
                    problem=obs.problem,
                )
            )
        return rows

    def members(self) -> dict[str, dict[str, Any]]:
        now = self._clock()
        return {
            node: {
                **info,
                "up": node == self.node_id or now - obs.seen_at < self.timing.ttl_s,
                "cordoned": node in self._cordoned,
            }
            for node, (obs, info) in sorted(self._presence.items())
        }

    @property
    def store(self) -> LeaseStore:
        return self._store

    @property
    def alone(self) -> bool:
        return self._alone

    def wake(self) -> None:
        """Run a round now (a technician drained or uncordoned a node)."""
        self._last_presence = -1e18
        self._wake.set()

    @property
    def cordoned(self) -> bool:
        return self.node_id in self._cordoned

    # --- one step ----------------------------------------------------------------------------

    def _holds(self, held: L.Held, now: float) -> bool:
        return self._alone or L.holds(held, now, self.timing)

    async def adopt(self) -> None:
        """Take back the leases that name this node (found by listing the bucket)."""
        for key in await self._store.keys():
            if parse_slot_key(key) is not None:
                await self._read(key)

    async def tick(self) -> None:
        """Presence, then every wanted slot: renew, release or campaign. Never raises SiteError."""
        try:
            now = self._clock()
            if now - self._last_presence >= self.timing.renew_every_s:
                await self._presence_round(now)
            for workload in sorted(set(self._wanted) | {k.rpartition(".")[0] for k in self._held}):
                await self._workload(workload)
            await self._keep_leader_off_holders()
            self.problem = None
        except SiteError as exc:
            self.store_errors += 1
            if self.problem != str(exc):
                self._log.warning("site leases: %s", exc)
            self.problem = str(exc)
        self._publish()

    def _publish(self) -> None:
        current = frozenset((w, s.slot) for w, s in self.held_slots().items())
        if current != self._published:
            self._published = current
            self._on_change()

    async def _presence_round(self, now: float) -> None:
        info = {
            "labels": self._labels,
            "runtimeOk": self._runtime_ok,
            "witness": self._witness,
            "since": self._wall(),
        }
        await self._store.put(PRESENCE_PREFIX + self.node_id, json.dumps(info).encode())
        self._last_presence = now
        keys = await self._store.keys()
        cordoned = set()
        for key in keys:
            if key.startswith(CORDON_PREFIX):
                cordoned.add(key[len(CORDON_PREFIX) :])
            elif key.startswith(PRESENCE_PREFIX):
                entry = await self._store.read(key)
                node = key[len(PRESENCE_PREFIX) :]
                prev = self._presence.get(node)
                obs = L.observe(prev[0] if prev else None, entry.revision, node, self._clock())
                self._presence[node] = (obs, _presence_info(entry.value))
        self._cordoned = cordoned

    def _leader_elected(self) -> None:
        # An election can put the stream's leadership back on a holder (a heal forces one):
        # look at once, not at the next presence round, since a power loss in that window
        # costs a whole election on top of the lease's TTL.
        self.elections += 1
        self._handoff_look_at = -1e18
        self._wake.set()

    async def _keep_leader_off_holders(self) -> None:
        """Hand the lease stream's leadership to a replica that holds nothing (placement.py).

        Checked every tick, but it costs a request only while this node holds a slot and was
        last seen leading the stream: the listing (or an advisory, which is only a hint) said so,
        and a fresh listing confirms it and says which replicas are caught up.
        """
        rep = self._store.replication()
        now = self._clock()
        if rep is None or rep.leader != self.node_id or not self._held:
            return
        if now < max(self._handoff_look_at, self._handoff_request_at):
            return
        self._handoff_look_at = now + HANDOFF_RETRY_S
        await self._store.keys()
        rep = self._store.replication()
        if rep is None:
            return
        holders = {
            obs.holder
            for key, obs in self._seen.items()
            if obs.holder and not obs.released and parse_slot_key(key) is not None
        }
        if self._held:
            holders.add(self.node_id)
        to = leader_handoff(self.node_id, rep.leader, rep.current, holders, rep.lagging)
        if to is None:
            return
        self._handoff_request_at = now + HANDOFF_EVERY_S
        try:
            await self._store.hand_leadership(to)
        except HandoffRefusedError as exc:
            # Answered with an error (JetStream busy right after an election): nothing moved,
            # so no election to wait out; look again in a second, not in ten (bench run 12).
            self._handoff_request_at = now + HANDOFF_RETRY_S
            self._log.info("site leases: could not hand the lease stream to %s: %s", to, exc)
            return
        except SiteError as exc:
            self._log.info("site leases: could not hand the lease stream to %s: %s", to, exc)
            return
        self.handoffs += 1
        self._log.info("site leases: handed the lease stream to %s (this node holds a slot)", to)

    def _candidates(self) -> list[Candidate]:
        now = self._clock()
        out = []
        for node, (obs, info) in self._presence.items():
            labels = info.get("labels")
            out.append(
                Candidate(
                    node_id=node,
                    labels=labels if isinstance(labels, dict) else {},
                    up=node == self.node_id or now - obs.seen_at < self.timing.ttl_s,
                    runtime_ok=info.get("runtimeOk") is True,
                    cordoned=node in self._cordoned,
                    witness=info.get("witness") is not False,
                )
            )
        if self.node_id not in self._presence:
            out.append(Candidate(self.node_id, self._labels, witness=self._witness))
        return out

    async def _workload(self, workload: str) -> None:
        want = self._wanted.get(workload)
        replicas = want.replicas if want else 0
        keys = [slot_key(workload, s) for s in range(replicas)]
        for key in [k for k in self._held if k.rpartition(".")[0] == workload]:
            if key not in keys:
                keys.append(key)  # a slot beyond the replicas now wanted: release it
        for key in keys:
            await self._read(key)
        holders = {}
        for key in keys:
            obs = self._seen.get(key)
            slot = int(key.rpartition(".")[2])
            if key in self._held:
                holders[slot] = self.node_id
            elif obs is not None and obs.holder is not None and not obs.released:
                holders[slot] = obs.holder
        mine = [k for k in keys if k in self._held]
        if not self._informed:
            for key in mine:
                await self._renew(key)
            return
        for key in mine:
            slot = int(key.rpartition(".")[2])
            stay = (
                want is not None
                and slot < replicas
                and not self.cordoned
                and not self._witness
                and key == mine[0]  # one slot per node: keep the first, give back the rest
            )
            await (self._renew(key) if stay else self._release(key, workload))
        if want is None or mine or self.cordoned or self._witness or not self._runtime_ok:
            return
        nodes = eligible(self._candidates(), want.selector)
        for slot in range(replicas):
            key = slot_key(workload, slot)
            rank = campaign_rank(workload, slot, self.node_id, nodes, holders)
            if rank is None or holders.get(slot) == self.node_id:
                continue
            obs = self._seen[key]
            due = self._alone or self._clock() >= L.take_at(obs, rank, self.timing)
            if due and await self._take(key, workload, slot, obs):
                return

    async def _read(self, key: str) -> Entry:
        entry = await self._store.read(key)
        # What the key holds right now (None: nothing live): what a take must compare against.
        # An entry that expired keeps the takeover clock of its last write (lease.observe).
        self._current[key] = None if entry.deleted else entry.revision
        value, problem = L.decode_lease(entry.value) if entry.value is not None else (None, None)
        holder = value.holder if value is not None else ("?" if problem else None)
        self._seen[key] = L.observe(
            self._seen.get(key),
            entry.revision,
            holder,
            self._clock(),
            deleted=entry.deleted,
            problem=problem,
        )
        if entry.deleted or entry.revision is None:
            return entry
        held = self._held.get(key)
        if held is None and value is not None and value.holder == self.node_id:
            # Ours from before a daemon restart: a CAS at its revision proves nobody took it.
            await self._renew_from(key, entry.revision, acquired_wall=value.since)
        elif (
            held is not None
            and entry.revision != held.revision
            and (value is None or value.holder != self.node_id)
        ):
            self._lost(key, "taken by " + (value.holder if value else "an unreadable entry"))
        return entry

    async def _renew(self, key: str) -> None:
        held = self._held[key]
        if self._clock() < L.renew_due(held, self.timing):
            return
        await self._renew_from(key, held.revision, acquired_wall=held.acquired_wall)

    async def _renew_from(self, key: str, revision: int, *, acquired_wall: float) -> None:
        workload, _, slot = key.rpartition(".")
        value = L.LeaseValue(self.node_id, workload, int(slot), acquired_wall).encode()
        sent = self._clock()
        try:
            rev = await self._store.update(key, value, revision)
        except LeaseConflictError:
            self._lost(key, "renewal refused: someone else wrote the lease")
            return
        except SiteError as exc:
            self.store_errors += 1
            self._log.info(
                "renewing %s failed (fence in %.1f s): %s", key, self._fence_in(key), exc
            )
            return
        old = self._held.get(key)
        self._held[key] = L.Held(rev, sent, old.acquired_at if old else sent, acquired_wall)
        self._seen[key] = L.observe(self._seen.get(key), rev, self.node_id, sent)
        self.renewals += 1

    def _fence_in(self, key: str) -> float:
        held = self._held.get(key)
        return L.fence_at(held, self.timing) - self._clock() if held else 0.0

    async def _take(self, key: str, workload: str, slot: int, obs: L.Observed) -> bool:
        value = L.LeaseValue(self.node_id, workload, slot, self._wall()).encode()
        sent = self._clock()
        try:
            current = self._current.get(key)
            if current is None:
                rev = await self._store.create(key, value)
            else:
                rev = await self._store.update(key, value, current)
        except LeaseConflictError:
            return False
        self._held[key] = L.Held(rev, sent, sent, self._wall())
        self._seen[key] = L.observe(obs, rev, self.node_id, sent)
        self._log.info("took slot %s (revision %d)", key, rev)
        return True

    async def _release(self, key: str, workload: str) -> None:
        """Give a slot back: stop the instance first (the reconciler sees it gone), then delete."""
        self._releasing.add(key)
        if workload in self._running:
            self._wake.set()
            # Keep renewing until the instance is down, so nobody starts a second one early.
            return await self._renew(key)
        held = self._held.pop(key)
        self._releasing.discard(key)
        with contextlib.suppress(LeaseConflictError):
            await self._store.delete(key, held.revision)
        self._log.info("released slot %s", key)

    def _lost(self, key: str, why: str) -> None:
        if self._held.pop(key, None) is not None:
            self._log.warning("lost slot %s: %s", key, why)
        self._releasing.discard(key)


def _presence_info(raw: bytes | None) -> dict[str, Any]:
    if raw is None or len(raw) > L.MAX_LEASE_VALUE_BYTES * 8:
        return {}
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}
