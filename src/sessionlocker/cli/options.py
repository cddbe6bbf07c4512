"""What the admin commands share: their common options, the spec, the store, the output.

Every admin command takes ``--store URL``, ``--namespace NAME``, ``--json`` and
``--spec MODULE:NAME``. ``--store`` and ``--namespace`` default to the environment
variables ``SESSIONLOCKER_STORE`` and ``SESSIONLOCKER_NAMESPACE``; a flag given wins,
and an empty variable counts as unset. A command's ``run`` is wrapped by ``guarded`` so that every
failure ends as one clear line on stderr and an exit code, never a traceback:

- 2: a bad command line or bad input (a bad URL, bad JSON, an unknown revision);
- 1: the command ran and could not do it (unknown key, unreachable store, a lock that
  could not be had, data refused).

The spec. With ``--spec`` the command uses that spec (namespace, migrations,
validator), exactly as a server would, so a record is migrated when a command loads
it. Without it, ``admin_spec`` makes a permissive spec at the record's own stored
version: it never migrates and refuses nothing it can keep, so an operator can look
at and fix any readable record, including one written by newer code than this tool.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from sessionlocker.core.migrations import Migrations
from sessionlocker.core.spec import Spec
from sessionlocker.errors import DataError, LockError, SessionLockerError, StoreError, UsageError
from sessionlocker.stores import open_store
from sessionlocker.stores.base import Store
from sessionlocker.stores.opening import parse_store_url

__all__ = [
    "CommandError",
    "Parser",
    "add_common",
    "add_store",
    "admin_spec",
    "check_required",
    "complain",
    "emit",
    "empty_namespace",
    "guarded",
    "open_admin_store",
    "seconds",
    "shortened",
    "store_key",
]

#: Exit codes of the admin commands.
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class CommandError(SessionLockerError):
    """A command cannot go on: ``message`` for the operator, ``code`` to exit with."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


