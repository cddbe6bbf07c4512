"""The documentation site builds with ``mkdocs build --strict``: any warning fails.

Strict mode turns every warning into an error: a broken link or anchor between pages, a
page in the nav that does not exist, a page in ``docs/`` left out of the nav, an absolute
link. The other tests show that it does fail, on a copy of the site broken on purpose.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent


def build(root: Path, site: Path) -> subprocess.CompletedProcess[str]:
    """Run ``mkdocs build --strict`` on ``root/mkdocs.yml`` into ``site``."""
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)]
    return subprocess.run(
        command, check=False, cwd=root, capture_output=True, text=True, timeout=120
    )


def test_the_site_builds_without_a_warning(tmp_path: Path) -> None:
    result = build(ROOT, tmp_path / "site")
    assert result.returncode == 0, result.stderr
    assert "WARNING" not in result.stderr, result.stderr
    benchmarks = (tmp_path / "site" / "benchmarks" / "index.html").read_text()
    bench_title = (ROOT / "bench" / "README.md").read_text().splitlines()[0].lstrip("# ")
    assert bench_title in benchmarks
    assert "<!-- results:start" in benchmarks  # the bench README itself, not a copy of it
    diagram = (tmp_path / "site" / "state-diagram" / "index.html").read_text()
    assert "stateDiagram-v2" in diagram


def copy_of_the_site(tmp_path: Path) -> Path:
    """A copy of what the build reads, to break without touching the real docs."""
    copy = tmp_path / "copy"
    shutil.copytree(ROOT / "docs", copy / "docs")
    shutil.copy(ROOT / "mkdocs.yml", copy / "mkdocs.yml")
    (copy / "bench").mkdir()
    shutil.copy(ROOT / "bench" / "README.md", copy / "bench" / "README.md")
    assert build(copy, tmp_path / "good").returncode == 0
    return copy


def test_a_broken_link_fails_the_build(tmp_path: Path) -> None:
    copy = copy_of_the_site(tmp_path)
    index = copy / "docs" / "index.md"
    index.write_text(index.read_text() + "\nSee [a page that is not there](not-there.md).\n")
    result = build(copy, tmp_path / "broken")
    assert result.returncode != 0
    assert "not-there.md" in result.stderr


def test_a_page_left_out_of_the_nav_fails_the_build(tmp_path: Path) -> None:
    copy = copy_of_the_site(tmp_path)
    (copy / "docs" / "forgotten.md").write_text("# A page nobody can find\n")
    result = build(copy, tmp_path / "broken")
    assert result.returncode != 0
    assert "forgotten.md" in result.stderr
