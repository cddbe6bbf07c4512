"""Every example in examples/ runs, and leaves the store as it says."""

from __future__ import annotations

import asyncio
import importlib.util
import subprocess
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

from sessionlocker import LockerService, Spec, Status
from sessionlocker.core.record import decode
from sessionlocker.stores import SQLiteStore

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def stored(path: Path, key: str) -> Any:
    store = SQLiteStore(path)
    value = store.read(f"players/{key}")
    store.close()
    assert value is not None
    return decode(value.value)


def test_game_server_players_join_play_hop_and_leave(tmp_path: Path) -> None:
    result = load("game_server").main(f"sqlite:///{tmp_path / 'game.db'}")
    alice = stored(tmp_path / "game.db", "alice")
    assert alice.data == result["alice"]
    assert alice.data["visits"] == ["lobby", "arena"]
    assert alice.data["coins"] >= 20
    assert alice.lock is None
    assert stored(tmp_path / "game.db", "bob").lock is None


def test_web_service_grants_a_retried_receipt_once(tmp_path: Path) -> None:
    result = asyncio.run(load("web_service").demo(f"sqlite:///{tmp_path / 'web.db'}"))
    assert result["early"] == "not_processed_yet"
    assert result["answers"] == ["granted", "granted"]
    assert result["profile"]["data"] == {"gems": 100}
    assert result["after_leave"] == 404
    record = stored(tmp_path / "web.db", "alice")
    assert record.data == {"gems": 100}
    assert [purchase.purchase_id for purchase in record.purchases] == ["order-1"]
    assert record.lock is None


def test_edit_profile_takes_the_profile_from_a_holding_server(tmp_path: Path) -> None:
    path = tmp_path / "game.db"
    spec = Spec("players", lambda: {"coins": 0, "visits": []}, autosave_period=0.2)
    holder = LockerService(SQLiteStore(path), spec)
    locker = holder.locker("alice")
    locker.acquire()
    assert holder.run_until(lambda: locker.status is Status.LOADED, 5)
    locker.data["coins"] = 7
    locker.mark_changed()
    stop = threading.Event()
    frames = threading.Thread(target=holder.run_until, args=(stop.is_set,))
    frames.start()
    try:
        done = subprocess.run(
            [sys.executable, str(EXAMPLES / "edit_profile.py"), f"sqlite:///{path}", "alice", "5"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
    finally:
        stop.set()
        frames.join()
    assert done.stdout.strip() == "alice now has 12 coins"
    assert locker.status is Status.IDLE  # the server saved and let go on request
    holder.close()
    holder.store.close()
    record = stored(path, "alice")
    assert record.data["coins"] == 12
    assert record.lock is None