def add_common(parser: argparse.ArgumentParser, *, spec: bool = True) -> None:
    """Add ``--store``, ``--namespace``, ``--json`` (and ``--spec`` unless ``spec=False``)."""
    add_store(parser)
    parser.add_argument(
        "--namespace",
        default=from_environment("namespace"),
        metavar="NAME",
        help="the Spec.namespace the records live under (keys are NAME/KEY in the store); "
        f"default: ${ENVIRONMENT['namespace']}",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    if spec:
        parser.add_argument(
            "--spec",
            metavar="MODULE:NAME",
            help="load records with this Spec (migrating them as a server would); "
            "default: a permissive spec at each record's stored version",
        )


#: The environment variable each option falls back to when not given.
ENVIRONMENT = {"store": "SESSIONLOCKER_STORE", "namespace": "SESSIONLOCKER_NAMESPACE"}


class Missing(str):
    """The default of an option left out whose environment variable is unset or empty."""


def from_environment(option: str) -> str:
    """The value of ``option``'s environment variable; an unset or empty one is missing.

    An empty variable counts as unset (as ``${VAR:-default}`` does in a shell): the
    option is then required, and the error says the variable is empty.
    """
    name = ENVIRONMENT[option]
    value = os.environ.get(name)
    if value:
        return value
    return Missing("empty" if value == "" else "unset")


def add_store(parser: argparse.ArgumentParser) -> None:
    """Add ``--store``, defaulting to ``$SESSIONLOCKER_STORE``."""
    parser.add_argument(
        "--store",
        default=from_environment("store"),
        metavar="URL",
        help=f"e.g. sqlite:///game.db, redis://host/0; default: ${ENVIRONMENT['store']}",
    )


def check_required(args: argparse.Namespace) -> None:
    """Stop with a usage error (exit 2) when ``--store`` or ``--namespace`` is missing."""
    for option, variable in ENVIRONMENT.items():
        value = getattr(args, option, None)
        if isinstance(value, Missing):
            state = "set but empty" if value == "empty" else "not set"
            parser: argparse.ArgumentParser = args.parser
            parser.error(f"--{option} is required ({variable} is {state})")


def seconds(text: str) -> float:
    """An argparse type: a positive, finite number of seconds (``nan`` and ``inf`` refused)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return value


def guarded(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """``run`` with every expected failure turned into a message on stderr and an exit code."""

    def wrapped(args: argparse.Namespace) -> int:
        try:
            return run(args)
        except CommandError as exc:
            return _fail(args, str(exc), exc.code)
        except UsageError as exc:
            return _fail(args, str(exc), EXIT_USAGE)
        except StoreError as exc:
            return _fail(args, f"store error: {exc}", EXIT_FAILED)
        except (LockError, DataError) as exc:
            return _fail(args, f"{type(exc).__name__}: {exc}", EXIT_FAILED)
        except SessionLockerError as exc:
            return _fail(args, str(exc), EXIT_FAILED)

    wrapped.__doc__ = run.__doc__
    return wrapped


def usage(message: str) -> NoReturn:
    """Stop with ``message`` and exit code 2 (bad input)."""
    raise CommandError(message, EXIT_USAGE)


def open_admin_store(args: argparse.Namespace, *, read_only: bool = False) -> Store:
    """The store ``--store`` names, checked to answer (an unreachable one fails here).

    ``read_only`` commands refuse a SQLite file that does not exist (opening it would
    create an empty database, and the command would report on nothing).
    """
    if read_only:
        _refuse_missing_file(args.store)
    store = open_store(args.store)
    try:
        store.read(store_key(args, "-"))  # one round trip: a store that is down says so now
    except StoreError as exc:
        store.close()
        raise CommandError(f"cannot reach the store {_redacted(args.store)}: {exc}") from exc
    return store


def _refuse_missing_file(url: str) -> None:
    try:
        _, parsed = parse_store_url(url)
    except UsageError:
        return  # open_store says what is wrong with it
    path = parsed.path[1:]
    if parsed.scheme == "sqlite" and path and not Path(path).exists():
        usage(f"no such store file: {path}")


def empty_namespace(store: Store, args: argparse.Namespace) -> str | None:
    """When ``--namespace`` holds no record: a sentence saying so and naming those that do."""
    if next(iter(store.keys(f"{args.namespace}/")), None) is not None:
        return None
    found = sorted({key.split("/", 1)[0] for key in store.keys("") if "/" in key})
    others = ", ".join(repr(name) for name in found) if found else "none"
    return f"namespace {args.namespace!r} has no records (namespaces with records: {others})"


def store_key(args: argparse.Namespace, key: str) -> str:
    """Where ``key`` of ``--namespace`` lives in the store."""
    return f"{args.namespace}/{key}"


def admin_spec(args: argparse.Namespace, stored_schema: int | None = None) -> Spec:
    """The spec to load ``--namespace`` with: ``--spec``, or the permissive one.

    The permissive spec runs at ``stored_schema`` (the version of the record about to
    be loaded; 1 for a new one): its migrations are identity steps marked compatible,
    and a record exactly at its version is never migrated or patched.
    """
    if getattr(args, "spec", None):
        from sessionlocker.cli.migrate import load_spec  # noqa: PLC0415 (imports user code)

        spec = load_spec(args.spec)
        if spec.namespace != args.namespace:
            usage(f"--spec {args.spec} is for namespace {spec.namespace!r}, not {args.namespace!r}")
        return spec
    version = max(stored_schema or 1, 1)
    migrations = Migrations()
    for step in range(1, version):
        migrations.step(step, _same, compatible=True)
    return Spec(args.namespace, dict, version=version, migrations=migrations)


def _same(data: Any) -> Any:
    return data


def emit(args: argparse.Namespace, human: str, data: object) -> None:
    """Print ``data`` as one line of JSON with ``--json``, else the ``human`` text."""
    print(json.dumps(data, sort_keys=True) if args.json else human)


def _fail(args: argparse.Namespace, message: str, code: int) -> int:
    complain(getattr(args, "command", None) or "", message)
    return code


#: The longest line a command writes on stderr.
LONGEST_LINE = 199


def complain(command: str, message: str) -> None:
    """Say ``message`` on stderr as one ``sessionlocker COMMAND: ...`` line.

    A line longer than ``LONGEST_LINE`` (a long key or value quoted in it) loses its
    middle, so its start and its end (often the hint) both stay readable.
    """
    name = f"sessionlocker {command}" if command else "sessionlocker"
    print(shortened(f"{name}: {message}"), file=sys.stderr, flush=True)


def shortened(line: str, limit: int = LONGEST_LINE) -> str:
    """``line`` on one line, its middle cut out when it is longer than ``limit``."""
    line = " ".join(line.split())
    if len(line) <= limit:
        return line
    keep = limit - 5
    return f"{line[: keep * 3 // 4]} ... {line[-(keep - keep * 3 // 4) :]}"


class Parser(argparse.ArgumentParser):
    """argparse's parser, whose error lines are cut like every other line (``complain``)."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, shortened(f"{self.prog}: error: {message}") + "\n")


def _redacted(url: str) -> str:
    """``url`` without a password (it may be shown in a terminal or a log)."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in credentials:
        return url
    return f"{scheme}://{credentials.split(':', 1)[0]}:***@{host}"
