"""The footer keeps the view's keys in priority order and drops what does not fit."""

from __future__ import annotations

from tui.widgets.keybar import fit_keys, keys_text

KEYS = (
    ("Enter", "Describe"),
    ("l", "Logs"),
    ("/", "Filter"),
    ("r", "Restart"),
    ("s", "Stop"),
    ("?", "Help"),
    ("q", "Quit"),
)


def test_everything_fits_when_wide() -> None:
    assert fit_keys(KEYS, 200) == list(KEYS)


def test_narrow_keeps_the_first_keys_and_help() -> None:
    chosen = fit_keys(KEYS, 40)
    assert chosen[0] == ("Enter", "Describe")
    assert chosen[-1] == ("?", "Help")  # help lists what was dropped
    assert ("q", "Quit") not in chosen
    assert len(keys_text(KEYS, 40).plain) <= 40


def test_every_width_fits() -> None:
    for width in range(0, 80):
        assert len(keys_text(KEYS, width).plain) <= max(width, len("? Help"))
