"""Metadata tags (ProfileService's ``MetaTags``): the locker calls, on memory and SQLite,
and the admin commands ``show`` and ``export`` on SQLite."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from backends import Backend, fast_spec, open_backend
from sessionlocker import LockerService, Spec, UnstorableData, UsageError
from sessionlocker.cli.main import main
from sessionlocker.core.migrations import Migrations
from sessionlocker.core.record import decode
from sessionlocker.core.tags import MAX_TAGS_BYTES
from sessionlocker.stores import Store


@pytest.fixture(params=["memory", "sqlite"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    made = open_backend(request.param, tmp_path)
    yield made
    made.close()


def spec(**overrides: Any) -> Spec:
    return fast_spec("players", dict, **overrides)


def stored(store: Store, key: str = "p1") -> Any:
    versioned = store.read(f"players/{key}")
    assert versioned is not None
    return decode(versioned.value)


def test_tags_are_saved_with_the_data_and_loaded_again(backend: Backend) -> None:
    with LockerService(backend.store, spec()) as service:
        with service.session("p1") as locker:
            assert locker.tags == {}
            locker.set_tag("last_place", {"id": 7, "name": "lobby"})
            locker.set_tag("flag", True)
            locker.set_tag("gone", 1)
            locker.remove_tag("gone")
            locker.remove_tag("never-there")
        expected = {"last_place": {"id": 7, "name": "lobby"}, "flag": True}
        assert stored(backend.store).tags == expected
        assert stored(backend.store).data == {}
        with service.session("p1") as locker:
            assert locker.tags == expected
            assert locker.get_tag("flag") is True
            assert locker.get_tag("missing", "none") == "none"


def test_a_tag_change_alone_is_saved_and_confirmed(backend: Backend) -> None:
    with LockerService(backend.store, spec()) as service, service.session("p1") as locker:
        answers: list[bool] = []
        locker.when_saved(locker.set_tag("seen", 3), answers.append)
        locker.force_save()
        assert service.run_until(lambda: bool(answers), timeout=10)
        assert answers == [True]
        assert stored(backend.store).tags == {"seen": 3}


def test_tags_handed_out_are_copies(backend: Backend) -> None:
    with LockerService(backend.store, spec()) as service, service.session("p1") as locker:
        value = {"items": [1]}
        locker.set_tag("bag", value)
        value["items"].append(2)  # the caller's object is not the tag
        locker.tags["bag"]["items"].append(3)  # nor is what ``tags`` returns
        locker.get_tag("bag")["items"].append(4)
        assert locker.tags == {"bag": {"items": [1]}}


def test_a_tag_set_while_loading_is_set_on_the_loaded_record(backend: Backend) -> None:
    with LockerService(backend.store, spec()) as service:
        with service.session("p1") as locker:
            locker.set_tag("old", 1)
        locker = service.locker("p1")
        locker.acquire()
        locker.set_tag("new", 2)
        assert service.run_until(locker.is_available, timeout=10)
        assert locker.tags == {"old": 1, "new": 2}
        locker.release()
        assert service.run_until(lambda: service.get("p1") is None, timeout=10)
    assert stored(backend.store).tags == {"old": 1, "new": 2}


def test_bad_tags_are_refused_and_change_nothing(backend: Backend) -> None:
    with LockerService(backend.store, spec()) as service:
        with pytest.raises(UsageError, match="not loaded"):
            service.locker("p2").set_tag("a", 1)
        with service.session("p1") as locker:
            locker.set_tag("kept", 1)
            for bad in ("", 7, None, "x" * 101):
                with pytest.raises(UsageError, match="tag name"):
                    locker.set_tag(bad, 1)  # type: ignore[arg-type]
            with pytest.raises(UnstorableData):
                locker.set_tag("a", {1, 2})
            with pytest.raises(UsageError, match="over"):
                locker.set_tag("big", "x" * MAX_TAGS_BYTES)
            assert locker.tags == {"kept": 1}
        assert stored(backend.store).tags == {"kept": 1}


def test_migrations_never_see_the_tags(backend: Backend) -> None:
    with LockerService(backend.store, spec()) as service, service.session("p1") as locker:
        locker.data["coins"] = 1
        locker.set_tag("origin", "v1")
    seen: list[Any] = []

    def to_v2(data: Any) -> Any:
        seen.append(json.loads(json.dumps(data)))
        return {**data, "gems": 0}

    newer = spec(version=2, migrations=Migrations().step(1, to_v2))
    with LockerService(backend.store, newer) as service, service.session("p1") as locker:
        assert locker.data == {"coins": 1, "gems": 0}
        assert locker.tags == {"origin": "v1"}
    assert seen == [{"coins": 1}]
    assert stored(backend.store).tags == {"origin": "v1"}


def test_show_and_export_print_the_tags(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'tags.db'}"
    with LockerService(url, spec()) as service, service.session("p1") as locker:
        locker.set_tag("region", "eu")
    common = ["--store", url, "--namespace", "players"]
    assert main(["show", "p1", *common, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["tags"] == {"region": "eu"}
    assert main(["show", "p1", *common]) == 0
    assert 'tags       {"region": "eu"}' in capsys.readouterr().out
    assert main(["export", *common]) == 0
    line = json.loads(capsys.readouterr().out.splitlines()[0])
    assert line["record"]["tags"] == {"region": "eu"}
