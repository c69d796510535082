"""Leader-elected advisories for the lease bucket's stream (issue 11): a hint, parsed safely."""

from __future__ import annotations

import json

from noderuntime.site.kv import Replication, election_advisory


def test_a_leader_elected_advisory_names_the_leader_and_the_caught_up_replicas() -> None:
    # The shape nats-server sends (JSStreamLeaderElectedAdvisory), trimmed.
    data = json.dumps(
        {
            "type": "io.nats.jetstream.advisory.v1.stream_leader_elected",
            "stream": "KV_nr_site_s1",
            "leader": "n2",
            "replicas": [
                {"name": "n1", "current": True, "active": 1000},
                {"name": "n3", "current": False, "active": 9000},
            ],
        }
    ).encode()
    assert election_advisory(data) == Replication("n2", ("n1",), ("n3",))


def test_a_malformed_or_foreign_advisory_is_ignored_not_trusted() -> None:
    for data in (
        b"",
        b"\xff\xfe",
        b"[]",
        b'{"leader": 7}',
        b'{"replicas": []}',
        json.dumps({"leader": "n1", "replicas": [{"name": 3, "current": True}, "x"]}).encode(),
    ):
        got = election_advisory(data)
        assert got is None or got == Replication("n1", ())
