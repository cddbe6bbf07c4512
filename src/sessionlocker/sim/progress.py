"""Live progress of a simulation: a rich status line on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TextIO

from sessionlocker.sim.run import Progress

__all__ = ["live_progress"]

#: How often plain lines are printed, in seconds.
PLAIN_EVERY = 5.0


def describe(seconds: float, counters: Mapping[str, int]) -> str:
    """One line saying how far the run is."""
    return (
        f"{seconds:5.1f} s  saves {counters.get('confirmed', 0)}  "
        f"loads {counters.get('loaded', 0)}  hops {counters.get('hop', 0)}  "
        f"granted {counters.get('granted', 0)}/{counters.get('purchases', 0)}  "
        f"crashes {counters.get('crashes', 0)}  pauses {counters.get('pauses', 0)}"
    )


@contextmanager
def live_progress(total: float, stream: TextIO | None = None) -> Iterator[Progress]:
    """A progress callback for ``simulate``: rich on a terminal when rich is installed.

    ``stream`` defaults to the standard error of the moment, so stdout stays the report.
    """
    stream = sys.stderr if stream is None else stream
    if stream.isatty():
        try:
            from rich.console import Console  # noqa: PLC0415 (optional extra: cli)
            from rich.progress import (  # noqa: PLC0415 (optional extra: cli)
                BarColumn,
                TextColumn,
            )
            from rich.progress import Progress as RichProgress  # noqa: PLC0415
        except ImportError:
            pass
        else:
            console = Console(file=stream)
            columns = (TextColumn("simulate"), BarColumn(), TextColumn("{task.description}"))
            with RichProgress(*columns, console=console, transient=True) as bar:
                task = bar.add_task("starting", total=total)

                def show(seconds: float, counters: Mapping[str, int]) -> None:
                    bar.update(task, completed=seconds, description=describe(seconds, counters))

                yield show
            return
    printed = [-PLAIN_EVERY]

    def plain(seconds: float, counters: Mapping[str, int]) -> None:
        if seconds - printed[0] >= PLAIN_EVERY:
            printed[0] = seconds
            print(f"simulate: {describe(seconds, counters)}", file=stream, flush=True)

    yield plain
