"""Tables that fit the terminal they print on: a table whose columns cannot all be read prints each row as a block."""

from __future__ import annotations

from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

#: The fewest terminal columns a wrapping column may get: at 2, ``profiles`` read its files as ``pr/of/il/es``.
NARROWEST_COLUMN = 8


def print_table(console: Console, table: Table, *, roomy: int = 0) -> None:
    """``table`` on ``console``; or, where its columns need more room than the terminal has (or the terminal is
    under ``roomy`` columns), each row as a block of ``header: cell`` lines: rich emptied columns, headers and
    all, at 20 to 40 columns, or printed past the terminal's edge (checker h409 F5)."""
    width = getattr(console, "found_width", console.width)  # a 30-column terminal, not the 40 rich lays out for
    if width >= roomy and _needed(console, table) <= width:
        console.print(table, width=width)
        return
    names = [str(column.header) for column in table.columns]
    for cells in zip(*(column.cells for column in table.columns), strict=True):
        lines = (Text(f"{name}: ").append(cell) for name, cell in zip(names, cells, strict=True))
        console.print(*lines, sep="\n")
        console.print()


def _needed(console: Console, table: Table) -> int:
    """Terminal columns ``table`` needs to be read: a column that may not wrap, its widest cell; any other, its
    widest cell up to its header's width or NARROWEST_COLUMN; each at least its ``min_width``; then its rules."""
    total = 3 * len(table.columns) + 1  # a rule and a space either side of each cell
    for column in table.columns:
        widest = max(console.measure(cell).maximum for cell in [column.header, *column.cells])
        wrapped = min(widest, max(cell_len(str(column.header)), NARROWEST_COLUMN))
        total += max(widest if column.no_wrap else wrapped, column.min_width or 0)
    return total
