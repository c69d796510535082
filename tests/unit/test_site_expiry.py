"""Issue 11: a lease whose holder died is gone from the bucket once its max age passes (no
marker); the next node must still take it. Found with real daemons: the taker tried an update
at the dead holder's last revision, which JetStream refuses for a key that no longer exists, so
after a power loss nobody ever took the slot over."""

from __future__ import annotations

from tests.unit.test_site_manager import STEP, Site, T


async def test_a_lease_that_expired_from_the_bucket_is_taken_over() -> None:
    site = Site()
    for n in ("a", "b", "c"):
        site.add(n)
    await site.run(12)
    (holder,) = site.holders()
    site.alive.discard(holder)  # power loss: nobody renews
    for _ in range(round(T.ttl_s / STEP)):
        await site.run(STEP)
    site.store.expire("grid.0")  # the bucket's max age removes the entry
    await site.run(T.ttl_s + T.takeover_delay_s + 3 * T.rank_step_s + 1)
    (new,) = site.holders()
    assert new != holder
