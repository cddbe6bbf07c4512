"""The typed API as a user's type checker sees it: mypy --strict over a small example.

``Spec`` is generic in its data type (inferred from ``create``), and the locker of the
blocking session, the async session's ``Profile`` and the easy ``EasyProfile`` carry it;
load modes are a ``Literal`` of the four names. Each line of the example that must draw
an error or a revealed type says so in a trailing ``# error:`` / ``# reveal:`` comment;
the test asks mypy (the one in this virtualenv) for exactly those and nothing else.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

EXAMPLE = """\
from typing import TypedDict

from sessionlocker import (
    AsyncLockerService,
    EasyStore,
    LoadedRecord,
    LockerService,
    Spec,
)


class PlayerData(TypedDict):
    coins: int
    items: list[str]


def fresh() -> PlayerData:
    return {"coins": 0, "items": []}


spec = Spec("players", fresh)
reveal_type(spec)  # reveal: sessionlocker.core.spec.Spec[TypedDict(example.PlayerData


def give(record: LoadedRecord[PlayerData]) -> None:
    record.data["coins"] += 1
    record.mark_changed()


def blocking(service: LockerService[PlayerData]) -> None:
    with service.session("p1", "force") as locker:
        reveal_type(locker.data)  # reveal: TypedDict(example.PlayerData, {'coins': int
        give(locker)
    with service.session("p1", mode="forcee"):  # error: incompatible type "Literal['forcee']"
        pass


async def handler(service: AsyncLockerService[PlayerData]) -> None:
    async with service.session("p1", timeout=5) as profile:
        reveal_type(profile.data)  # reveal: TypedDict(example.PlayerData, {'coins': int
        profile.data["coinz"] += 1  # error: TypedDict "PlayerData" has no key "coinz"
        give(profile)


def easy(store: EasyStore[PlayerData]) -> None:
    profile = store.start_session("p1", "steal")
    reveal_type(profile.data["items"])  # reveal: "list[str]"
    give(profile)


def inferred() -> None:
    service = AsyncLockerService("sqlite:///game.db", spec)
    reveal_type(service)  # reveal: AsyncLockerService[TypedDict(example.PlayerData
    reveal_type(EasyStore(service))  # reveal: EasyStore[TypedDict(example.PlayerData
"""

LINE = re.compile(r"^example\.py:(\d+): (error|note): (.*)$")


def expected(source: str) -> dict[int, tuple[str, str]]:
    """Line number -> (``error`` or ``note``, the text the message must contain)."""
    wanted = {}
    for number, line in enumerate(source.splitlines(), start=1):
        found = re.search(r"# (error|reveal): (.*)$", line)
        if found:
            kind = "error" if found[1] == "error" else "note"
            wanted[number] = (kind, found[2])
    return wanted


def test_mypy_strict_finds_exactly_the_expected_errors_and_types(tmp_path: Path) -> None:
    (tmp_path / "example.py").write_text(EXAMPLE)
    cache = Path(__file__).resolve().parent.parent / ".mypy_cache" / "typing-test"
    command = [sys.executable, "-m", "mypy", "--strict", "--python-version", "3.11"]
    quiet = ["--no-error-summary", "--hide-error-context", "--cache-dir", str(cache)]
    checked = subprocess.run(
        [*command, *quiet, "example.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert checked.returncode == 1, checked.stdout + checked.stderr  # 1: type errors found
    seen: dict[int, tuple[str, str]] = {}
    for line in checked.stdout.splitlines():
        found = LINE.match(line)
        assert found, f"unexpected mypy output: {line}"
        number = int(found[1])
        if found[2] == "note" and not found[3].startswith("Revealed type"):
            continue  # a hint after an error ("Did you mean ...?")
        assert number not in seen, f"two messages on line {number}:\n{checked.stdout}"
        seen[number] = (found[2], found[3])
    wanted = expected(EXAMPLE)
    assert sorted(seen) == sorted(wanted), checked.stdout
    for number, (kind, text) in wanted.items():
        assert seen[number][0] == kind, checked.stdout
        assert text in seen[number][1], checked.stdout
