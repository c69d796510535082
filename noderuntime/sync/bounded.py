"""Bounded tables for everything a peer can make this node remember.

A peer (or anyone on the bus: credential requests and unknown authors need no key) chooses the
keys of these tables, so none may grow without bound. Each holds at most ``cap`` entries; past
that the least recently set is forgotten and ``on_evict`` is called, so the engine counts what
it dropped (``sync.counters.table_evictions``). Forgetting is always safe here: the worst case
is asking again, answering again, or a repair round that brings what was forgotten.

- :class:`LruTable`: a mapping; setting a key makes it the most recent.
- :class:`RateLimit`: at most one event per key per interval. A key whose interval has passed
  carries no information, so forgetting it is not counted.
- :class:`Budget`: a token bucket shared by all keys (how much a node sends in answer to what
  peers send it, whoever they are); :class:`Buckets`: one per key, at most ``cap`` keys (a key
  whose bucket is full again carries no information, so forgetting it is not counted).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")

_NEVER = -1e18


class LruTable(Generic[K, V]):
    def __init__(self, cap: int, on_evict: Callable[[], None] | None = None) -> None:
        if cap < 1:
            raise ValueError("a bounded table holds at least one entry")
        self.cap = cap
        self.on_evict = on_evict
        self._items: OrderedDict[K, V] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __iter__(self) -> Iterator[K]:
        return iter(list(self._items))

    def get(self, key: K, default: V | None = None) -> V | None:
        return self._items.get(key, default)

    def __getitem__(self, key: K) -> V:
        return self._items[key]

    def __setitem__(self, key: K, value: V) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.cap:
            old_key, old_value = self._items.popitem(last=False)
            if self._counts(old_key, old_value) and self.on_evict is not None:
                self.on_evict()

    def pop(self, key: K, default: V | None = None) -> V | None:
        return self._items.pop(key, default)

    def items(self) -> list[tuple[K, V]]:
        return list(self._items.items())

    def _counts(self, key: K, value: V) -> bool:
        """Whether forgetting this entry loses anything (subclasses refine)."""
        return True


class _Times(LruTable[K, float]):
    def __init__(
        self,
        cap: int,
        interval_s: float,
        clock: Callable[[], float],
        on_evict: Callable[[], None] | None,
    ) -> None:
        super().__init__(cap, on_evict)
        self.interval_s = interval_s
        self.clock = clock

    def _counts(self, key: K, value: float) -> bool:
        return self.clock() - value < self.interval_s


class RateLimit(Generic[K]):
    """At most one event per key every ``interval_s``, remembering at most ``cap`` keys."""

    def __init__(
        self,
        interval_s: float,
        clock: Callable[[], float],
        *,
        cap: int,
        on_evict: Callable[[], None] | None = None,
    ) -> None:
        self.interval_s = interval_s
        self.clock = clock
        self._last: _Times[K] = _Times(cap, interval_s, clock, on_evict)

    def __len__(self) -> int:
        return len(self._last)

    def ready(self, key: K) -> bool:
        """Whether an event for ``key`` may happen now (nothing is recorded)."""
        last = self._last.get(key)
        return self.clock() - (_NEVER if last is None else last) >= self.interval_s

    def mark(self, key: K) -> None:
        """An event for ``key`` happened now."""
        self._last[key] = self.clock()

    def allow(self, key: K) -> bool:
        """:meth:`ready`, and if so :meth:`mark`."""
        if not self.ready(key):
            return False
        self.mark(key)
        return True


class Budget:
    """A token bucket: ``rate_per_s`` tokens a second, at most ``burst`` saved up."""

    def __init__(self, rate_per_s: float, burst: float, clock: Callable[[], float]) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.clock = clock
        self._tokens = burst
        self._at = clock()

    def take(self, n: float = 1.0) -> bool:
        """Spend ``n`` tokens if there are that many; False (nothing spent) otherwise."""
        now = self.clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate_per_s)
        self._at = now
        if self._tokens < n:
            return False
        self._tokens -= n
        return True

    def available(self) -> int:
        now = self.clock()
        return int(min(self.burst, self._tokens + (now - self._at) * self.rate_per_s))


class _Buckets(LruTable[K, tuple[float, float]]):
    def __init__(self, owner: Buckets[K], on_evict: Callable[[], None] | None) -> None:
        super().__init__(owner.cap, on_evict)
        self.owner = owner

    def _counts(self, key: K, value: tuple[float, float]) -> bool:
        return self.owner.tokens(value) < self.owner.burst


class Buckets(Generic[K]):
    """A token bucket per key: ``rate_per_s`` a second, ``burst`` saved up, ``cap`` keys."""

    def __init__(
        self,
        rate_per_s: float,
        burst: float,
        clock: Callable[[], float],
        *,
        cap: int,
        on_evict: Callable[[], None] | None = None,
    ) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.clock = clock
        self.cap = cap
        self._buckets: _Buckets[K] = _Buckets(self, on_evict)

    def __len__(self) -> int:
        return len(self._buckets)

    def tokens(self, bucket: tuple[float, float]) -> float:
        tokens, at = bucket
        return min(self.burst, tokens + (self.clock() - at) * self.rate_per_s)

    def take(self, key: K) -> bool:
        """Spend one of ``key``'s tokens if it has one; False (nothing spent) otherwise."""
        bucket = self._buckets.get(key)
        tokens = self.burst if bucket is None else self.tokens(bucket)
        if tokens < 1:
            return False
        self._buckets[key] = (tokens - 1, self.clock())
        return True
