"""``sessionlocker edit`` and ``sessionlocker send``: change a record by remote change.

Both append a message to the record's inbox (never touching its data or lock). The
holder, if a live one exists, applies it exactly once in its next save; otherwise the
tool loads the record in a session of its own, which applies it, saves and releases.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sessionlocker.cli import bulk
from sessionlocker.cli.display import Progress
from sessionlocker.cli.options import (
    CommandError,
    add_common,
    emit,
    guarded,
    open_admin_store,
    seconds,
)
from sessionlocker.cli.options import usage as bad_input
from sessionlocker.cli.records_io import admin_session, decode_stored, holder_state, read_record
from sessionlocker.core import strictjson
from sessionlocker.core.modes import LoadMode
from sessionlocker.core.patching import PATCH_KIND, diff
from sessionlocker.core.spec import check_key
from sessionlocker.drivers.service import LockerService
from sessionlocker.errors import LockUnavailable, StoreError
from sessionlocker.stores.base import Store

__all__ = ["deliver", "register"]

EDIT_HELP = f"""\
Change a record's data. With --patch, apply that JSON merge patch (RFC 7396: members
replace members, null removes one; '-' reads it from stdin). Otherwise open the data
in $VISUAL or $EDITOR and send what changed, as a merge patch (setting a value to null
cannot be expressed that way and is refused).

The change never overwrites a live holder: it is sent as a remote change of the
built-in kind '{PATCH_KIND}', which every sessionlocker service applies exactly once
through its own save (so its validator runs) without any handler to register. When no
live session holds the record, this tool loads it itself, applies the change, saves and
releases. It waits up to --timeout for the change to be applied; if the holder has not
applied it by then, it stays queued in the inbox (exit status 0, and says so)."""

SEND_HELP = """\
Append a remote change of kind KIND with body BODY (JSON) to a record's inbox. A live
holder applies it with its on_message handler for KIND (a built-in one for
'sessionlocker.patch'); a message of a kind with no handler stays in the inbox. The
record must exist. Without a live holder the message waits for the next load.

