"""The package as users get it: built, checked by twine, installed alone in a clean venv.

Also: every optional dependency has one plain floor, which ``./run min-deps`` installs
exactly (``tests/minimum_versions.py``) to run the backend tests on it.
"""

from __future__ import annotations

import email
import subprocess
import sys
import zipfile
from email.message import Message
from pathlib import Path

import pytest

from minimum_versions import minimum_pins, pinned

ROOT = Path(__file__).parent.parent


def run(*command: str | Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(part) for part in command],
        check=False,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sdist and the wheel, built from this checkout."""
    out = tmp_path_factory.mktemp("dist")
    built = run(sys.executable, "-m", "build", "--no-isolation", "--outdir", out, ROOT)
    assert built.returncode == 0, built.stdout + built.stderr
    return out


def wheel_of(dist: Path) -> Path:
    (wheel,) = dist.glob("sessionlocker-*.whl")
    return wheel


def metadata(wheel: Path) -> Message:
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        return email.message_from_bytes(archive.read(name))


def test_every_optional_dependency_is_pinned_to_its_floor() -> None:
    pins = minimum_pins()
    assert "redis==5.3.0" in pins
    assert "psycopg[binary]==3.2.1" in pins
    assert not [pin for pin in pins if pin.startswith(("mkdocs", "pytest", "ruff"))]
    assert pinned("rich >= 13.0.0") == "rich==13.0.0"
    for unfit in ("redis", "redis>=5,<7", "redis~=5.3"):
        with pytest.raises(ValueError, match="name>=version"):
            pinned(unfit)


def test_twine_accepts_the_sdist_and_the_wheel(dist: Path) -> None:
    files = sorted(dist.iterdir())
    assert sorted(f.suffix for f in files) == [".gz", ".whl"]
    checked = run(sys.executable, "-m", "twine", "check", "--strict", *files)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.count("PASSED") == 2


def test_the_wheel_carries_the_license_classifiers_and_urls(dist: Path) -> None:
    wheel = wheel_of(dist)
    meta = metadata(wheel)
    assert meta["License-Expression"] == "MIT"
    assert meta.get_all("License-File") == ["LICENSE"]
    classifiers = meta.get_all("Classifier") or []
    assert "Typing :: Typed" in classifiers
    assert "Programming Language :: Python :: 3.11" in classifiers
    urls = dict(url.split(", ", 1) for url in meta.get_all("Project-URL") or [])
    assert set(urls) >= {"Homepage", "Documentation", "Source", "Changelog"}
    assert meta["Description-Content-Type"] == "text/markdown"
    assert "## Install" in str(meta.get_payload())
    with zipfile.ZipFile(wheel) as archive:
        licenses = [n for n in archive.namelist() if n.endswith("/LICENSE")]
        assert licenses
        assert "sessionlocker developers" in archive.read(licenses[0]).decode()


#: Run in the clean venv: the package imports and works on memory, and a store URL whose
#: extra is missing gets one short line naming that extra.
CLEAN_VENV_CHECK = """
import sessionlocker
from sessionlocker import LockerService, Spec
from sessionlocker.stores import open_store

with LockerService("memory://", Spec("players", dict)) as service:
    with service.session("p", timeout=10) as player:
        player.data["coins"] = 1
for url in ("redis://localhost:6379/0", "postgresql://user:secret@db/game"):
    try:
        open_store(url)
    except sessionlocker.UsageError as exc:
        print(exc)
"""


def test_the_wheel_installs_alone_and_names_a_missing_extra(dist: Path, tmp_path: Path) -> None:
    venv = tmp_path / "clean"
    made = run(sys.executable, "-m", "venv", "--without-pip", venv)
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    # No index: the wheel must install with nothing but its default dependencies.
    installed = run(
        sys.executable, "-m", "pip", "--python", python, "install", "--no-index", wheel_of(dist)
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    listed = run(sys.executable, "-m", "pip", "--python", python, "list", "--format=freeze")
    assert [line.split("==")[0] for line in listed.stdout.split()] == ["sessionlocker"]

    checked = run(python, "-c", CLEAN_VENV_CHECK, cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    redis_line, postgresql_line = checked.stdout.splitlines()
    assert redis_line == (
        "redis:// needs the 'redis' extra (redis is not installed): "
        "pip install 'sessionlocker[redis]'"
    )
    assert postgresql_line.startswith("postgresql:// needs the 'postgresql' extra")
    assert postgresql_line.endswith("pip install 'sessionlocker[postgresql]'")
    assert "secret" not in postgresql_line
    assert len(postgresql_line) < 120
