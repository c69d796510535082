"""A virtualised view of a :class:`~tui.logbuffer.LogBuffer`: only visible lines are painted.

Built on Textual's line API (``ScrollView.render_line``), so the cost of a repaint depends on
the height of the terminal, not on how many lines the buffer holds.
"""

from __future__ import annotations

from rich.segment import Segment
from rich.style import Style
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

from tui.logbuffer import LogBuffer, match_spans

MATCH_STYLE = Style(reverse=True)
CURRENT_STYLE = Style(reverse=True, bold=True)


class LogView(ScrollView, can_focus=True):
    """Log lines with search highlighting. ``follow`` keeps the newest line in view."""

    DEFAULT_CSS = """
    LogView {
        background: $surface;
    }
    """

    def __init__(self, buffer: LogBuffer, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.buffer = buffer
        self.query_text = ""
        self.current: int | None = None  # index of the current search match
        self.follow = True

    def lines_changed(self) -> None:
        """Call after the buffer changed: resize the virtual canvas, keep following."""
        self.virtual_size = Size(max(self.buffer.max_width, 1), len(self.buffer))
        if self.follow:
            # force: the scrollbar for the new size only exists after the next layout, and
            # without it Textual refuses the scroll (the first big batch stayed at the top).
            self.scroll_end(animate=False, immediate=True, x_axis=False, force=True)
        self.refresh()

    def set_query(self, query: str) -> None:
        self.query_text = query
        self.current = None
        self.refresh()

    def go_to(self, index: int) -> None:
        """Scroll so line ``index`` is visible (centred) and mark it current."""
        self.current = index
        height = self.scrollable_content_region.height
        self.scroll_to(y=max(0, index - height // 2), animate=False, immediate=True)
        # After the scroll: landing on the bottom line must not resume following.
        self.follow = False
        self.refresh()

    # Jumps through tens of thousands of lines must be instant, not animated.
    def action_scroll_home(self) -> None:
        self.scroll_home(animate=False, immediate=True)

    def action_scroll_end(self) -> None:
        self.scroll_end(animate=False, immediate=True, x_axis=False)

    def action_page_up(self) -> None:
        self.scroll_page_up(animate=False)

    def action_page_down(self) -> None:
        self.scroll_page_down(animate=False)

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        # Scrolling up leaves follow mode; reaching the bottom again resumes it, like `less +F`.
        # A scroll clamped to a new, lower bottom (the view got taller) is still at the bottom.
        if new_value < old_value and new_value < self.max_scroll_y:
            self.follow = False
        elif new_value >= self.max_scroll_y and new_value > old_value:
            self.follow = True

    @property
    def top_line(self) -> int:
        return int(self.scroll_offset.y)

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        index = scroll_y + y
        width = self.scrollable_content_region.width
        base = self.rich_style
        if index >= len(self.buffer):
            return Strip.blank(width, base)
        line = self.buffer[index]
        spans = match_spans(line, self.query_text) if self.query_text else []
        if not spans:
            segments = [Segment(line, base)]
        else:
            hit = base + (CURRENT_STYLE if index == self.current else MATCH_STYLE)
            segments = []
            pos = 0
            for start, end in spans:
                if start > pos:
                    segments.append(Segment(line[pos:start], base))
                segments.append(Segment(line[start:end], hit))
                pos = end
            if pos < len(line):
                segments.append(Segment(line[pos:], base))
        strip = Strip(segments, len(line))
        return strip.crop_extend(scroll_x, scroll_x + width, base)
