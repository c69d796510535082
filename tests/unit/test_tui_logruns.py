"""Crash-loop logs: each line's time, a divider per container start with the exit code."""

from __future__ import annotations

from tui.logruns import RunDivider, run_starts, split_timestamp

T0 = 1_790_000_000.0  # 2026-09-21T14:13:20Z


def stamp(offset: float, text: str) -> str:
    import time

    whole = int(T0 + offset)
    frac = f"{(T0 + offset) % 1:.9f}"[1:]
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + frac + "Z " + text


def test_split_timestamp_podman_forms() -> None:
    assert split_timestamp("2026-09-21T14:13:20Z hello") == (T0, "hello")
    ts, text = split_timestamp("2026-09-21T16:13:20.500000000+02:00 hi there")
    assert ts == T0 + 0.5 and text == "hi there"
    assert split_timestamp("starting") == (None, "starting")


EVENTS = [
    {"ts": T0, "kind": "created", "message": "created and started container abc (spec 1)"},
    {"ts": T0 + 10, "kind": "restarted", "message": "restarted container abc (exit code 1)"},
    {"ts": T0 + 20, "kind": "health", "message": "health is now unhealthy"},
    {"ts": T0 + 30, "kind": "restarted", "message": "restarted container abc (exit code 137)"},
]


def test_a_divider_per_start_with_the_exit_code_before_it() -> None:
    divider = RunDivider(run_starts(EVENTS))
    shown = divider.annotate(
        [stamp(0.2, "starting"), stamp(8, "crash"), stamp(10.1, "starting")]
    ) + divider.annotate([stamp(29.5, "starting")])  # written just before the start was noted
    assert shown == [
        "---- 14:13:20 container created ----",
        "14:13:20 starting",
        "14:13:28 crash",
        "---- 14:13:30 container restarted; the previous run exited with code 1 ----",
        "14:13:30 starting",
        "---- 14:13:50 container restarted; the previous run exited with code 137 ----",
        "14:13:49 starting",
    ]


def test_a_tail_that_begins_mid_history_gets_only_the_latest_start() -> None:
    divider = RunDivider(run_starts(EVENTS))
    shown = divider.annotate([stamp(31, "starting")])
    assert shown == [
        "---- 14:13:50 container restarted; the previous run exited with code 137 ----",
        "14:13:51 starting",
    ]


def test_starts_learnt_later_still_divide_later_lines() -> None:
    divider = RunDivider()
    assert divider.annotate([stamp(1, "a")]) == ["14:13:21 a"]
    divider.set_starts(run_starts(EVENTS))
    assert divider.annotate([stamp(12, "b")])[0].startswith("---- 14:13:30 container restarted")


def test_lines_without_a_time_pass_unchanged() -> None:
    assert RunDivider(run_starts(EVENTS)).annotate(["plain"]) == ["plain"]
