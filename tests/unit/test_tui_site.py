"""Issue 11 in the console: the overview says when the site lost quorum; the detail view says
who holds a placed workload's instance."""

from __future__ import annotations

from tui.model import placement_text, site_summary
from tui.screens.detail import summary_text
from tui.screens.overview import health_panel

CLUSTER = {
    "mode": "cluster",
    "quorum": True,
    "meta_leader": "n2",
    "members": {"n1": {"up": True}, "n2": {"up": True}, "n3": {"up": False}},
    "kv": {"healthy": True, "problem": None},
}


def test_no_site_quorum_line_without_a_site_status() -> None:
    assert site_summary(None) is None
    assert "Site" not in health_panel({}).plain


def test_a_site_with_quorum_names_its_leader_and_members() -> None:
    text, ok = site_summary(CLUSTER) or ("", False)
    assert ok and text == "quorum (leader n2); members 2/3 up"


def test_a_site_without_quorum_is_shown_in_red_with_what_it_means() -> None:
    lost = CLUSTER | {
        "quorum": False,
        "meta_leader": None,
        "kv": {"healthy": False, "problem": "timeout"},
    }
    text, ok = site_summary(lost) or ("", True)
    assert not ok
    assert text.startswith("NO QUORUM: placed workloads stand by") and "leases: timeout" in text
    line = next(s for s in health_panel({}, lost).split("\n") if s.plain.startswith("Site"))
    assert "NO QUORUM" in line.plain and any("red" in str(span.style) for span in line.spans)


def test_a_node_alone_in_its_site_places_locally() -> None:
    assert site_summary({"mode": "alone", "quorum": True}) == (
        "alone in its site: placed workloads run here",
        True,
    )


def test_the_detail_view_names_the_holder_of_each_slot() -> None:
    placement = {
        "replicas": 2,
        "slots": [
            {"slot": 0, "node": "n2", "since": None},
            {"slot": 1, "node": None, "since": None},
        ],
    }
    assert placement_text(placement, 100.0) == (
        "placement: 2 per site; slot 0 on n2; slot 1 on nobody yet"
    )
    assert placement_text(None, 100.0) is None
    view = {"name": "ctl", "phase": "Standby", "message": "held by n2", "placement": placement}
    assert "slot 0 on n2" in summary_text(view, 100.0).plain
