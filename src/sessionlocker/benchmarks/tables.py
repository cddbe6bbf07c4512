"""The benchmark results as Markdown tables (``bench/README.md`` and the CLI's output)."""

from __future__ import annotations

from typing import Any

__all__ = ["markdown"]

_BACKENDS = ("memory", "sqlite", "redis", "postgresql")
_DASH = "—"
_SYSTEMS = {
    "sessionlocker": "sessionlocker, polling",
    "sessionlocker_notified": "sessionlocker, notified",
    "profileservice": "ProfileService",
    "profilestore": "ProfileStore",
}


def markdown(results: dict[str, Any]) -> str:
    """Every table, with a line saying where and when the figures were measured."""
    sections = [_header(results), _backends(results), _bursts(results)]
    if isinstance(results.get("frame"), dict):
        sections.append(_frame(results["frame"]))
    if isinstance(results.get("memory"), dict):
        sections.append(_memory(results["memory"]))
    if isinstance(results.get("peers"), dict):
        sections.append(_peers(results["peers"]))
    if isinstance(results.get("baselines"), dict):
        sections.append(_baselines(results["baselines"]))
    return "\n\n".join(section for section in sections if section) + "\n"


def _header(results: dict[str, Any]) -> str:
    machine = results.get("machine", {})
    versions = results.get("versions", {})
    servers = ", ".join(
        f"{name} {figures['server_version']}"
        for name, figures in results.get("backends", {}).items()
        if figures.get("server_version")
    )
    lines = [
        f"Measured {results.get('date', '?')} ({results.get('sizes', {}).get('name', '?')} run) "
        f"on {machine.get('processor', '?')}, {machine.get('cpus', '?')} CPUs, "
        f"{machine.get('system', '?')}, Python {machine.get('python', '?')}, "
        f"load average {machine.get('load_average')} at the start.",
        f"sessionlocker {versions.get('sessionlocker', '?')}, SQLite "
        f"{versions.get('sqlite', '?')}, redis-py {versions.get('redis', '?')}, psycopg "
        f"{versions.get('psycopg', '?')}" + (f"; servers: {servers}." if servers else "."),
    ]
    return "\n".join(lines)


def _num(value: Any, digits: int = 3) -> str:
    if value is None:
        return _DASH
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value >= 1000:
            return f"{value:,.0f}"
        return f"{value:.{digits}g}"
    return str(value)


def _pair(figures: Any, first: str = "p50", second: str = "p99") -> str:
    if not isinstance(figures, dict) or figures.get(first) is None:
        return _error(figures)
    return f"{_num(figures.get(first))} / {_num(figures.get(second))}"


def _error(figures: Any) -> str:
    if isinstance(figures, dict) and "error" in figures:
        return "error (see results.json)"
    return _DASH


def _table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines.extend("| " + " | ".join(row) + " |" for row in rows)
    return "\n".join(lines)


def _backends(results: dict[str, Any]) -> str:
    backends = results.get("backends", {})
    names = [name for name in _BACKENDS if name in backends]
    names += [name for name in backends if name not in names]
    if not names:
        return ""
    columns = [backends[name] for name in names]
    rows = [
        *_save_rows(columns),
        ["Store calls: load / save / release / handoff / remote change"]
        + [_trips(c.get("round_trips")) for c in columns],
        ["Requests the server saw, same steps (incl. subscriptions)"]
        + [_wire(c.get("round_trips")) for c in columns],
        ["Handoff p50 / p99, polling only (ms)"]
        + [_pair(c.get("handoff_polling_ms")) for c in columns],
        ["Handoff p50 / p99, with notifications (ms)"]
        + [_pair(c.get("handoff_notified_ms")) for c in columns],
        ["Handoff p50 in raw round trips of the backend"]
        + [_num(c.get("handoff_p50_in_raw_round_trips")) for c in columns],
        ["Takeover after SIGKILL, p50 / max (s), against lease + poll"]
        + [_takeover(c.get("takeover")) for c in columns],
    ]
    return "### Per backend\n\n" + _table(["", *names], rows)


def _save_rows(columns: list[dict[str, Any]]) -> list[list[str]]:
    labels: list[str] = []
    for column in columns:
        for label in column.get("save", {}).get("by_size", {}):
            if label not in labels:
                labels.append(label)
    rows = []
    for label in labels:
        cells = []
        for column in columns:
            figures = column.get("save", {}).get("by_size", {}).get(label)
            if not isinstance(figures, dict):
                cells.append(_error(column.get("save")))
                continue
            cells.append(
                f"{_num(figures['ours_per_s'])} / {_num(figures['raw_per_s'])} "
                f"= **{_num(figures['ratio'])}**"
            )
        rows.append([f"Saves/s {label}, ours / raw = ratio", *cells])
    if labels:
        added = [
            " / ".join(
                _num(column.get("save", {}).get("by_size", {}).get(label, {}).get("added_us"))
                for label in labels
            )
            for column in columns
        ]
        rows.append([f"One save, µs added over raw, {' / '.join(labels)}", *added])
    return rows


_BURST_SIDES = ("ours", "raw_sequential", "raw_pipelined")


