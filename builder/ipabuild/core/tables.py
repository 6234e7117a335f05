"""Every table the CLI prints goes through here, so that no value is ever cut.

rich's defaults suit a terminal and nothing else: off a terminal (a pipe, a CI log) it
assumes 80 columns and shortens cells with an ellipsis, so a pasted report shows host UIDs
as ``2382…``. The policy, in one place:

- off a terminal the table is printed at its natural width: every value in full, on one
  line per row, whatever the width (``--json`` stays the machine format), its title on
  one line, no line padded with blanks; so a table stays narrow only by its shape (few
  columns, or a note under it for what every row would repeat), never by cutting;
- cells are data, never rich markup: ``[test]`` in a value prints as ``[test]``;
- on a terminal it fits the terminal: cells wrap at words and a word longer than its
  column folds onto the next line; nothing is replaced by an ellipsis. Columns made with
  ``whole=`` (IDs, numbers, names) keep their values on one line as long as the other
  columns keep a few characters to wrap in; otherwise the widest of them fold too.

Printing adapts the table's columns to the console, so build a table per print.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from io import StringIO

from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderableType
from rich.measure import Measurement
from rich.table import Column, Table

# Wide enough for any table we print; the width off a terminal is measured, not this.
_UNBOUNDED = 1_000_000
# A column that may wrap is left at least this wide while others are kept whole.
_SHORTEST_WRAP = 5


def new_table(title: str, columns: Iterable[str], whole: Collection[str] = ()) -> Table:
    """A table whose ``whole`` columns hold values a reader must not see broken."""
    table = Table(title=title)
    for header in columns:
        table.add_column(header, overflow="fold", no_wrap=header in whole)
    return table


def print_table(table: Table, console: Console | None = None,
                notes: Sequence[str] = ()) -> None:
    """Print ``table`` in full on ``console`` (default: stdout), fitted to where it goes.

    ``notes`` follow the table, one plain line each: what a cell would otherwise repeat
    on every row (a long reason, numbered in the table as ``[1]``) or what a short header
    stands for. Off a terminal each note is one line, whole; on a terminal it wraps at
    words like any other printed text.
    """
    console = console or Console()
    for column in table.columns:
        column.overflow = "fold"  # never "ellipsis", whoever built the table
    if not console.is_terminal:
        _print_natural(table, console)
        console.file.write("".join(f"{note.rstrip()}\n" for note in notes))
        console.file.flush()
        return
    _keep_whole_where_room(table, console, console.width)
    console.print(table, markup=False)
    for note in notes:
        console.print(note, markup=False, highlight=False)


def _unbounded(console: Console) -> ConsoleOptions:
    """Options to measure with: no width limit, cells as plain text."""
    return console.options.update(width=_UNBOUNDED, markup=False)


def _measure(console: Console, renderable: RenderableType) -> Measurement:
    return Measurement.get(console, _unbounded(console), renderable)


def _print_natural(table: Table, console: Console) -> None:
    """Print at the table's own width, no colour, without the trailing blanks rich pads
    each line with (a centred title would otherwise paste with hundreds of them).

    The title is printed here, on one line: rich wraps a title at the table's width, so
    a title longer than its (narrow) table would break across lines. It is centred over
    the table when it is shorter, as rich does.
    """
    title, table.title = table.title, None
    try:
        width = _measure(console, table).maximum
        buffer = StringIO()
        Console(file=buffer, width=width, color_system=None,
                force_terminal=False).print(table, markup=False)
    finally:
        table.title = title
    lines = buffer.getvalue().splitlines()
    if title:
        text = str(title)
        lines.insert(0, " " * max(0, (width - cell_len(text)) // 2) + text)
    console.file.write("".join(line.rstrip() + "\n" for line in lines))
    console.file.flush()


def _column_range(console: Console, column: Column) -> Measurement:
    """Longest word (minimum) and longest line (maximum) of a column, header included."""
    ranges = [_measure(console, cell) for cell in [column.header, *column.cells]]
    return Measurement(max(r.minimum for r in ranges), max(r.maximum for r in ranges))


def _keep_whole_where_room(table: Table, console: Console, width: int) -> None:
    """Let the widest ``whole`` columns wrap until the rest of the table has room.

    rich shrinks the columns that may wrap first and only then every column evenly,
    which would cut a no-wrap value; so a column stays no-wrap only while the others
    can still be a few characters wide.
    """
    columns = table.columns
    ranges = [_column_range(console, c) for c in columns]
    chrome = _measure(console, table).maximum - sum(r.maximum for r in ranges)  # borders
    while True:
        needed = sum(r.maximum if c.no_wrap else min(r.minimum, _SHORTEST_WRAP)
                     for c, r in zip(columns, ranges, strict=True))
        whole = [(r.maximum, i) for i, (c, r) in enumerate(zip(columns, ranges, strict=True))
                 if c.no_wrap]
        if chrome + needed <= width or not whole:
            return
        columns[max(whole)[1]].no_wrap = False
