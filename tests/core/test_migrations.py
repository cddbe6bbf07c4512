"""Save-data versions: the chain, patches, newer-schema refusal, compatibility, reconcile."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sessionlocker.core.migrations import KeepsHistory, Migrations, reconcile
from sessionlocker.core.record import Record, decode, encode
from sessionlocker.core.spec import Spec
from sessionlocker.core.states import Status
from sessionlocker.errors import MigrationError, NewerSchema, UsageError

from .rig import Rig, new_world

TIMES: dict[str, Any] = {"lease": 1.0, "autosave_period": 0.5, "poll_period": 0.1}


def chain() -> Migrations:
    return (
        Migrations()
        .step(1, lambda d: {**d, "inventory": []})
        .step(
            2, lambda d: {**{k: v for k, v in d.items() if k != "gold"}, "coins": d.get("gold", 0)}
        )
        .patch(3, lambda d: {**d, "coins": max(d["coins"], 0)})
    )


def spec_at(version: int, migrations: Migrations, create: Any = None) -> Spec:
    return Spec(
        "t",
        create or (lambda: {"coins": 0, "inventory": []}),
        version=version,
        migrations=migrations,
        **TIMES,
    )


def stored(store: Any) -> Record:
    return decode(store.read("t/k").value)


def test_a_gap_in_the_chain_fails_when_the_spec_is_made() -> None:
    gappy = Migrations().step(1, dict).step(3, dict)
    with pytest.raises(UsageError, match="2 -> 3"):
        spec_at(4, gappy)
    with pytest.raises(UsageError, match="1 -> 2"):
        spec_at(2, Migrations())
    with pytest.raises(UsageError, match="past the spec"):
        spec_at(2, Migrations().step(1, dict).step(2, dict))
    with pytest.raises(UsageError, match="already registered"):
        Migrations().step(1, dict).step(1, dict)
    with pytest.raises(UsageError, match="not callable"):
        Migrations().step(1, "nope")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match=">= 1"):
        Migrations().patch(0, dict)


def test_upgrade_runs_remaining_patches_then_each_step() -> None:
    migrations = chain().patch(1, lambda d: {**d, "patched1": True})
    done = migrations.upgrade(KeepsHistory({"gold": -5}, 1, 0, 1), 3)
    assert done == KeepsHistory({"patched1": True, "inventory": [], "coins": 0}, 3, 1, 3)
    already = migrations.upgrade(KeepsHistory({"gold": -5}, 1, 1, 1), 3)
    assert "patched1" not in already.data
    current = KeepsHistory({"coins": 1}, 3, 1, 3)
    assert migrations.upgrade(current, 3) is current


def test_a_migrator_may_change_the_data_in_place_and_return_none() -> None:
    migrations = Migrations().step(1, lambda d: d.update(b=2))
    assert migrations.upgrade(KeepsHistory({"a": 1}, 1, 0, 1), 2).data == {"a": 1, "b": 2}


def test_a_migration_is_loaded_locked_and_saved_in_one_write() -> None:
    store, clock = new_world()
    store.write("t/k", encode(Record(data={"gold": 7}, schema=1)), None)
    rig = Rig(store, "A", clock, spec_at(3, chain()))
    locker = rig.locker("k")
    locker.acquire()
    rig.step()
    assert locker.status is Status.LOADED
    assert locker.data == {"inventory": [], "coins": 7}
    record = stored(store)
    assert (record.schema, record.patch, record.compatible) == (3, 1, 3)
    assert record.data == {"inventory": [], "coins": 7}
    assert record.lock is not None


def test_a_newer_record_is_refused_untouched_with_the_minimum_version() -> None:
    store, clock = new_world()
    store.write("t/k", encode(Record(data={"x": 1}, schema=3, compatible=3)), None)
    before = store.read("t/k")
    rig = Rig(store, "A", clock, spec_at(2, Migrations().step(1, dict)))
    locker = rig.locker("k")
    locker.acquire()
    rig.step()
    assert locker.status is Status.FAILED
    assert locker.failure == "newer_schema"
    assert isinstance(locker.error, NewerSchema)
    assert locker.error.minimum_version == 3
    assert store.read("t/k") == before
    assert stored(store).lock is None


def test_a_raising_migrator_fails_naming_the_step_and_writes_nothing() -> None:
    def broken(data: Any) -> Any:
        raise KeyError("hp")

    store, clock = new_world()
    store.write("t/k", encode(Record(data={}, schema=1)), None)
    before = store.read("t/k")
    rig = Rig(store, "A", clock, spec_at(3, Migrations().step(1, dict).step(2, broken)))
    locker = rig.locker("k")
    locker.acquire()
    rig.step()
    assert locker.status is Status.FAILED
    assert locker.failure == "migration_error"
    assert isinstance(locker.error, MigrationError)
    assert locker.error.step == "migration 2 -> 3"
    assert store.read("t/k") == before


def test_an_unstorable_migration_result_is_a_migration_error() -> None:
    store, clock = new_world()
    store.write("t/k", encode(Record(data={}, schema=1)), None)
    rig = Rig(store, "A", clock, spec_at(2, Migrations().step(1, lambda d: {1: "int key"})))
    locker = rig.locker("k")
    locker.acquire()
    rig.step()
    assert locker.failure == "migration_error"


def test_backward_compatible_versions_load_and_save_on_older_code() -> None:
    newer = Migrations().step(1, dict).step(2, lambda d: {**d, "pet": None}, compatible=True)
    assert newer.compatible_from(3) == 2
    store, clock = new_world()
    writer = Rig(store, "A", clock, spec_at(3, newer))
    locker = writer.locker("k")
    locker.acquire()
    writer.step()
    locker.release()
    writer.step()
    record = stored(store)
    assert (record.schema, record.compatible) == (3, 2)
    old_code = Rig(store, "B", clock, spec_at(2, Migrations().step(1, dict)))
    older = old_code.locker("k")
    older.acquire()
    old_code.step()
    assert older.status is Status.LOADED
    older.data["coins"] = 5
    older.mark_changed()
    older.release()
    old_code.step()
    record = stored(store)
    assert (record.schema, record.compatible) == (3, 2)  # the record keeps both numbers
    assert record.data["coins"] == 5
    too_old = Rig(store, "C", clock, spec_at(1, Migrations()))
    oldest = too_old.locker("k")
    oldest.acquire()
    too_old.step()
    assert oldest.failure == "newer_schema"


def test_new_records_carry_the_versions_of_the_code_that_made_them() -> None:
    store, clock = new_world()
    rig = Rig(store, "A", clock, spec_at(3, chain()))
    locker = rig.locker("k")
    locker.acquire()
    rig.step()
    record = stored(store)
    assert (record.schema, record.patch, record.compatible) == (3, 1, 3)


def test_reconcile_fills_missing_keys_and_keeps_existing_values() -> None:
    def create() -> dict[str, Any]:
        return {"coins": 0, "settings": {"music": True, "volume": 5}, "items": ["starter"]}

    fill = reconcile(create)
    data = {"coins": 40, "settings": {"volume": 9}, "items": []}
    assert fill(data) == {"coins": 40, "settings": {"volume": 9, "music": True}, "items": []}
    shared = fill({})
    shared["items"].append("x")
    assert create()["items"] == ["starter"]  # filled values are copies


def test_reconcile_as_a_patcher_on_load() -> None:
    def create() -> dict[str, Any]:
        return {"coins": 0, "inventory": [], "title": "novice"}

    store, clock = new_world()
    store.write("t/k", encode(Record(data={"coins": 3}, schema=1)), None)
    rig = Rig(store, "A", clock, spec_at(1, Migrations().patch(1, reconcile(create)), create))
    locker = rig.locker("k")
    locker.acquire()
    rig.step()
    assert locker.data == {"coins": 3, "inventory": [], "title": "novice"}


# ---------------------------------------------------------------- property

# A migration step is a list of operations; each says which keys it drops on purpose.
operation = st.one_of(
    st.tuples(st.just("add"), st.text("abcdef", min_size=1, max_size=3), st.integers()),
    st.tuples(st.just("drop"), st.text("abcdef", min_size=1, max_size=3), st.none()),
    st.tuples(st.just("bump"), st.text("abcdef", min_size=1, max_size=3), st.integers(-5, 5)),
)
step_ops = st.lists(operation, max_size=4)


def as_migrator(ops: list[tuple[str, str, Any]]) -> Any:
    def migrate(data: dict[str, Any]) -> dict[str, Any]:
        for kind, key, value in ops:
            if kind == "add":
                data.setdefault(key, value)
            elif kind == "drop":
                data.pop(key, None)
            elif isinstance(data.get(key), int):
                data[key] += value
        return data

    return migrate


@settings(max_examples=200, deadline=None)
@given(
    data=st.dictionaries(st.text("abcdefgh", min_size=1, max_size=3), st.integers(), max_size=6),
    steps=st.lists(step_ops, min_size=1, max_size=5),
    stop=st.integers(min_value=1),
)
def test_step_by_step_equals_all_at_once_and_only_meant_keys_are_dropped(
    data: dict[str, int], steps: list[list[tuple[str, str, Any]]], stop: int
) -> None:
    migrations = Migrations()
    for number, ops in enumerate(steps, 1):
        migrations.step(number, as_migrator(ops))
    top = len(steps) + 1
    middle = 1 + stop % top
    at_once = migrations.upgrade(KeepsHistory(copy.deepcopy(data), 1, 0, 1), top)
    halfway = migrations.upgrade(KeepsHistory(copy.deepcopy(data), 1, 0, 1), middle)
    stepwise = migrations.upgrade(KeepsHistory(copy.deepcopy(halfway.data), middle, 0, middle), top)
    assert at_once.data == stepwise.data
    assert at_once.schema == stepwise.schema == top
    dropped = {key for ops in steps for kind, key, _ in ops if kind == "drop"}
    assert set(data) - dropped <= set(at_once.data)
