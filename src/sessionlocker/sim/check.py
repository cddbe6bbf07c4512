"""The independent checker: the servers' histories against the final store contents.

It shares nothing with the servers: it reads their history files (``sim.history``) and
the records as finally stored, and counts each kind of violation:

- ``lost_acknowledged_saves``: a change confirmed saved (``confirmed``: server, key, n)
  is not at ``log[n - 1]`` of the final record.
- ``double_grants``: a purchase id (or an admin message) applied more than once.
- ``lost_grants``: a purchase answered ``granted`` (or an admin message acknowledged as
  sent) whose effect is not in the final record of its recipient.
- ``split_brain_commits``: two servers confirmed changes of one key in one epoch; or a
  change confirmed in epoch e is missing from what a later epoch loaded (the write was
  accepted after the later epoch was granted); or the final log goes back in epoch.
- ``data_regressions``: a load read a count older than a change already confirmed, or a
  final record whose count and log disagree.
- ``items_duplicated`` / ``items_lost``: an item found in two places (records, or trade
  messages in flight), or a granted item found nowhere.
- ``stuck_locks``: a record still locked at the end, after every server stopped and the
  final pass opened every key (a lock nobody could take over).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from itertools import pairwise
from typing import Any

from sessionlocker.core.record import Record
from sessionlocker.sim.history import Event

__all__ = ["VIOLATIONS", "check"]

#: Every violation counted, in report order.
VIOLATIONS = (
    "lost_acknowledged_saves",
    "double_grants",
    "lost_grants",
    "split_brain_commits",
    "data_regressions",
    "items_duplicated",
    "items_lost",
    "stuck_locks",
)


def check(
    events: Iterable[Event],
    records: Mapping[str, Record | None],
    findings: list[str] | None = None,
) -> dict[str, int]:
    """Count every violation in ``events`` (all histories) against ``records``.

    ``findings``, when given, gets one line per load, save or record the checker found
    wrong (key, epochs, servers and times), so a failed run can be diagnosed from its
    report alone.
    """
    by_kind: dict[str, list[Event]] = defaultdict(list)
    for event in events:
        by_kind[str(event["event"])].append(event)
    data = {key: _data(record) for key, record in records.items()}
    found: list[str] = [] if findings is None else findings
    counts = dict.fromkeys(VIOLATIONS, 0)
    counts["lost_acknowledged_saves"] = _lost_saves(by_kind["confirmed"], data, found)
    counts["double_grants"], counts["lost_grants"] = _grants(by_kind, data)
    counts["split_brain_commits"] = _split_brain(by_kind, data, found)
    counts["data_regressions"] = _regressions(by_kind, data, found)
    counts["items_duplicated"], counts["items_lost"] = _items(by_kind["granted"], records)
    for key, record in records.items():
        if record is not None and record.lock is not None:
            counts["stuck_locks"] += 1
            lock = record.lock
            found.append(
                f"stuck_locks: {key} still locked by session {lock.session} in epoch "
                f"{lock.epoch} at the end"
            )
    return counts


def _at(event: Event) -> str:
    """Who did ``event`` and when: server, epoch and time."""
    return f"{event.get('worker')} epoch {event.get('epoch')} t={float(event['t']):.3f}"


def _lost_saves(
    confirmed: list[Event], data: Mapping[str, dict[str, Any]], found: list[str]
) -> int:
    lost = 0
    for event in confirmed:
        log = data.get(event["key"], {}).get("log", [])
        n = int(event["n"])
        entry = log[n - 1] if 0 < n <= len(log) else None
        if not isinstance(entry, list) or entry[:2] != [event["worker"], n]:
            lost += 1
            found.append(
                f"lost_acknowledged_saves: {event['key']}: change {n} confirmed by "
                f"{_at(event)} is not in the final log (entry there: {entry})"
            )
    return lost


def _grants(
    by_kind: Mapping[str, list[Event]], data: Mapping[str, dict[str, Any]]
) -> tuple[int, int]:
    applied: Counter[str] = Counter()
    for player in data.values():
        applied.update(f"purchase:{pid}" for pid in player.get("grants", []))
        applied.update(f"bonus:{mid}" for mid in player.get("bonuses", []))
    double = sum(count - 1 for count in applied.values() if count > 1)
    expected = {
        (str(event["recipient"]), f"purchase:{event['purchase']}") for event in by_kind["granted"]
    }
    expected |= {(str(event["key"]), f"bonus:{event['id']}") for event in by_kind["sent"]}
    lost = 0
    for key, what in expected:
        player = data.get(key, {})
        kind, name = what.split(":", 1)
        if name not in player.get("grants" if kind == "purchase" else "bonuses", []):
            lost += 1
    return double, lost


def _split_brain(
    by_kind: Mapping[str, list[Event]], data: Mapping[str, dict[str, Any]], lines: list[str]
) -> int:
    found = 0
    owners: dict[tuple[str, int], set[str]] = defaultdict(set)
    for event in by_kind["confirmed"]:
        owners[(event["key"], int(event["epoch"]))].add(str(event["worker"]))
    for (key, epoch), names in owners.items():
        if len(names) > 1:
            found += len(names) - 1
            lines.append(
                f"split_brain_commits: {key}: {sorted(names)} all confirmed saves in epoch {epoch}"
            )
    loads: dict[str, list[Event]] = defaultdict(list)
    for event in by_kind["loaded"]:
        loads[event["key"]].append(event)
    for event in by_kind["confirmed"]:
        epoch, n = int(event["epoch"]), int(event["n"])
        later = [
            load
            for load in loads[event["key"]]
            if int(load["epoch"]) > epoch and int(load["count"]) < n
        ]
        if later:
            found += 1
            load = later[0]
            lines.append(
                f"split_brain_commits: {event['key']}: change {n} confirmed by {_at(event)} "
                f"after {_at(load)} had loaded count {load['count']}"
            )
    for key, player in data.items():
        epochs = [entry[2] for entry in player.get("log", []) if _entry(entry)]
        for before, after in pairwise(epochs):
            if after < before:
                found += 1
                lines.append(
                    f"split_brain_commits: {key}: final log goes from epoch {before} to {after}"
                )
    return found


def _regressions(
    by_kind: Mapping[str, list[Event]], data: Mapping[str, dict[str, Any]], lines: list[str]
) -> int:
    found = 0
    confirmed: dict[str, list[Event]] = defaultdict(list)
    for event in by_kind["confirmed"]:
        confirmed[event["key"]].append(event)
    for load in by_kind["loaded"]:
        t, count = float(load["t"]), int(load["count"])
        newer = [
            event
            for event in confirmed[load["key"]]
            if float(event["t"]) < t and int(event["n"]) > count
        ]
        if newer:
            found += 1
            last = max(newer, key=lambda event: int(event["n"]))
            lines.append(
                f"data_regressions: {load['key']}: {_at(load)} loaded count {count}, but "
                f"{_at(last)} had confirmed change {last['n']} before"
            )
    for key, player in data.items():
        log = player.get("log", [])
        numbers = [entry[1] if _entry(entry) else None for entry in log]
        if player and (player.get("count") != len(log) or numbers != list(range(1, len(log) + 1))):
            found += 1
            lines.append(
                f"data_regressions: {key}: final count {player.get('count')} and log of "
                f"{len(log)} entries disagree"
            )
    return found


def _items(granted: list[Event], records: Mapping[str, Record | None]) -> tuple[int, int]:
    places: Counter[str] = Counter()
    in_flight: dict[str, dict[str, Any]] = {}
    for record in records.values():
        if record is None:
            continue
        places.update(_data(record).get("items", []))
        for message in (*record.inbox, *record.outbox):
            in_flight[message.id] = message.body if isinstance(message.body, dict) else {}
    # a message delivered to its inbox may still be in its sender's outbox: count it once
    for body in in_flight.values():
        for name in ("give", "items"):
            if isinstance(body.get(name), list) and (name == "give") == ("want" in body):
                places.update(body[name])
    duplicated = sum(count - 1 for count in places.values() if count > 1)
    lost = sum(1 for pid in {event["purchase"] for event in granted} if not places[f"item-{pid}"])
    return duplicated, lost


def _entry(entry: object) -> bool:
    return isinstance(entry, list) and len(entry) == 3


def _data(record: Record | None) -> dict[str, Any]:
    data = None if record is None else record.data
    return data if isinstance(data, dict) else {}
