"""Bring a DataTable up to date in place: change only the cells, rows and order that differ.

A live view redraws every couple of seconds; clearing the table and adding every row again
costs a re-measure of every cell, drops the render caches and resets the cursor and scroll
position. :func:`sync_table` instead removes the rows that vanished, adds the ones that
appeared, updates the cells that changed and reorders only if the order changed, keeping the
cursor on the same row (by key) at the same height on the screen.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.text import Text
from textual.geometry import Size
from textual.widgets import DataTable
from textual.widgets.data_table import CellType, RowKey


def same_cell(a: object, b: object) -> bool:
    """Equal as shown: rich ``Text`` equality ignores the base style, so compare it too."""
    if isinstance(a, Text) and isinstance(b, Text):
        return a.plain == b.plain and a.style == b.style and a.spans == b.spans
    if isinstance(a, Text) or isinstance(b, Text):
        return False
    return a == b


def cursor_key(table: DataTable[Any]) -> str | None:
    """Key of the row under the cursor (None for an empty table)."""
    if table.row_count == 0 or not table.is_valid_row_index(table.cursor_row):
        return None
    value = table.ordered_rows[table.cursor_row].key.value
    return None if value is None else str(value)


def scroll_to_top(table: DataTable[Any]) -> None:
    """Scroll as near the top as keeps the cursor row in view (rows one line high).

    After a filter is cleared or the terminal resized, the rows at the top (the problems,
    sorted first) must not stay hidden above a table still scrolled for the old rows.
    """
    visible = max(1, table.scrollable_content_region.height - table.header_height)
    target = max(0, table.cursor_row - visible + 1)
    if round(table.scroll_y) != target:
        table.scroll_to(y=target, animate=False, immediate=True, force=True)


def sync_table(
    table: DataTable[Any],
    rows: Sequence[tuple[str, Sequence[CellType]]],
    key_column: str,
    *,
    top: bool = False,
) -> bool:
    """Make ``table`` show ``rows`` (unique key, cells), in that order. True if anything changed.

    ``key_column`` is the key of the column whose (plain string) cell is the row's key; the
    table is sorted by it when rows appeared or moved. Rows are one line high. The row under
    the cursor stays under it, at the same height on the screen, wherever it moved to; if it
    vanished, the cursor stays at the same index (clamped to the table). ``top``: the rows
    changed because the technician asked for other rows (a filter): scroll back as near the
    top as keeps the cursor row in view, see :func:`scroll_to_top`.
    """
    order = {key: i for i, (key, _) in enumerate(rows)}
    if len(order) != len(rows):
        raise ValueError("row keys must be unique")
    selected = cursor_key(table)
    old_index = table.cursor_row
    screen_offset = old_index - round(table.scroll_y)
    vanished = [k for k in table.rows if k.value not in order]
    changed = bool(vanished)

    if len(vanished) > len(rows) // 2:
        # Most rows went (a narrowing filter): DataTable.remove_row reindexes every row, so
        # removing k of n costs k*n; refilling costs one measure per cell of what stays.
        table.clear()
        for key, cells in rows:
            table.add_row(*cells, key=key)
    else:
        for row_key in vanished:
            table.remove_row(row_key)
        columns = [c.key for c in table.ordered_columns]
        for key, cells in rows:
            row_key = RowKey(key)
            if row_key not in table.rows:
                table.add_row(*cells, key=key)
                changed = True
                continue
            for column, old, new in zip(columns, table.get_row(row_key), cells, strict=False):
                if not same_cell(old, new):
                    table.update_cell(row_key, column, new, update_width=True)
                    changed = True
        if [r.key.value for r in table.ordered_rows] != list(order):
            table.sort(key_column, key=lambda cell: order[str(cell)])
            changed = True
    if not changed:
        if top:
            scroll_to_top(table)
        return False

    if selected is not None and selected in order:
        index = order[selected]
    else:
        index = min(old_index, max(0, len(rows) - 1))
    target = max(0, index - screen_offset)
    if top:
        visible = max(1, table.scrollable_content_region.height - table.header_height)
        target = max(0, index - visible + 1)
    if index != table.cursor_row or round(table.scroll_y) != target:
        # DataTable sizes its canvas for added rows when idle; size it now so the scroll
        # lands in this frame rather than one frame later.
        height = table.header_height + len(rows)
        if table.virtual_size.height < height:
            table.virtual_size = Size(table.virtual_size.width, height)
        # force: a scrollbar the new rows need only exists after the next layout.
        table.scroll_to(y=target, animate=False, immediate=True, force=True)
        table.move_cursor(row=index, animate=False, scroll=False)
    return True
