"""The footer: the view's important keys, in priority order, as many as the width holds.

Textual's ``Footer`` shows every binding in declaration order and squeezes them into the
width, so at 80 columns the workloads view showed ``q Q`` and at 60 ended in ``o Overri``.
A view names its keys in priority order instead; those that do not fit are dropped from the
end (``?`` lists them all).
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.widgets import Static

# (key as shown, what it does)
Keys = Sequence[tuple[str, str]]
# Shown by every view after its own keys, when they fit.
COMMON_KEYS: tuple[tuple[str, str], ...] = (("?", "Help"), ("q", "Quit"))
GAP = 2


def fit_keys(keys: Keys, width: int) -> list[tuple[str, str]]:
    """The keys to show in ``width`` columns: in the given (priority) order, dropping the
    last ones that do not fit; ``?`` (help lists the rest) is kept if anything is dropped."""
    chosen: list[tuple[str, str]] = []
    used = 0
    needs = [len(k) + 1 + len(label) for k, label in keys]
    for i, (entry, need) in enumerate(zip(keys, needs, strict=True)):
        extra = need + (GAP if chosen else 0)
        if used + extra > width:
            help_entry = next((e for e in keys[i:] if e[0] == "?"), None)
            if help_entry is not None:
                # Make room for "? Help" by dropping lower-priority keys already taken.
                need_help = len(help_entry[0]) + 1 + len(help_entry[1]) + GAP
                while chosen and used + need_help > width:
                    k, label = chosen.pop()
                    used -= len(k) + 1 + len(label) + (GAP if chosen else 0)
                if used + need_help <= width or not chosen:
                    chosen.append(help_entry)
            break
        chosen.append(entry)
        used += extra
    return chosen


def keys_text(keys: Keys, width: int) -> Text:
    text = Text(no_wrap=True, overflow="crop")
    for i, (key, label) in enumerate(fit_keys(keys, width)):
        if i:
            text.append(" " * GAP)
        text.append(key, style="bold reverse")
        text.append(f" {label}")
    return text


class KeyBar(Static):
    """One line of keys; the screen sets them with :meth:`set_keys`."""

    DEFAULT_CSS = """
    KeyBar {
        dock: bottom;
        height: 1;
        background: $panel;
    }
    """

    def __init__(self, keys: Keys = (), *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._keys: tuple[tuple[str, str], ...] = tuple(keys)
        self._width = -1

    def set_keys(self, keys: Keys) -> None:
        if tuple(keys) != self._keys:
            self._keys = tuple(keys)
            self._width = -1
            self._paint()

    def on_resize(self) -> None:
        self._paint()

    def on_mount(self) -> None:
        self._paint()

    def _paint(self) -> None:
        width = self.size.width
        if width == self._width or width <= 0:
            return
        self._width = width
        self.update(keys_text(self._keys, width), layout=False)
