"""The rollout driver a hub runs: judge every rollout in progress and record its next steps.

Level-triggered like the reconciler: a store change or the tick (gates are timed) marks it
dirty; one pass reads the fleet and every node document fresh, runs the pure
``rollout.inputs.judge_rollout`` and writes the facts it returns in one signed update. Every
hub runs one. The facts are idempotent and only ever added (``rollout/record.py``), so two hubs
driving the same rollout write the same steps and converge; a hub that goes away leaves nothing
half done for the other to undo (docs/architecture.md, "Staged rollouts").
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from noderuntime.api.routes.rollouts import held_inputs
from noderuntime.crdt import schema
from noderuntime.crdt.state import StateStore
from noderuntime.node.watch import StoreWatch
from noderuntime.rollout.commands import complete_entries
from noderuntime.rollout.inputs import judge_rollout
from noderuntime.rollout.record import ENDED, State, progress_of, rollout_of, step_key

# Gates are judged in seconds: half a second bounds what the tick adds to a wave.
TICK_S = 0.5


class RolloutDriver(StoreWatch):
    def __init__(
        self,
        state: StateStore,
        *,
        actor: str,
        log: logging.Logger,
        clock: Callable[[], float] = time.time,
        tick_s: float = TICK_S,
    ) -> None:
        super().__init__(state, name="rollout-driver", log=log, tick_s=tick_s)
        self._actor = actor
        self._clock = clock

    async def step(self) -> bool:
        await self.drive()
        return False

    async def drive(self) -> int:
        """One pass over every rollout in progress; the number of facts written."""
        fleet = self._state.snapshot().fleet
        written = 0
        for name in sorted(fleet.rollouts):
            rollout = rollout_of(fleet, name)
            if rollout is None or progress_of(fleet, rollout.id).state() in ENDED:
                continue
            nodes, sites = held_inputs(self._state)
            _, ev = judge_rollout(
                fleet, rollout, nodes, sites, now=self._clock(), actor=self._actor
            )
            if not ev.facts:
                continue
            entries: list[tuple[str, str, Any]] = [
                (schema.ROLLOUT_STEPS, step_key(rollout.id, fact), value)
                for fact, value in sorted(ev.facts.items())
            ]
            if f"end/{State.COMPLETE.value}" in ev.facts:
                entries += complete_entries(rollout)

            def mutate(doc: Any, entries: list[tuple[str, str, Any]] = entries) -> None:
                for map_name, key, value in entries:
                    schema.put_entry(doc, map_name, key, value)

            summary = f"rollout {name}: " + ", ".join(sorted(ev.facts))
            self._log.info("%s", summary)
            await self._state.write(self._state.fleet_doc, mutate, summary=summary)
            written += len(ev.facts)
        return written
