"""The documentation site builds with ``mkdocs build --strict``: any warning fails.

Strict mode turns every warning into an error: a broken link or anchor between pages, a
page in the nav that does not exist, a page in ``docs/`` left out of the nav, an absolute
link. The other tests show that it does fail, on a copy of the site broken on purpose.
The built site needs no network: every script and stylesheet it loads is served with it
(Mermaid for the diagrams, highlight.js for the code), and the pictures are in it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import sessionlocker
from sessionlocker import LockerService

ROOT = Path(__file__).parent.parent


def html_text(text: str) -> str:
    """``text`` as it appears in a page: the first words, with the escaping MkDocs does."""
    words = " ".join(text.split()[:4])
    return words.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def build(root: Path, site: Path) -> subprocess.CompletedProcess[str]:
    """Run ``mkdocs build --strict`` on ``root/mkdocs.yml`` into ``site``."""
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)]
    return subprocess.run(
        command, check=False, cwd=root, capture_output=True, text=True, timeout=120
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site built once from this checkout, with no warning."""
    site = tmp_path_factory.mktemp("built") / "site"
    result = build(ROOT, site)
    assert result.returncode == 0, result.stderr
    assert "WARNING" not in result.stderr, result.stderr
    return site


def test_the_site_builds_without_a_warning(site: Path) -> None:
    benchmarks = (site / "benchmarks" / "index.html").read_text()
    bench_title = (ROOT / "bench" / "README.md").read_text().splitlines()[0].lstrip("# ")
    assert bench_title in benchmarks
    assert "<!-- results:start" in benchmarks  # the bench README itself, not a copy of it
    diagram = (site / "state-diagram" / "index.html").read_text()
    assert "stateDiagram-v2" in diagram


#: What a page loads from: ``<script src>`` and ``<link href>`` (stylesheets, icons).
LOADED = re.compile(r"<(?:script|link)\b[^>]*\b(?:src|href)=\"([^\"]*)\"")


def test_the_built_site_loads_nothing_from_another_host(site: Path) -> None:
    pages = sorted(site.rglob("*.html"))
    assert len(pages) > 10
    for page in pages:
        html = page.read_text()
        for target in LOADED.findall(html):
            assert not re.match(r"(https?:)?//", target), f"{page.relative_to(site)}: {target}"
            base = site if target.startswith("/") else page.parent  # 404.html: from the root
            assert (base / target.split("?")[0].lstrip("/")).resolve().is_file(), target
    for script in (site / "js").glob("*-init.js"):
        assert "http" not in script.read_text(), script.name  # no import() from a CDN
    diagram = (site / "state-diagram" / "index.html").read_text()
    assert "js/mermaid.min.js" in diagram
    handoff = (site / "handoff" / "index.html").read_text()
    assert handoff.count("sequenceDiagram") == 3
    benchmarks = (site / "benchmarks" / "index.html").read_text()
    plots = re.findall(r'<img [^>]*src="([^"]+\.svg)"', benchmarks)
    assert len(plots) == 3
    for plot in plots:
        assert (site / "benchmarks" / plot).resolve().read_text().startswith("<?xml")


def test_the_api_reference_is_generated_from_the_docstrings(site: Path) -> None:
    api = (site / "api" / "index.html").read_text()
    for name in ("LockerService", "AsyncLockerService", "EasyStore", "Spec", "open_store"):
        assert f'id="sessionlocker.{name}"' in api, name
    missing = [
        name
        for name in sessionlocker.__all__
        if f'id="sessionlocker.{name}"' not in api
        and f'id="sessionlocker.errors.{name}"' not in api
    ]
    assert missing == [], "add them to docs/api.md"
    first_line = LockerService.__doc__.strip().splitlines()[0] if LockerService.__doc__ else ""
    assert first_line
    assert html_text(first_line) in api


def copy_of_the_site(tmp_path: Path) -> Path:
    """A copy of what the build reads, to break without touching the real docs."""
    copy = tmp_path / "copy"
    shutil.copytree(ROOT / "docs", copy / "docs")
    shutil.copy(ROOT / "mkdocs.yml", copy / "mkdocs.yml")
    (copy / "bench").mkdir()
    shutil.copy(ROOT / "bench" / "README.md", copy / "bench" / "README.md")
    shutil.copytree(ROOT / "bench" / "plots", copy / "bench" / "plots")
    shutil.copytree(ROOT / "src", copy / "src")  # the API reference reads the docstrings
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
