"""Plots of ``bench/results.json`` as SVG files in ``bench/plots/`` (for the benchmarks page).

    .venv/bin/python bench/plots.py      # redraw them from bench/results.json

``bench/run.py`` calls ``write_plots`` after every run, so the plots always show the
results beside them. The SVG files are written without a date and with fixed element
ids, so redrawing unchanged results changes no byte.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from matplotlib import rc_context
from matplotlib.axes import Axes
from matplotlib.figure import Figure

HERE = Path(__file__).resolve().parent
FOLDER = HERE / "plots"
#: Colours that stay apart for the colour-blind (Okabe-Ito).
COLOURS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7")


def saves(results: Mapping[str, Any]) -> Figure:
    """Saves per second, ours beside the raw store's write, per backend and record size."""
    figure = Figure(figsize=(9, 3.6))
    axes = figure.subplots(1, 2, sharey=True)
    backends = results["backends"]
    for ax, size in zip(axes, ("1KB", "100KB"), strict=True):
        names = [name for name in backends if size in backends[name]["save"]["by_size"]]
        by_size = [backends[name]["save"]["by_size"][size] for name in names]
        _bars(
            ax,
            names,
            {
                "sessionlocker save": [row["ours_per_s"] for row in by_size],
                "raw write": [row["raw_per_s"] for row in by_size],
            },
        )
        ax.set_title(f"{size} record")
        ax.set_yscale("log")
    axes[0].set_ylabel("per second (log scale)")
    axes[0].legend(loc="upper right", fontsize="small")
    figure.suptitle("Saves per second, one process, one record")
    return figure


def handoffs(results: Mapping[str, Any]) -> Figure:
    """Handoff times between two processes (p50 and p99), polling and notified."""
    backends = results["backends"]
    series: dict[str, list[float]] = {}
    for kind, label in (("handoff_polling_ms", "polling"), ("handoff_notified_ms", "notified")):
        for quantile in ("p50", "p99"):
            series[f"{label} {quantile}"] = [
                _get(backends[name], kind, quantile) for name in backends
            ]
    figure = Figure(figsize=(9, 4))
    ax = figure.subplots()
    _bars(ax, list(backends), series)
    ax.set_yscale("log")
    ax.set_ylabel("milliseconds (log scale)")
    ax.set_title("Handoff to a waiting process (force load); SQLite does not notify")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), fontsize="small", ncols=4)
    return figure


def baselines(results: Mapping[str, Any]) -> Figure:
    """Handoff and takeover times beside the Roblox libraries (simulated, default settings)."""
    systems = results["baselines"]["systems"]
    names = list(systems)
    series = {
        label: [_get(systems[name], kind, "p50") for name in names]
        for kind, label in (
            ("handoff_s", "handoff from a live holder"),
            ("takeover_force_s", "takeover of a crashed holder, force"),
            ("takeover_wait_s", "takeover of a crashed holder, waiting only"),
        )
    }
    figure = Figure(figsize=(9, 4.2))
    ax = figure.subplots()
    _bars(ax, [name.replace("_", "\n") for name in names], series)
    ax.set_yscale("log")
    ax.set_ylabel("seconds, p50 (log scale)")
    ax.set_title("Default settings, next to the Roblox libraries (virtual clock)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), fontsize="small", ncols=3)
    return figure


#: Every plot: its file name (in ``bench/plots/``) and how it is drawn.
PLOTS: dict[str, Callable[[Mapping[str, Any]], Figure]] = {
    "saves.svg": saves,
    "handoffs.svg": handoffs,
    "baselines.svg": baselines,
}


def write_plots(results: Mapping[str, Any], folder: Path = FOLDER) -> list[Path]:
    """Draw every plot of ``results`` into ``folder``; the paths written."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    with rc_context({"svg.hashsalt": "sessionlocker", "svg.fonttype": "none"}):
        for name, draw in PLOTS.items():
            figure = draw(results)
            figure.tight_layout()
            path = folder / name
            figure.savefig(path, format="svg", metadata={"Date": None})
            written.append(path)
    return written


def _get(backend: Mapping[str, Any], kind: str, quantile: str) -> float:
    """A measured time, or NaN (no bar) when the backend has no such measurement."""
    value = (backend.get(kind) or {}).get(quantile)
    return float("nan") if value is None else float(value)


def _bars(ax: Axes, groups: list[str], series: Mapping[str, list[float]]) -> None:
    """Grouped bars: one group per name in ``groups``, one bar per series, labelled with
    its value (a zero is drawn as a sliver, so that it shows on a log scale)."""
    width = 0.8 / len(series)
    floor = min((v for values in series.values() for v in values if v > 0), default=1) / 10
    for index, (label, values) in enumerate(series.items()):
        offsets = [group + (index - (len(series) - 1) / 2) * width for group in range(len(groups))]
        heights = [floor if value == 0 else value for value in values]
        colour = COLOURS[index % len(COLOURS)]
        bars = ax.bar(offsets, heights, width, label=label, color=colour)
        ax.bar_label(bars, labels=[_short(v) for v in values], fontsize="x-small", padding=1)
    ax.set_xticks(range(len(groups)), groups)
    ax.margins(y=0.15)
    ax.grid(axis="y", alpha=0.3)


def _short(value: float) -> str:
    """A bar's label: three significant figures, nothing for a missing value."""
    if math.isnan(value):  # not measured
        return ""
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


if __name__ == "__main__":
    for path in write_plots(json.loads((HERE / "results.json").read_text())):
        print(f"plots: wrote {path}", file=sys.stderr)
