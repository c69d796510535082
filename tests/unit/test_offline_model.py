"""The console's offline screens as pure functions: images, load progress, history."""

from __future__ import annotations

from tui.offline_model import (
    history_rows,
    image_rows,
    images_summary,
    load_progress_text,
)


def test_missing_images_come_first_and_are_counted() -> None:
    images = [
        {
            "id": "a",
            "names": ["localhost/a:1"],
            "size_bytes": 2048,
            "present": True,
            "workloads": [],
        },
        {"id": "", "names": ["localhost/b:1"], "present": False, "workloads": ["web", "db"]},
    ]
    assert [cells for _k, cells in image_rows(images)] == [
        ["localhost/b:1", "MISSING", "web, db"],
        ["localhost/a:1", "2.0 KiB", "-"],
    ]
    assert "1 image on this node; 1 MISSING, needed by db, web" in images_summary(images)


def test_load_progress_reads_for_people() -> None:
    assert load_progress_text({"phase": "loading", "sent_bytes": 512, "total_bytes": 2048}) == (
        "Loading 25%: 512 B of 2.0 KiB"
    )
    done = {"phase": "loaded", "names": ["localhost/a:1"], "workloads": ["web"]}
    assert load_progress_text(done) == "Loaded localhost/a:1. Starting now: web."


def test_history_lists_people_first_and_names_who_acted() -> None:
    history = [
        {"author": "node:n1", "on_behalf": None, "summary": "apply web", "ts": 30.0},
        {"author": "node:n1", "on_behalf": "technician:ann", "summary": "override", "ts": 10.0},
        {"author": "operator:maria", "summary": "apply db", "ts": 20.0},
    ]
    events = [
        {"ts": 40.0, "workload": "web", "kind": "restarted", "message": "restarted by root"},
        {
            "ts": 50.0,
            "workload": "",
            "kind": "image-loaded",
            "message": "loaded a (by technician:bo)",
        },
        {"ts": 60.0, "workload": "web", "kind": "crashed", "message": "exited with code 1"},
    ]
    rows = history_rows(history, events)
    assert [(r.who, r.what, r.person) for r in rows] == [
        ("technician:bo", "loaded a", True),
        ("root", "web: restarted", True),
        ("operator:maria", "apply db", True),
        ("technician:ann", "override", True),
        ("node:n1", "apply web", False),
    ]


def test_network_and_enrolment_read_for_people() -> None:
    from tui.offline_model import enrolment_lines, network_lines

    net = {
        "links": [{"name": "eth0", "state": "up", "addresses": ["10.0.0.5/24"], "mac": "aa"}],
        "gateway": None,
        "dns": [],
        "manager": None,
        "can_set": False,
        "why_not": "not managed",
    }
    assert network_lines(net) == [
        "Managed by: none (read-only here)",
        "eth0: UP  10.0.0.5/24  aa",
        "Gateway: none",
        "DNS: none",
        "Setting: not managed",
    ]
    alone = enrolment_lines({"enrolled": False, "public_key": "KEY"})
    assert "to the operator: KEY" in alone[1] and "press j" in alone[2]
    down = {
        "enrolled": True,
        "fleet_id": "f1",
        "node": "n1",
        "problem": "no TLS certificate",
        "links": [{"peer": "nats-leaf://hub:7422", "up": False, "error": "refused"}],
    }
    assert enrolment_lines(down) == [
        "Enrolled in f1 as node n1",
        "Sync is down: no TLS certificate",
        "  link nats-leaf://hub:7422: DOWN: refused",
    ]
