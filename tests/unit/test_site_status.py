"""Issue 11 §5: `site status` says whether the site has quorum, from /jsz and the lease store."""

from __future__ import annotations

from typing import Any

from noderuntime.api.routes.site import site_status
from noderuntime.site.kv import MemoryLeaseStore
from noderuntime.site.manager import SiteManager

# /jsz meta_cluster as a follower of a healthy 3-member cluster reports it (measured here: a
# follower does not track the other follower, so only the leader shows as current).
FOLLOWER = {
    "leader": "n1",
    "cluster_size": 3,
    "replicas": [{"name": "n1", "current": True}, {"name": "n3", "current": False}],
}


def manager(store: MemoryLeaseStore) -> SiteManager:
    return SiteManager(node_id="n2", labels={}, store=store, on_change=lambda: None, run_loop=False)


def monitor_of(meta: dict[str, Any] | None, **jsz: Any) -> Any:
    async def monitor(path: str) -> dict[str, Any] | None:
        if meta is None:
            return None
        return {"meta_cluster": meta, **jsz} if path.startswith("/jsz") else {"routes": []}

    return monitor


async def test_a_follower_of_a_healthy_cluster_has_quorum() -> None:
    m = manager(MemoryLeaseStore())
    await m.tick()
    s = await site_status(m, monitor_of(FOLLOWER))
    assert s["quorum"] is True and s["meta_leader"] == "n1" and s["kv"]["healthy"]


async def test_no_leader_or_a_silent_lease_store_is_no_quorum() -> None:
    store = MemoryLeaseStore()
    m = manager(store)
    await m.tick()
    assert (await site_status(m, monitor_of({**FOLLOWER, "leader": ""})))["quorum"] is False
    store.available = False  # cut off: the old leader's name is still in /jsz
    m.wake()  # the next presence round is due now
    await m.tick()
    s = await site_status(m, monitor_of(FOLLOWER))
    assert s["quorum"] is False and s["kv"]["problem"]


async def test_an_unreadable_monitor_says_unknown_not_yes() -> None:
    m = manager(MemoryLeaseStore())
    assert (await site_status(m, monitor_of(None)))["quorum"] is None


async def test_a_full_jetstream_store_is_named_as_the_problem() -> None:
    store = MemoryLeaseStore()
    m = manager(store)
    await m.tick()
    room = {"storage": 1024, "config": {"max_storage": 4 * 1024 * 1024}}
    s = await site_status(m, monitor_of(FOLLOWER, **room))
    assert s["jetstream"] == {"storage_bytes": 1024, "max_storage_bytes": 4194304, "full": False}
    assert s["kv"]["healthy"]
    store.available = False  # what a full store does to every write (tests/quorum)
    m.wake()
    await m.tick()
    full = {"storage": 4194000, "config": {"max_storage": 4 * 1024 * 1024}}
    s = await site_status(m, monitor_of(FOLLOWER, **full))
    assert s["jetstream"]["full"] and s["quorum"] is False
    assert "JetStream store is full (4.0 of 4.0 MiB)" in s["kv"]["problem"]
    assert "memory store unavailable" in s["kv"]["problem"]  # the store's own error, kept
