"""The easy API (EasyStore / EasyProfile) on both drivers."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from backends import fast_spec, open_backend
from sessionlocker import AsyncLockerService, EasyProfile, EasyStore, LockerService, Spec, Status
from sessionlocker.core.record import decode
from sessionlocker.stores import Store


def spec() -> Spec:
    return fast_spec(create=lambda: {"coins": 0})


@pytest.fixture(params=["memory", "sqlite", "redis", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    made = open_backend(request.param, tmp_path)
    yield made.store
    made.close()


def raw(store: Store, key: str) -> bytes:
    value = store.read(f"players/{key}")
    assert value is not None
    return value.value


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


def test_async_driver_events_reuse_and_idempotent_end(store: Store) -> None:
    async def main() -> None:
        async with AsyncLockerService(store, spec()) as service:
            easy = EasyStore(service)
            seen: list[str] = []
            profile = easy.start_session("p1")
            for event in ("loaded", "saved", "released"):
                profile.on(event, lambda p, event=event: seen.append(event))
            profile.edit(add_coin)  # before the load: replayed on the loaded data
            assert await service.wait_until(profile.is_loaded, 5)
            easy.end_session("p1")
            easy.end_session("p1")  # idempotent
            profile.end_session()
            easy.end_session("never-started")  # nothing to end: nothing happens
            assert await service.wait_until(lambda: seen[-1] == "released", 5)
            assert coins(store, "p1") == (1, False)
            assert seen[0] == "loaded"
            assert easy.start_session("p1") is profile  # reuse, callbacks kept
            assert await service.wait_until(profile.is_loaded, 5)
            assert profile.data == {"coins": 1}
            assert seen.count("loaded") == 2
            profile.edit(add_coin)
        assert coins(store, "p1") == (2, False)  # aclose saved and released it

    asyncio.run(main())


def test_lost_is_reported_on_the_async_driver(store: Store) -> None:
    async def main() -> None:
        async with (
            AsyncLockerService(store, spec()) as first,
            AsyncLockerService(store, spec()) as thief,
        ):
            lost: list[EasyProfile] = []
            profile = EasyStore(first).start_session("p1")
            profile.on("lost", lost.append)
            assert await first.wait_until(profile.is_loaded, 5)
            stolen = EasyStore(thief).start_session("p1", "steal")
            assert await thief.wait_until(stolen.is_loaded, 5)
            profile.edit(add_coin)
            assert await first.wait_until(lambda: bool(lost), 5)
            assert lost == [profile]
            assert not profile.is_active()
            profile.end_session()  # ending a lost session is a no-op too
        assert coins(store, "p1") == (0, False)

    asyncio.run(main())


def held_elsewhere(store: Store) -> LockerService:
    """Another server that holds p1 and is then never driven (it answers nothing)."""
    holder = LockerService(store, Spec("players", lambda: {"coins": 0}, lease=10))
    locker = holder.locker("p1")
    locker.acquire()
    assert holder.run_until(lambda: locker.status is Status.LOADED, 5)
    return holder


def assert_nothing_left_behind(after: bytes, before: bytes) -> None:
    """The cancelled load left no lock and no release request of its own behind.

    A force request may reach the holder before the cancel withdraws it; the holder then
    honours it and releases, and the record ends free (the product never promised that
    the withdrawal wins that race).
    """
    record = decode(after)
    assert not record.release_requests
    assert after == before or record.lock is None


@pytest.mark.parametrize("mode", ["repeat", "force"])
def test_ending_a_waiting_session_cancels_its_load_frame_loop(store: Store, mode: str) -> None:
    holder = held_elsewhere(store)
    before = raw(store, "p1")
    service = LockerService(store, spec())
    profile = EasyStore(service).start_session("p1", mode)
    assert service.run_until(lambda: profile.locker.status is Status.WAITING, 5)
    profile.end_session()
    assert service.run_until(lambda: not profile.is_active(), 5)
    assert service.run_until(lambda: not service.lockers(), 5)
    assert_nothing_left_behind(raw(store, "p1"), before)
    service.close()
    holder.close()


@pytest.mark.parametrize("mode", ["repeat", "force"])
def test_ending_a_waiting_session_cancels_its_load_async(store: Store, mode: str) -> None:
    holder = held_elsewhere(store)
    before = raw(store, "p1")

    async def main() -> None:
        async with AsyncLockerService(store, spec()) as service:
            easy = EasyStore(service)
            profile = easy.start_session("p1", mode)
            assert await service.wait_until(lambda: profile.locker.status is Status.WAITING, 5)
            easy.end_session("p1")
            assert await service.wait_until(lambda: not service.lockers(), 5)
            assert easy.get("p1") is None
            assert_nothing_left_behind(raw(store, "p1"), before)

    asyncio.run(main())
    assert_nothing_left_behind(raw(store, "p1"), before)
    holder.close()
