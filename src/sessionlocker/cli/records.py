"""``sessionlocker list`` and ``sessionlocker show``: look at records, change nothing."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from sessionlocker.cli.display import Column, table
from sessionlocker.cli.options import (
    EXIT_FAILED,
    EXIT_OK,
    CommandError,
    add_common,
    complain,
    emit,
    empty_namespace,
    guarded,
    open_admin_store,
)
from sessionlocker.cli.records_io import (
    Stored,
    decode_stored,
    holder_state,
    lock_json,
    read_record,
)
from sessionlocker.core.record import Lock, Record
from sessionlocker.stores.base import KeepsHistory, Store

__all__ = ["register"]

LIST_HELP = """\
List the records of a namespace whose key starts with PREFIX: key, lock owner (the
session holding it, and whether that session's lease is live or expired), how long
it has been held, and the stored size in bytes. Reads only. A corrupt record is listed
as such and named on stderr, and the exit status is then 1; so it is for a namespace
with no records (the namespaces that have some are named)."""

SHOW_HELP = """\
Show one record: its data, version, lock, release requests, inbox and outbox,
purchases and product credit, user ids, and the revisions the store keeps of it.
Reads only. Exit status 1 when there is no such record or it is corrupt."""

#: The columns of ``list``.
LIST_COLUMNS = (
    Column(title="KEY"),
    Column(title="OWNER"),
    Column(title="STATE"),
    Column(title="AGE", right=True),
    Column(title="BYTES", right=True),
)


def register(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``list`` and ``show`` subcommands."""
    parser = subcommands.add_parser(
        "list",
        help="list records: key, lock owner, age, size",
        description=LIST_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common(parser, spec=False)
    parser.add_argument("prefix", nargs="?", default="", metavar="PREFIX")
    parser.set_defaults(run=guarded(run_list), parser=parser)

    parser = subcommands.add_parser(
        "show",
        help="show one record: data, lock, inbox, purchases, versions",
        description=SHOW_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common(parser, spec=False)
    parser.add_argument("key", metavar="KEY")
    parser.set_defaults(run=guarded(run_show), parser=parser)


def run_list(args: argparse.Namespace) -> int:
    """Print one line (or JSON object) per record."""
    store = open_admin_store(args, read_only=True)
    try:
        head = f"{args.namespace}/"
        rows = []
        for name in sorted(store.keys(head + args.prefix)):
            versioned = store.read(name)
            if versioned is not None:
                rows.append(_row(store, name[len(head) :], versioned.value))
        empty = None if rows else empty_namespace(store, args)
    finally:
        store.close()
    if empty is not None:
        raise CommandError(empty)
    cells = [
        [r["key"], r["owner"] or "-", r["state"], _age(r["age"]), f"{r['bytes']:,}"] for r in rows
    ]
    human = f"{table(LIST_COLUMNS, cells)}\n{len(rows):,} records"
    emit(args, human, rows)
    corrupt = [row for row in rows if row["state"] == "corrupt"]
    for row in corrupt:
        complain("list", row["problem"])
    return EXIT_FAILED if corrupt else EXIT_OK


def _row(store: Store, key: str, value: bytes) -> dict[str, Any]:
    try:
        lock: Lock | None = decode_stored(key, value).lock
    except CommandError as exc:
        return {
            "key": key,
            "owner": None,
            "state": "corrupt",
            "age": None,
            "bytes": len(value),
            "problem": str(exc),
        }
    return {
        "key": key,
        "owner": None if lock is None else lock.session,
        "state": holder_state(store, lock),
        "age": None if lock is None else round(max(time.time() - lock.acquired, 0.0), 3),
        "bytes": len(value),
    }


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def run_show(args: argparse.Namespace) -> int:
    """Print the record."""
    store = open_admin_store(args, read_only=True)
    try:
        stored = read_record(store, args, args.key)
        shown = describe(store, stored)
        if isinstance(store, KeepsHistory):
            revisions = [v.revision for v in store.history(f"{args.namespace}/{args.key}")]
            shown["versions"] = revisions
    finally:
        store.close()
    emit(args, as_text(shown), shown)
    return 0


def describe(store: Store, stored: Stored) -> dict[str, Any]:
    """The record as a JSON object for ``show``."""
    record: Record = stored.record
    return {
        "key": stored.key,
        "revision": stored.versioned.revision,
        "bytes": len(stored.versioned.value),
        "schema": record.schema,
        "patch": record.patch,
        "epoch": record.epoch,
        "lock": lock_json(store, record.lock),
        "release_requests": [{"by": r.by, "at": r.at} for r in record.release_requests],
        "inbox": [{"id": m.id, "kind": m.kind, "body": m.body} for m in record.inbox],
        "outbox": [{"id": m.id, "kind": m.kind, "to": m.to} for m in record.outbox],
        "purchases": [[p.product_id, p.purchase_id, p.at] for p in record.purchases],
        "credit": dict(record.credit),
        "user_ids": list(record.user_ids),
        "tags": dict(record.tags),
        "data": record.data,
    }


def as_text(shown: dict[str, Any]) -> str:
    """The human form of ``describe``'s output."""
    lock = shown["lock"]
    held = "free" if lock is None else f"{lock['session']} ({lock['state']}, {_age(lock['age'])})"
    lines = [
        f"key        {shown['key']}",
        f"revision   {shown['revision']} ({shown['bytes']:,} bytes)",
        f"version    schema {shown['schema']}, patch {shown['patch']}; epoch {shown['epoch']}",
        f"lock       {held}",
        f"requests   {len(shown['release_requests'])} release request(s)",
        f"inbox      {len(shown['inbox'])} message(s)"
        + "".join(f"\n  {m['id']} {m['kind']} {json.dumps(m['body'])}" for m in shown["inbox"]),
        f"outbox     {len(shown['outbox'])} message(s)",
        f"purchases  {len(shown['purchases'])}; credit {json.dumps(shown['credit'])}",
        f"user ids   {', '.join(shown['user_ids']) or '-'}",
        f"tags       {json.dumps(shown['tags'], sort_keys=True, ensure_ascii=False)}",
    ]
    if "versions" in shown:
        lines.append(f"versions   {', '.join(map(str, shown['versions'])) or '-'}")
    lines.append("data")
    lines.append(json.dumps(shown["data"], indent=2, sort_keys=True, ensure_ascii=False))
    return "\n".join(lines)