Bulk: with --all (every record of the namespace) or --keys-from FILE (one key a line,
'-' for stdin), give only KIND BODY: each record gets the change exactly once, as the
message BULK_ID/KEY (a rerun never delivers it twice). Each record done is noted in
the --progress file; after an interruption, run the same command with --resume to go
on where it stopped. Progress goes to stderr, a summary to stdout; exit status 1 when
a record refused the change (corrupt, too large) or the store failed."""

#: The progress file of a bulk send, unless --progress names another.
PROGRESS = "sessionlocker-send.progress"


def register(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``edit`` and ``send`` subcommands."""
    parser = subcommands.add_parser(
        "edit",
        help="change a record's data (editor or JSON merge patch), safely",
        description=EDIT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common(parser)
    parser.add_argument("key", metavar="KEY")
    parser.add_argument("--patch", metavar="JSON", help="a JSON merge patch; '-' for stdin")
    parser.add_argument(
        "--timeout", type=seconds, default=60.0, metavar="SECONDS", help="how long to wait (60)"
    )
    parser.set_defaults(run=guarded(run_edit), parser=parser)

    parser = subcommands.add_parser(
        "send",
        help="append a remote change to a record's inbox",
        description=SEND_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common(parser)
    parser.add_argument(
        "arguments",
        nargs="+",
        metavar="[KEY] KIND BODY",
        help="BODY is JSON ('-' reads it from stdin); no KEY with --all or --keys-from",
    )
    many = parser.add_mutually_exclusive_group()
    many.add_argument("--all", action="store_true", help="send to every record of the namespace")
    many.add_argument("--keys-from", metavar="FILE", help="send to the keys in FILE ('-': stdin)")
    parser.add_argument(
        "--id", dest="bulk_id", metavar="BULK_ID", help="the bulk send's id (default: a new one)"
    )
    parser.add_argument(
        "--progress", metavar="FILE", default=PROGRESS, help=f"the progress file ({PROGRESS})"
    )
    parser.add_argument(
        "--resume", action="store_true", help="go on with the bulk send in the progress file"
    )
    parser.set_defaults(run=guarded(run_send), parser=parser)


def run_edit(args: argparse.Namespace) -> int:
    """Work out the patch, then deliver it."""
    store = open_admin_store(args)
    try:
        stored = read_record(store, args, args.key)
        if args.patch is not None:
            patch = _json(args.patch, "--patch")
        else:
            patch = _edited_patch(stored.record.data)
        if patch == {}:
            emit(args, f"{args.key}: no change", {"key": args.key, "changed": False})
            return 0
        outcome = deliver(store, args, args.key, PATCH_KIND, patch, timeout=args.timeout)
    finally:
        store.close()
    emit(args, f"{args.key}: {outcome['how']}", {"key": args.key, "changed": True, **outcome})
    return 0


def run_send(args: argparse.Namespace) -> int:
    """Deliver the message (applied now only by a live holder), or a bulk send."""
    if args.all or args.keys_from is not None:
        return run_bulk(args)
    if len(args.arguments) != 3:
        bad_input("give KEY KIND BODY (or KIND BODY with --all or --keys-from)")
    if args.resume or args.bulk_id is not None:
        bad_input("--resume and --id are for a bulk send (--all or --keys-from)")
    key, kind, text = args.arguments
    body = _json(text, "BODY")
    store = open_admin_store(args)
    try:
        read_record(store, args, key)
        message_id = _service_send(store, args, key, kind, body)
    finally:
        store.close()
    emit(args, f"{key}: sent {kind} {message_id}", {"key": key, "id": message_id})
    return 0


def run_bulk(args: argparse.Namespace) -> int:
    """Send one change to many records, once each, noting progress (see ``cli.bulk``)."""
    if len(args.arguments) != 2:
        bad_input("with --all or --keys-from, give KIND BODY (no KEY)")
    kind, text = args.arguments
    source = "all" if args.all else args.keys_from
    wanted = bulk.new_bulk(kind, _json(text, "BODY"), args.namespace, source, args.bulk_id)
    path = Path(args.progress)
    if args.resume:
        if not path.exists():
            bad_input(f"--resume: there is no progress file {path}")
        planned, done = bulk.read_progress(path)
        bulk.check_resumable(planned, wanted)
    elif path.exists():
        bad_input(f"{path} exists: add --resume to go on with that send, or remove it")
    else:
        planned, done = wanted, {}
    keys = None if args.all else [check_key(key) for key in bulk.keys_from(args.keys_from)]
    store = open_admin_store(args)
    try:
        if keys is None:
            head = f"{args.namespace}/"
            keys = sorted(name[len(head) :] for name in store.keys(head))
        tally = _send_bulk(store, args, planned, keys, done=done, path=path)
    finally:
        store.close()
    emit(args, tally.as_text(planned, len(keys)), tally.as_json(planned, len(keys)))
    return 1 if tally.failed else 0


def _send_bulk(
    store: Store,
    args: argparse.Namespace,
    planned: bulk.Bulk,
    keys: list[str],
    *,
    done: dict[str, str],
    path: Path,
) -> bulk.Tally:
    from sessionlocker.cli.options import admin_spec  # noqa: PLC0415 (keeps imports short)

    service = LockerService(store, admin_spec(args), workers=1)
    try:
        with path.open("a") as progress:
            if not args.resume:
                progress.write(json.dumps(planned.header()) + "\n")
            try:
                with Progress("send", len(keys)) as report:
                    return bulk.send_all(service, planned, keys, progress, done=done, report=report)
            except StoreError as exc:
                raise CommandError(
                    f"store error: {exc}; stopped, see {path}: run again with --resume"
                ) from exc
    finally:
        service.close()


def deliver(
    store: Store, args: argparse.Namespace, key: str, kind: str, body: Any, *, timeout: float
) -> dict[str, Any]:
    """Send the message; see it applied by the live holder or by a session of ours."""
    message_id = _service_send(store, args, key, kind, body)
    deadline = time.monotonic() + timeout
    while True:
        stored = read_record(store, args, key)
        if all(m.id != message_id for m in stored.record.inbox):
            return {"id": message_id, "how": f"change {message_id} applied"}
        if holder_state(store, stored.record.lock) != "live":
            try:
                with admin_session(store, args, key, LoadMode.REPEAT, _left(deadline)):
                    pass  # loading applies the inbox; the release saves it
            except LockUnavailable:
                pass  # a holder came meanwhile: it applies the message
            continue
        if time.monotonic() >= deadline:
            how = f"change {message_id} queued: the holder has not applied it yet"
            return {"id": message_id, "how": how, "queued": True}
        time.sleep(0.05)


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise CommandError("timed out waiting for the record's lock")
    return left


def _service_send(store: Store, args: argparse.Namespace, key: str, kind: str, body: Any) -> str:
    from sessionlocker.cli.options import admin_spec  # noqa: PLC0415 (keeps imports short)

    current = store.read(f"{args.namespace}/{key}")
    schema = None if current is None else decode_stored(key, current.value).schema
    service = LockerService(store, admin_spec(args, schema), workers=1)
    try:
        return service.send(key, kind, body)
    finally:
        service.close()


def _json(text: str, what: str) -> Any:
    if text == "-":
        text = sys.stdin.read()
    try:
        return strictjson.loads(text)
    except ValueError as exc:
        bad_input(f"{what} is not JSON: {exc}")


def _edited_patch(data: Any) -> Any:
    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR")
    if not editor:
        bad_input("set $EDITOR (or $VISUAL), or give the change with --patch")
    with tempfile.TemporaryDirectory(prefix="sessionlocker-edit-") as folder:
        path = Path(folder) / "data.json"
        path.write_text(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
        finished = subprocess.run([*shlex.split(editor), str(path)], check=False)
        if finished.returncode != 0:
            raise CommandError(f"the editor exited with status {finished.returncode}; no change")
        edited = _json(path.read_text(), "the edited data")
    try:
        return diff(data, edited)
    except ValueError as exc:
        bad_input(str(exc))
