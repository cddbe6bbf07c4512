"""The easy API (EasyStore / EasyProfile) on both drivers."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from sessionlocker import AsyncLockerService, EasyProfile, EasyStore, LockerService, Spec, Status
from sessionlocker.core.record import decode
from sessionlocker.stores import MemoryStore, SQLiteStore, Store

FAST = {"lease": 0.6, "autosave_period": 0.2, "force_timeout": 0.4, "poll_period": 0.02}


def spec() -> Spec:
    return Spec("players", lambda: {"coins": 0}, **FAST)  # type: ignore[arg-type]


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    return MemoryStore() if request.param == "memory" else SQLiteStore(tmp_path / "s.db")


def coins(store: Store, key: str) -> tuple[int, bool]:
    value = store.read(f"players/{key}")
    assert value is not None
    record = decode(value.value)
    return record.data["coins"], record.lock is not None


def add_coin(data: dict[str, int]) -> None:
    data["coins"] += 1


def test_frame_loop_start_play_end_and_start_again(store: Store) -> None:
    service = LockerService(store, spec())
    easy = EasyStore(service)
    seen: list[str] = []
    profile = easy.start_session("p1")
    for event in ("loaded", "saved", "released"):
        profile.on(event, lambda p, event=event: seen.append(f"{event}:{p.key}"))
    profile.edit(add_coin)  # before the load: replayed on the loaded data
    assert easy.get("p1") is profile
    assert service.run_until(profile.is_loaded, 5)
    assert profile.data == {"coins": 1}
    easy.end_session("p1")
    easy.end_session("p1")  # idempotent
    assert service.run_until(lambda: profile.locker.status is Status.IDLE, 5)
    assert easy.get("p1") is None
    assert coins(store, "p1") == (1, False)
    assert seen[0] == "loaded:p1"
    assert seen[-1] == "released:p1"
    again = easy.start_session("p1")  # reuse: the same profile, callbacks kept
    assert again is profile
    assert service.run_until(profile.is_loaded, 5)
    profile.edit(add_coin)
    assert seen.count("loaded:p1") == 2
    service.close()
    assert coins(store, "p1") == (2, False)
    store.close()


def test_start_while_ending_loads_again_right_after(store: Store) -> None:
    service = LockerService(store, spec())
    easy = EasyStore(service)
    profile = easy.start_session("p1")
    assert service.run_until(profile.is_loaded, 5)
    profile.edit(add_coin)
    profile.end_session()
    assert profile.locker.status is Status.RELEASING
    assert easy.start_session("p1") is profile  # a player who hops straight back
    assert service.run_until(profile.is_loaded, 5)
    assert profile.data == {"coins": 1}
    service.close()
    store.close()


def test_lost_is_reported_to_the_profile(store: Store) -> None:
    first, thief = LockerService(store, spec()), LockerService(store, spec())
    lost: list[EasyProfile] = []
    profile = EasyStore(first).start_session("p1")
    profile.on("lost", lost.append)
    assert first.run_until(profile.is_loaded, 5)
    stolen = EasyStore(thief).start_session("p1", "steal")
    assert thief.run_until(stolen.is_loaded, 5)
    profile.edit(add_coin)
    assert first.run_until(lambda: bool(lost), 5)
    assert lost == [profile]
    assert not profile.is_active()
    thief.close()
    first.close()
    assert coins(store, "p1") == (0, False)
    store.close()


def test_async_driver_runs_the_frames_itself(store: Store) -> None:
    async def main() -> None:
        async with AsyncLockerService(store, spec()) as service:
            easy = EasyStore(service)
            saved: list[str] = []
            profile = easy.start_session("p1")
            profile.on("saved", lambda p: saved.append(p.key))
            assert await service.wait_until(profile.is_loaded, 5)
            profile.edit(add_coin)
            profile.locker.force_save()
            assert await service.wait_until(lambda: bool(saved), 5)
            assert coins(store, "p1") == (1, True)
            easy.end_session("p1")
            assert await service.wait_until(lambda: profile.locker.status is Status.IDLE, 5)
            assert coins(store, "p1") == (1, False)

    asyncio.run(main())
    store.close()