def _bursts(results: dict[str, Any]) -> str:
    backends = results.get("backends", {})
    names = [name for name in _BACKENDS if isinstance(backends.get(name, {}).get("burst"), dict)]
    if not names:
        return ""
    columns = [backends[name]["burst"] for name in names]
    counts: list[str] = []
    for column in columns:
        counts += [count for count in column.get("by_lockers", {}) if count not in counts]
    rows = []
    for count in counts:
        figures = [column.get("by_lockers", {}).get(count) for column in columns]
        label = f"{_num(int(count))} lockers"
        rows += [
            [f"{label}: saves/s, ours / raw sequential / raw pipelined"]
            + [_sides(f, "saves_per_s") for f in figures],
            [f"{label}: ours ÷ raw sequential, ours ÷ raw pipelined"]
            + [_ratios(f) for f in figures],
            [f"{label}: CPU µs per save, same three"]
            + [_sides(f, "cpu_us_per_save") for f in figures],
            [f"{label}: p99 save latency in the burst (ms), same three"]
            + [_sides(f, "latency_ms") for f in figures],
            [f"{label}: ours after gc.freeze(), saves/s / CPU µs per save"]
            + [_frozen(f) for f in figures],
        ]
    title = "### Bursts: every loaded locker saves at once (1 KB, LockerService defaults)"
    return f"{title}\n\n" + _table(["", *names], rows)


def _sides(figures: Any, name: str) -> str:
    if not isinstance(figures, dict) or "ours" not in figures:
        return _error(figures)
    values = [figures[side][name] for side in _BURST_SIDES]
    return " / ".join(_num(v.get("p99") if isinstance(v, dict) else v) for v in values)


def _ratios(figures: Any) -> str:
    if not isinstance(figures, dict) or "ours" not in figures:
        return _error(figures)
    sequential, pipelined = figures["ratio_to_sequential"], figures["ratio_to_pipelined"]
    return f"**{_num(sequential)}**, **{_num(pipelined)}**"


def _frozen(figures: Any) -> str:
    if not isinstance(figures, dict) or "ours_gc_frozen" not in figures:
        return _error(figures)
    frozen = figures["ours_gc_frozen"]
    return f"{_num(frozen['saves_per_s'])} / {_num(frozen['cpu_us_per_save'])}"


def _peers(peers: dict[str, Any]) -> str:
    rows = []
    for backend, found in peers.get("backends", {}).items():
        if not isinstance(found, dict) or "error" in found:
            rows.append([backend, _error(found), _DASH, _DASH])
            continue
        for name, figures in found.get("systems", {}).items():
            ratio = figures.get("ours_ratio")
            rows.append(
                [backend, name, _num(figures.get("cycles_per_s")), _num(ratio) if ratio else _DASH]
            )
    title = "### Against other locking libraries: open exclusively, change, save, release (1 KB)"
    head = ["Backend", "Way", "Cycles/s", "ours ÷ this"]
    return f"{title}\n\n" + _table(head, rows)


def _trips(trips: Any) -> str:
    if not isinstance(trips, dict) or "load" not in trips:
        return _error(trips)
    keys = ("load", "save", "release", "handoff", "remote_change")
    return " / ".join(_num(trips.get(key)) for key in keys)


def _wire(trips: Any) -> str:
    wire = trips.get("wire") if isinstance(trips, dict) else None
    return _trips(wire) if isinstance(wire, dict) else _DASH


def _takeover(figures: Any) -> str:
    if not isinstance(figures, dict) or figures.get("p50") is None:
        return _error(figures)
    return (
        f"{_num(figures['p50'])} / {_num(figures['max'])} "
        f"(≤ {_num(figures['target_s'])}: {_num(figures['met'])})"
    )


def _frame(frame: dict[str, Any]) -> str:
    idle = frame.get("idle_frame_us", {})
    due = frame.get("due_locker_us", {})
    counts = list(idle)
    rows = [
        ["update() with nothing due, p50 / p99 (µs)"] + [_pair(idle[c]) for c in counts],
        ["Frame cost per due locker (µs)"] + [_num(due.get(c)) for c in counts],
    ]
    head = ["Loaded idle lockers"] + [_num(int(c)) for c in counts]
    return "### Frame cost (memory store)\n\n" + _table(head, rows)


def _memory(memory: dict[str, Any]) -> str:
    sizes = memory.get("by_data_size", {})
    labels = list(sizes)
    rows = [
        ["Data as JSON (bytes)"] + [_num(sizes[s]["data_json_bytes"]) for s in labels],
        ["Data as Python objects (bytes)"] + [_num(sizes[s]["data_object_bytes"]) for s in labels],
        ["Per loaded locker beyond its data (bytes)"]
        + [_num(sizes[s]["beyond_data_bytes"]) for s in labels],
    ]
    return "### Memory per loaded locker\n\n" + _table(["Record data", *labels], rows)


def _baselines(baselines: dict[str, Any]) -> str:
    systems = baselines.get("systems", {})
    names = list(systems)
    columns = [systems[name] for name in names]
    rows = [
        ["Handoff from a live holder, p50 / p99 (s)"]
        + [_pair(c.get("handoff_s")) for c in columns],
        ["Requests per handoff (both servers)"]
        + [_num(c.get("handoff_requests")) for c in columns],
        ["Takeover of a crashed holder, force, p50 / p99 (s)"]
        + [_pair(c.get("takeover_force_s")) for c in columns],
        ["Takeover of a crashed holder, waiting only, p50 / p99 (s)"]
        + [_pair(c.get("takeover_wait_s")) for c in columns],
    ]
    title = "### Against ProfileService and ProfileStore (virtual time, default settings)"
    names = [_SYSTEMS.get(name, name) for name in names]
    return f"{title}\n\n" + _table(["", *names], rows)
