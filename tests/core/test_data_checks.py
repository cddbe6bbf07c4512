"""Validators, the record size limit and compression: refused saves lose nothing."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec
import pydantic
import pytest

from sessionlocker.core.locker import Locker
from sessionlocker.core.record import ZLIB, decode
from sessionlocker.core.spec import Spec
from sessionlocker.core.states import Status
from sessionlocker.core.validation import make_validator
from sessionlocker.errors import InvalidData, RecordTooLarge, UsageError

from .rig import Rig, new_world

TIMES: dict[str, Any] = {"lease": 1.0, "autosave_period": 0.5, "poll_period": 0.1}


@dataclass
class Pet:
    name: str
    age: int = 0


@dataclass
class Save:
    coins: int
    title: Literal["novice", "hero"] = "novice"
    pets: list[Pet] = field(default_factory=list)
    best: float | None = None
    tags: dict[str, int] = field(default_factory=dict)


class SaveModel(pydantic.BaseModel):
    coins: int
    pets: list[str] = []


class SaveStruct(msgspec.Struct):
    coins: int
    pets: list[str] = []


@pytest.mark.parametrize(
    ("data", "path"),
    [
        ({"coins": "ten"}, "data['coins']"),
        ({"coins": True}, "data['coins']"),
        ({}, "data['coins']"),
        ({"coins": 1, "colour": "red"}, "data['colour']"),
        ({"coins": 1, "title": "king"}, "data['title']"),
        ({"coins": 1, "pets": [{"name": "rex", "age": "old"}]}, "data['pets'][0]['age']"),
        ({"coins": 1, "pets": [{"age": 1}]}, "data['pets'][0]['name']"),
        ({"coins": 1, "best": "x"}, "data['best']"),
        ({"coins": 1, "tags": {"a": 1.5}}, "data['tags']['a']"),
    ],
)
def test_a_dataclass_validator_names_the_bad_field(data: Any, path: str) -> None:
    validate = make_validator(Save)
    assert validate is not None
    with pytest.raises(InvalidData) as caught:
        validate(data)
    assert caught.value.path == path


def test_a_dataclass_validator_accepts_good_data() -> None:
    validate = make_validator(Save)
    assert validate is not None
    validate({"coins": 1, "title": "hero", "pets": [{"name": "rex"}], "best": 2, "tags": {"a": 1}})


@pytest.mark.parametrize("model", [SaveModel, SaveStruct])
def test_pydantic_and_msgspec_validators_name_the_bad_field(model: type) -> None:
    validate = make_validator(model)
    assert validate is not None
    validate({"coins": 1, "pets": ["rex"]})
    with pytest.raises(InvalidData) as caught:
        validate({"coins": 1, "pets": ["rex", 5]})
    assert caught.value.path == "data['pets'][1]"


def test_a_callable_validator_refuses_by_raising_or_returning_false() -> None:
    def positive(data: Any) -> bool:
        if data["coins"] < -100:
            raise ValueError("far too negative")
        return bool(data["coins"] >= 0)

    validate = make_validator(positive)
    assert validate is not None
    validate({"coins": 1})
    with pytest.raises(InvalidData, match="returned False"):
        validate({"coins": -1})
    with pytest.raises(InvalidData, match="far too negative"):
        validate({"coins": -500})


def test_a_validator_that_is_neither_callable_nor_a_known_type_is_refused() -> None:
    with pytest.raises(UsageError):
        Spec("t", dict, validator=int)
    with pytest.raises(UsageError):
        Spec("t", dict, validator="coins > 0")


def loaded(spec: Spec) -> tuple[Any, Rig, Locker]:
    store, clock = new_world()
    rig = Rig(store, "A", clock, spec)
    locker = rig.locker("k")
    locker.acquire()
    rig.step()
    assert locker.status is Status.LOADED, locker.error
    return store, rig, locker


def test_invalid_data_refuses_the_save_and_keeps_the_stored_value() -> None:
    spec = Spec("t", lambda: {"coins": 0}, validator=Save, **TIMES)
    store, rig, locker = loaded(spec)
    before = store.read("t/k")
    locker.data["coins"] = "lots"
    answers: list[bool] = []
    locker.when_saved(locker.mark_changed(), answers.append)
    locker.force_save()
    rig.step()
    assert isinstance(locker.error, InvalidData)
    assert locker.error.path == "data['coins']"
    assert store.read("t/k") == before
    assert answers == []
    locker.data["coins"] = 3
    locker.force_save()
    rig.step()
    assert answers == [True]


def test_a_create_function_that_fails_validation_is_refused_at_acquire() -> None:
    store, clock = new_world()
    rig = Rig(store, "A", clock, Spec("t", lambda: {"coins": "x"}, validator=Save, **TIMES))
    locker = rig.locker("k")
    with pytest.raises(InvalidData):
        locker.acquire()
    assert locker.status is Status.IDLE


def test_an_oversized_save_is_refused_with_the_size_and_the_old_value_stays() -> None:
    spec = Spec("t", lambda: {"blob": ""}, max_record_bytes=2_000, **TIMES)
    store, rig, locker = loaded(spec)
    locker.data["blob"] = "small"
    locker.force_save()
    rig.step()
    before = store.read("t/k")
    locker.data["blob"] = "x" * 5_000
    answers: list[bool] = []
    locker.when_saved(locker.mark_changed(), answers.append)
    locker.force_save()
    rig.step()
    assert isinstance(locker.error, RecordTooLarge)
    assert locker.error.size > 5_000
    assert locker.error.limit == 2_000
    assert store.read("t/k") == before
    assert decode(before.value).data == {"blob": "small"}  # type: ignore[union-attr]
    assert locker.status is Status.LOADED
    locker.data["blob"] = "fits"
    locker.force_save()
    rig.step()
    assert answers == [True]


def test_release_with_an_oversized_record_keeps_the_last_good_value() -> None:
    spec = Spec("t", lambda: {"blob": "ok"}, max_record_bytes=2_000, **TIMES)
    store, rig, locker = loaded(spec)
    locker.data["blob"] = "x" * 5_000
    answers: list[bool] = []
    locker.when_saved(locker.mark_changed(), answers.append)
    locker.release()
    rig.step()
    assert locker.status is Status.IDLE
    assert isinstance(locker.error, RecordTooLarge)
    assert answers == [False]
    record = decode(store.read("t/k").value)  # type: ignore[union-attr]
    assert record.lock is None
    assert record.data == {"blob": "ok"}


def test_large_data_is_stored_compressed_and_read_back_transparently() -> None:
    spec = Spec("t", lambda: {"log": []}, compress_above=1_000, max_record_bytes=20_000, **TIMES)
    store, rig, locker = loaded(spec)
    locker.data["log"] = ["the same line again"] * 2_000  # 44 kB of JSON
    locker.release()
    rig.step()
    raw = store.read("t/k").value  # type: ignore[union-attr]
    assert len(raw) < 20_000
    record = decode(raw)
    assert record.encoding == ZLIB
    assert record.data == {"log": ["the same line again"] * 2_000}
    again = rig.locker("k")
    again.acquire()
    rig.step()
    assert again.data == {"log": ["the same line again"] * 2_000}


def test_bad_limits_are_refused() -> None:
    with pytest.raises(UsageError, match="max_record_bytes"):
        Spec("t", dict, max_record_bytes=0)
    with pytest.raises(UsageError, match="compress_above"):
        Spec("t", dict, compress_above=-1)
