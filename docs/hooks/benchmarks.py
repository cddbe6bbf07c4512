"""MkDocs hook: publish ``bench/README.md`` as the site's ``benchmarks.md``, with its plots.

The benchmark results have one home, ``bench/README.md``, which ``bench/run.py``
rewrites after every run. Publishing that file as it is, at build time, means the site
can never show a stale hand-made copy, and no generated copy has to be kept in sync.
The plots it shows (``bench/plots/*.svg``, drawn by ``bench/plots.py``) are published
beside it as ``plots/*.svg``, so its relative image links work on the site as in the
repository. MkDocs 1.6 runs hooks without any plugin to install (``hooks:`` in
``mkdocs.yml``).
"""

from __future__ import annotations

from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files

#: Where the page appears in the site (``nav`` and links use this name).
PAGE = "benchmarks.md"


def bench_readme(config: MkDocsConfig) -> Path:
    """``bench/README.md`` beside ``mkdocs.yml``."""
    return Path(config.config_file_path).parent / "bench" / "README.md"


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Add the bench README to the site's files as ``benchmarks.md``, its plots as
    ``plots/*.svg``."""
    if files.get_file_from_path(PAGE) is not None:
        raise ValueError(f"docs/{PAGE} must not exist: it is generated from bench/README.md")
    readme = bench_readme(config)
    files.append(File.generated(config, PAGE, content=readme.read_text(encoding="utf-8")))
    for plot in sorted((readme.parent / "plots").glob("*.svg")):
        files.append(File.generated(config, f"plots/{plot.name}", content=plot.read_bytes()))
    return files
