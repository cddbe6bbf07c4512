"""``cli/display.py``: the one progress and table style of the commands, both ways.

Rich's (when installed, on a terminal) and the plain fallback, drawn into a text stream
that says it is a terminal. The commands using them are run in ``test_cli_friendly.py``.
"""

from __future__ import annotations

import io

from sessionlocker.cli.display import Column, Progress, table, width


class Terminal(io.StringIO):
    """A text stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_plain_bar_on_a_terminal_redraws_one_line() -> None:
    out = Terminal()
    with Progress("import", 1000, out=out, fancy=False) as progress:
        for done in range(1, 1001):
            progress(done)
    text = out.getvalue()
    assert text.count("\n") == 1  # one line, redrawn in place, ended at close
    assert text.count("\r") <= 101  # at most once per percent
    assert text.endswith(f"\rimport: [{'#' * 30}] 1,000/1,000 records\n")


def test_rich_bar_on_a_terminal() -> None:
    out = Terminal()
    with Progress("migrate", out=out, fancy=True) as progress:
        for done in range(1, 51):
            progress(done, 50)
    text = out.getvalue()
    assert "migrate" in text
    assert "50/50" in text
    assert "━" in text


def test_not_a_terminal_gets_at_most_eleven_lines() -> None:
    out = io.StringIO()
    with Progress("export", 12_345, out=out) as progress:
        for done in range(1, 12_346):
            progress(done)
    lines = out.getvalue().splitlines()
    assert len(lines) == 11
    assert lines[0] == "export: 1/12,345 records"
    assert lines[-1] == "export: 12,345/12,345 records"


COLUMNS = (Column(title="KEY"), Column(title="BYTES", right=True))


def test_plain_table_fits_any_key() -> None:
    rows = [["a", "1"], ["k" * 60, "22"], ["宝箱", "333"]]
    lines = table(COLUMNS, rows, out=io.StringIO()).splitlines()
    assert len({width(line) for line in lines}) == 1  # every line ends at the same column
    assert lines[0] == "KEY" + " " * 59 + "BYTES"
    assert lines[3] == "宝箱" + " " * 60 + "333"


def test_rich_table_on_a_terminal_shows_keys_as_text() -> None:
    rows = [["[bold]not markup[/bold]", "5"]]
    shown = table(COLUMNS, rows, out=Terminal(), fancy=True)
    assert "[bold]not markup[/bold]" in shown
    assert "KEY" in shown
