"""Every path refuses every malformed record the same way and leaves its bytes as they are.

One decoder reads a stored record everywhere: loads, saves, ``send``, the offline
migration and every admin command. Each malformed class below goes through each path,
and the stored bytes are compared before and after. The library paths run on every
backend; the admin commands on SQLite (all of them) and on Redis and PostgreSQL (the
ones that read, send or take the lock).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from backends import Backend, open_backend
from sessionlocker import AsyncLockerService, LockerService, Spec
from sessionlocker.cli.main import main
from sessionlocker.drivers.offline import migrate_records
from sessionlocker.errors import CorruptRecord, LockLost
from sessionlocker.stores.base import Store
from sessionlocker.stores.user_keys import keys_for_user

SPEC = Spec("players", dict, lease=2.0, autosave_period=0.5)

#: The envelope of a valid record around ``{data}``; each class breaks it one way.
HEAD = b'{"format":1,"schema":1,"epoch":3,"lock":null,"user_ids":["u1"],'

MALFORMED = {
    "duplicate-top-level": HEAD + b'"epoch":1,"data":{"gold":1}}',
    "duplicate-in-data": HEAD + b'"data":{"bag":[{"gold":1,"gold":2}]}}',
    "duplicate-in-inbox": HEAD
    + b'"inbox":[{"id":"m","kind":"k","at":1,"body":{"a":1,"a":2}}],"data":{}}',
    "lone-surrogate-in-data": HEAD + b'"data":{"name":"\\ud800"}}',
    "lone-surrogate-in-key": HEAD
    + b'"inbox":[{"id":"m","kind":"k","at":1,"body":{"\\udfff":1}}],"data":{}}',
    "not-json": b'{"format":1,"data":{',
    "not-utf8": b'{"format":1,"data":"\xff"}',
    "nan": HEAD + b'"data":{"gold":NaN}}',
    "overflowing-number": HEAD + b'"data":{"gold":1e400}}',
    "too-deep": HEAD + b'"data":' + b"[" * 600 + b"]" * 600 + b"}",
    "long-integer": HEAD + b'"data":{"gold":' + b"9" * 5000 + b"}}",
    "wrong-format": b'{"format":2,"data":{}}',
    "lock-epoch-mismatch": HEAD.replace(
        b'"lock":null', b'"lock":{"session":"s","epoch":1,"acquired":0}'
    )
    + b'"data":{}}',
    "bad-field-type": HEAD + b'"applied":[3],"data":{}}',
}

CLASSES = sorted(MALFORMED)


@pytest.fixture(params=["memory", "sqlite", "redis", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    made = open_backend(request.param, tmp_path, history=10)
    yield made
    made.close()


def plant(store: Store, key: str, value: bytes) -> bytes:
    """Write ``value`` as record ``key`` of ``players``; the bytes to find there later."""
    store.write(f"players/{key}", value, None)
    return stored_bytes(store, key)


def stored_bytes(store: Store, key: str) -> bytes:
    versioned = store.read(f"players/{key}")
    assert versioned is not None
    return versioned.value


@pytest.mark.parametrize("kind", CLASSES)
def test_load_send_and_migrate_refuse_and_keep_the_bytes(backend: Backend, kind: str) -> None:
    store = backend.store
    before = plant(store, "bad", MALFORMED[kind])
    with LockerService(store, SPEC) as service:
        with pytest.raises(CorruptRecord), service.session("bad", timeout=5):
            pytest.fail("a corrupt record must not load")
        with pytest.raises(CorruptRecord):
            service.send("bad", "gift", {"gold": 1})
    report = migrate_records(store, SPEC)
    assert report.failed == {"corrupt": 1}
    assert stored_bytes(store, "bad") == before


@pytest.mark.parametrize("kind", ["duplicate-top-level", "lone-surrogate-in-key"])
def test_the_async_service_refuses_too(kind: str, tmp_path: Path) -> None:
    backend = open_backend("sqlite", tmp_path)
    store = backend.store
    before = plant(store, "bad", MALFORMED[kind])

    async def main() -> None:
        async with AsyncLockerService(store, SPEC) as service:
            with pytest.raises(CorruptRecord):
                async with service.session("bad", timeout=5):
                    pytest.fail("a corrupt record must not load")
            with pytest.raises(CorruptRecord):
                await service.send("bad", "gift", {"gold": 1})

    try:
        asyncio.run(main())
        assert stored_bytes(store, "bad") == before
    finally:
        backend.close()


@pytest.mark.parametrize("kind", CLASSES)
def test_a_save_over_corrupt_bytes_writes_nothing(backend: Backend, kind: str) -> None:
    store = backend.store
    with LockerService(store, SPEC) as service:
        with pytest.raises(LockLost), service.session("p1", timeout=5) as locker:
            current = store.read("players/p1")
            assert current is not None
            store.write("players/p1", MALFORMED[kind], current.revision)
            before = stored_bytes(store, "p1")
            locker.data["gold"] = 5
            locker.mark_changed()
    assert stored_bytes(store, "p1") == before


# The admin commands.

ALL_COMMANDS = {
    "show": ["show", "bad"],
    "list": ["list"],
    "history": ["history", "bad"],
    "export": ["export"],
    "release": ["release", "bad", "--timeout", "5"],
    "steal": ["release", "bad", "--steal", "--yes", "--timeout", "5"],
    "edit": ["edit", "bad", "--patch", '{"gold": 2}', "--timeout", "5"],
    "send": ["send", "bad", "gift", '{"gold": 2}'],
    "restore": ["restore", "bad", "1", "--timeout", "5"],
    "erase": ["erase", "--user", "u1", "--yes", "--timeout", "5"],
}

#: On Redis and PostgreSQL: the commands that read, send, or take the lock.
SERVER_COMMANDS = ("show", "export", "steal", "edit", "send")


def run_command(
    capsys: pytest.CaptureFixture[str], url: str, argv: list[str]
) -> tuple[int, str, str]:
    code = main([*argv, "--store", url, "--namespace", "players"])
    out, err = capsys.readouterr()
    return code, out, err


def assert_refused(code: int, err: str, argv: list[str]) -> None:
    """Exit status not 0, and one line on stderr naming the key and what is wrong."""
    assert code != 0, argv
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if "'bad'" in line]
    assert lines, (argv, err)
    assert "corrupt" in lines[0] or "erase" in argv, (argv, err)


@pytest.mark.parametrize("kind", CLASSES)
def test_every_admin_command_refuses_on_sqlite(
    tmp_path: Path, kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    backend = open_backend("sqlite", tmp_path, history=10)
    try:
        assert backend.url is not None
        before = plant(backend.store, "bad", MALFORMED[kind])
        for name, argv in ALL_COMMANDS.items():
            code, out, err = run_command(capsys, backend.url, argv)
            if name == "erase" and not keys_for_user(backend.store, "u1", "players/"):
                # The store's user index cannot read these bytes: no record lists u1.
                assert (code, err) == (0, "")
                assert "lists user 'u1'" in out
            else:
                assert_refused(code, err, argv)
            assert stored_bytes(backend.store, "bad") == before, name
    finally:
        backend.close()


@pytest.mark.parametrize("kind", ["duplicate-top-level", "lone-surrogate-in-key", "too-deep"])
@pytest.mark.parametrize("server", ["redis", "postgresql"])
def test_admin_commands_refuse_on_the_servers(
    tmp_path: Path, server: str, kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    backend = open_backend(server, tmp_path, history=10)
    try:
        assert backend.url is not None
        before = plant(backend.store, "bad", MALFORMED[kind])
        for name in SERVER_COMMANDS:
            argv = ALL_COMMANDS[name]
            code, _, err = run_command(capsys, backend.url, argv)
            assert_refused(code, err, argv)
            assert stored_bytes(backend.store, "bad") == before, name
    finally:
        backend.close()


def test_release_steal_of_a_corrupt_record_is_not_reported_free(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    backend = open_backend("sqlite", tmp_path)
    try:
        assert backend.url is not None
        plant(backend.store, "bad", MALFORMED["lone-surrogate-in-data"])
        code, out, err = run_command(capsys, backend.url, ALL_COMMANDS["steal"])
        assert (code, out) == (1, "")
        assert "not locked" not in err
        assert err.count("\n") == 1
        assert "record 'bad' is corrupt" in err
        assert "lone surrogate" in err
    finally:
        backend.close()


def test_export_writes_the_good_records_and_names_the_corrupt_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    backend = open_backend("sqlite", tmp_path)
    try:
        assert backend.url is not None
        with LockerService(backend.store, SPEC) as service, service.session("good") as locker:
            locker.data["gold"] = 1
            locker.mark_changed()
        plant(backend.store, "bad", MALFORMED["duplicate-top-level"])
        code, out, err = run_command(capsys, backend.url, ["export"])
        assert code == 1
        assert [line[:15] for line in out.splitlines()] == ['{"key": "good",']
        assert "record 'bad' is corrupt" in err
        assert "'epoch' appears twice" in err
        assert "1 corrupt record(s) not exported" in err
    finally:
        backend.close()
