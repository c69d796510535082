"""Issue 11 §3: the lease state machine, with the clock as a value (no sleeps)."""

from __future__ import annotations

import pytest

from noderuntime.errors import ConfigError
from noderuntime.site.lease import (
    Held,
    LeaseTiming,
    LeaseValue,
    decode_lease,
    fence_at,
    holds,
    observe,
    renew_due,
    take_at,
)

T = LeaseTiming()


def test_default_timing_tolerates_a_measured_kv_election() -> None:
    # A 3-node R3 KV stops writes for 4-6 s when its leader dies (ENVIRONMENT.md).
    assert T.outage_tolerated_s > 5.0
    assert T.renew_every_s * 3 <= T.outage_tolerated_s


@pytest.mark.parametrize(
    "kwargs",
    [
        {"renew_every_s": 6.0},
        {"margin_s": 0.5, "stop_grace_s": 1},
        {"takeover_delay_s": -1.0},
    ],
)
def test_inconsistent_timings_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        LeaseTiming(**kwargs)  # type: ignore[arg-type]


def test_the_holder_fences_itself_before_anyone_may_take_over() -> None:
    # The holder sent its last good renewal at 100.0; the taker saw that write at 100.001 or
    # later (it cannot see it before it was sent), on a clock that runs at the same rate.
    held = Held(revision=7, last_good_send=100.0, acquired_at=90.0, acquired_wall=0.0)
    seen = observe(None, 7, "holder", 100.001)
    stop_by = fence_at(held, T) + T.stop_grace_s
    assert stop_by < take_at(seen, 0, T)
    assert take_at(seen, 0, T) - stop_by >= T.margin_s - T.stop_grace_s + T.takeover_delay_s


def test_holding_ends_at_the_fence_whatever_happens_to_renewals() -> None:
    held = Held(revision=7, last_good_send=100.0, acquired_at=90.0, acquired_wall=0.0)
    assert holds(held, 100.0 + T.ttl_s - T.margin_s - 0.01, T)
    assert not holds(held, 100.0 + T.ttl_s - T.margin_s, T)
    assert not holds(None, 0.0, T)
    assert renew_due(held, T) == 100.0 + T.renew_every_s


def test_expiry_by_the_bucket_does_not_speed_up_a_takeover() -> None:
    seen = observe(None, 7, "holder", 50.0)
    # The entry vanished (max age; maybe a server clock stepped forward): no change for us.
    assert observe(seen, None, None, 53.0) is seen
    assert take_at(observe(seen, None, None, 53.0), 0, T) == 50.0 + T.ttl_s + T.takeover_delay_s


def test_each_write_restarts_the_takers_clock() -> None:
    seen = observe(None, 7, "holder", 50.0)
    assert observe(seen, 7, "holder", 52.0) is seen
    renewed = observe(seen, 9, "holder", 52.0)
    assert renewed.seen_at == 52.0
    assert take_at(renewed, 0, T) == 52.0 + T.ttl_s + T.takeover_delay_s


def test_a_release_frees_the_slot_at_once_and_ranks_queue_up() -> None:
    seen = observe(observe(None, 7, "holder", 50.0), 8, None, 51.0, deleted=True)
    assert seen.released
    assert take_at(seen, 0, T) == 51.0
    assert take_at(seen, 2, T) == 51.0 + 2 * T.rank_step_s


def test_a_node_that_just_started_waits_a_full_ttl_before_taking_an_empty_slot() -> None:
    # Cold start of a whole site: the old holder may still be fencing on a clock we never saw.
    seen = observe(None, None, None, 10.0)
    assert take_at(seen, 0, T) == 10.0 + T.ttl_s + T.takeover_delay_s


def test_lease_values_round_trip() -> None:
    v = LeaseValue("n1", "grid", 0, 1_700_000_000.5)
    assert decode_lease(v.encode()) == (v, None)


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        (None, "empty"),
        (b"\xff\xfe", "not JSON"),
        (b"{", "not JSON"),
        (b"[]", "unknown lease format"),
        (b'{"v":2,"holder":"n1"}', "unknown lease format"),
        (b'{"v":1,"holder":"","workload":"g","slot":0,"since":1}', "wrong type"),
        (b'{"v":1,"holder":"n","workload":"g","slot":true,"since":1}', "wrong type"),
        (b"x" * 10_000, "bytes"),
    ],
)
def test_corrupt_or_foreign_values_are_a_problem_not_an_exception(
    raw: bytes | None, needle: str
) -> None:
    value, problem = decode_lease(raw)
    assert value is None
    assert problem is not None and needle in problem
