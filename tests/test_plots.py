"""The benchmark plots (``bench/plots/*.svg``) show the committed ``bench/results.json``.

``bench/run.py`` redraws them after every run; these tests redraw them from the committed
results and compare the text of each plot (titles, labels, every bar's figure) with the
committed file, so results changed without their plots (or plots edited by hand) fail.
The drawing itself may differ between matplotlib versions, so only the text is compared.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType

BENCH = Path(__file__).parent.parent / "bench"


def plots_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_plots", BENCH / "plots.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def texts(svg: Path) -> list[str]:
    """Every piece of text drawn in ``svg`` (written as text, not paths: svg.fonttype none)."""
    return sorted(re.findall(r"<text\b[^>]*>([^<]*)</text>", svg.read_text()))


def test_the_committed_plots_show_the_committed_results(tmp_path: Path) -> None:
    plots = plots_module()
    results = json.loads((BENCH / "results.json").read_text())
    written = plots.write_plots(results, tmp_path)
    assert sorted(path.name for path in written) == sorted(plots.PLOTS)
    assert sorted(path.name for path in (BENCH / "plots").glob("*.svg")) == sorted(plots.PLOTS)
    for path in written:
        drawn = texts(path)
        assert drawn, path.name
        assert texts(BENCH / "plots" / path.name) == drawn, f"redraw {path.name}: bench/plots.py"
    saves = texts(tmp_path / "saves.svg")
    memory_1kb = results["backends"]["memory"]["save"]["by_size"]["1KB"]
    assert f"{memory_1kb['raw_per_s']:,.0f}" in saves


def test_redrawing_the_same_results_changes_no_byte(tmp_path: Path) -> None:
    plots = plots_module()
    results = json.loads((BENCH / "results.json").read_text())
    first = {p.name: p.read_bytes() for p in plots.write_plots(results, tmp_path / "a")}
    second = {p.name: p.read_bytes() for p in plots.write_plots(results, tmp_path / "b")}
    assert first == second


def test_the_bench_readme_shows_every_plot() -> None:
    readme = (BENCH / "README.md").read_text()
    for name in plots_module().PLOTS:
        assert f"](plots/{name})" in readme
