"""The site lease bucket's replica count: every member of a site of up to five carries one."""

from __future__ import annotations

import pytest

from noderuntime.site.kv import MAX_REPLICAS, bucket_replicas


@pytest.mark.parametrize(("size", "want"), [(0, 1), (1, 1), (2, 2), (3, 3), (4, 4), (5, 5)])
def test_every_member_of_a_small_site_carries_the_bucket(size: int, want: int) -> None:
    assert bucket_replicas(size) == want


def test_larger_sites_stop_at_jetstreams_limit() -> None:
    assert bucket_replicas(9) == MAX_REPLICAS == 5


def test_a_majority_of_five_always_holds_a_majority_of_the_replicas() -> None:
    # The field defect: with 3 replicas, 2 nodes could hold 2 of them.
    from itertools import combinations

    nodes = range(5)
    replicas = set(range(bucket_replicas(5)))
    for minority in combinations(nodes, 2):
        majority = set(nodes) - set(minority)
        assert len(majority & replicas) * 2 > len(replicas)
