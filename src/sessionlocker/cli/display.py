"""How the commands show progress and tables: one style for all of them.

Progress goes to stderr, counted in records. On a terminal it is a bar redrawn in
place: rich's when rich is installed (the ``cli`` extra), a plain ``[####    ]`` line
otherwise. Anywhere else (a log file, a pipe) it is a plain line ``VERB: DONE/TOTAL
records`` at each tenth of the way and at the end: at most eleven lines per run.

Tables go to stdout: a rich table on a terminal when rich is installed, otherwise
plain columns as wide as their widest cell (wide East Asian characters count as two),
so a key of any length lines up. ``--json`` output never comes through here.
"""

from __future__ import annotations

import importlib.util
import io
import shutil
import sys
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TextIO

__all__ = ["Column", "Progress", "has_rich", "table", "width"]


def has_rich() -> bool:
    """True when rich (the ``cli`` extra) can be imported."""
    return importlib.util.find_spec("rich") is not None


class Progress:
    """Progress of ``verb`` over ``total`` records: call it with the count done so far.

    ``fancy`` picks rich's bar on a terminal (default: when rich is installed). Use it
    as a context manager, or call ``close`` at the end, so the bar's line is finished.
    """

    def __init__(
        self, verb: str, total: int = 0, *, out: TextIO | None = None, fancy: bool | None = None
    ) -> None:
        self.verb = verb
        self.total = total
        self.out = sys.stderr if out is None else out
        self.tty = self.out.isatty()
        self.fancy = self.tty and (has_rich() if fancy is None else fancy)
        self.shown = -1
        self.drawn = False
        self._rich: Any = None
        self._task: Any = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __call__(self, done: int, total: int | None = None) -> None:
        """``done`` records of ``total`` (default: the total given at the start)."""
        if total is not None:
            self.total = total
        if self.fancy:
            self._draw_rich(done)
        elif self.tty:
            self._draw_plain(done)
        else:
            self._log(done)

    def close(self) -> None:
        """End the bar's line (the bar stays on screen)."""
        if self._rich is not None:
            self._rich.stop()
            self._rich = None
        elif self.drawn:
            self.out.write("\n")
            self.out.flush()
            self.drawn = False

    def _draw_rich(self, done: int) -> None:
        if self._rich is None:
            from rich.console import Console  # noqa: PLC0415 (optional: the cli extra)
            from rich.progress import (  # noqa: PLC0415
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeElapsedColumn,
            )
            from rich.progress import Progress as Bar  # noqa: PLC0415

            self._rich = Bar(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("records"),
                TimeElapsedColumn(),
                console=Console(file=self.out),
            )
            self._rich.start()
            self._task = self._rich.add_task(self.verb, total=self.total)
        self._rich.update(self._task, completed=done, total=self.total)

    def _draw_plain(self, done: int) -> None:
        step = done * 100 // max(self.total, 1)
        if step == self.shown and done != self.total:
            return
        self.shown = step
        bar = "#" * (done * 30 // max(self.total, 1))
        self.out.write(f"\r{self.verb}: [{bar:<30}] {done:,}/{self.total:,} records")
        self.out.flush()
        self.drawn = True

    def _log(self, done: int) -> None:
        tenth = done * 10 // max(self.total, 1)
        if tenth == self.shown:
            return
        self.shown = tenth
        print(f"{self.verb}: {done:,}/{self.total:,} records", file=self.out, flush=True)


@dataclass(frozen=True, kw_only=True)
class Column:
    """A table column: its title, and whether its cells are right-aligned (numbers)."""

    title: str
    right: bool = False


def table(
    columns: Sequence[Column],
    rows: Sequence[Sequence[str]],
    *,
    out: TextIO | None = None,
    fancy: bool | None = None,
) -> str:
    """The rows as a table for ``out`` (default stdout): rich's on a terminal, else plain."""
    target = sys.stdout if out is None else out
    if target.isatty() and (has_rich() if fancy is None else fancy):
        return _rich_table(columns, rows)
    return _plain_table(columns, rows)


def _plain_table(columns: Sequence[Column], rows: Sequence[Sequence[str]]) -> str:
    widths = [
        max([width(column.title), *(width(row[i]) for row in rows)])
        for i, column in enumerate(columns)
    ]
    lines = []
    for cells in [[column.title for column in columns], *rows]:
        padded = [
            _pad(cell, size, right=column.right)
            for cell, size, column in zip(cells, widths, columns, strict=True)
        ]
        lines.append("  ".join(padded).rstrip())
    return "\n".join(lines)


def _pad(cell: str, size: int, *, right: bool) -> str:
    space = " " * (size - width(cell))
    return space + cell if right else cell + space


def width(text: str) -> int:
    """How many terminal columns ``text`` takes (wide and full-width characters: two)."""
    return sum(2 if unicodedata.east_asian_width(char) in "WF" else 1 for char in text)


def _rich_table(columns: Sequence[Column], rows: Sequence[Sequence[str]]) -> str:
    from rich.console import Console  # noqa: PLC0415 (optional: the cli extra)
    from rich.table import Table  # noqa: PLC0415
    from rich.text import Text  # noqa: PLC0415 (plain text: a "[b]" in a key is no markup)

    shown = Table(box=None, header_style="bold", pad_edge=False)
    for column in columns:
        shown.add_column(column.title, justify="right" if column.right else "left")
    for row in rows:
        shown.add_row(*(Text(cell) for cell in row))
    buffer = io.StringIO()
    console = Console(
        file=buffer, force_terminal=True, width=shutil.get_terminal_size().columns, highlight=False
    )
    console.print(shown)
    return buffer.getvalue().rstrip("\n")
