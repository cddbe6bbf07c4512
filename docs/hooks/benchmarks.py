"""MkDocs hook: publish ``bench/README.md`` as the site's ``benchmarks.md``.

The benchmark results have one home, ``bench/README.md``, which ``bench/run.py``
rewrites after every run. Publishing that file as it is, at build time, means the site
can never show a stale hand-made copy, and no generated copy has to be kept in sync.
MkDocs 1.6 runs hooks without any plugin to install (``hooks:`` in ``mkdocs.yml``).
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
    """Add the bench README to the site's files as ``benchmarks.md``."""
    if files.get_file_from_path(PAGE) is not None:
        raise ValueError(f"docs/{PAGE} must not exist: it is generated from bench/README.md")
    text = bench_readme(config).read_text(encoding="utf-8")
    files.append(File.generated(config, PAGE, content=text))
    return files
