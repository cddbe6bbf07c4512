"""``sessionlocker``: the command-line entry point.

Each subcommand is a module with ``register(subcommands)``, which adds its parser and
sets two defaults on it: ``run``, a function from the parsed arguments to an exit
code, and ``parser``, the subcommand's own parser (for its error messages).
Adding a subcommand means writing such a module and listing it in ``COMMANDS``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version
from types import ModuleType

from sessionlocker.cli import (
    bench,
    erasure,
    locks,
    migrate,
    records,
    remote,
    restore,
    simulate,
    transfer,
)
from sessionlocker.cli.options import Parser, check_required, complain

__all__ = ["COMMANDS", "build_parser", "main"]

#: The subcommand modules, in the order ``--help`` lists them.
COMMANDS: tuple[ModuleType, ...] = (
    simulate,
    migrate,
    bench,
    records,
    locks,
    remote,
    transfer,
    restore,
    erasure,
)

DESCRIPTION = """\
Session-locked documents: a process takes exclusive, crash-safe ownership of a stored
record, autosaves it, and hands it to the next owner."""

EPILOG = """\
Run 'sessionlocker COMMAND --help' for the options of a command.
--store and --namespace default to $SESSIONLOCKER_STORE and $SESSIONLOCKER_NAMESPACE."""


def build_parser() -> argparse.ArgumentParser:
    """The parser of the whole command, with every subcommand."""
    parser = Parser(
        prog="sessionlocker",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    subcommands = parser.add_subparsers(
        title="commands", dest="command", metavar="COMMAND", required=True
    )
    for command in COMMANDS:
        command.register(subcommands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command with ``argv`` (default: ``sys.argv[1:]``); return the exit code.

    0: success; 1: the command ran and found a problem; 2: bad command line; 130:
    interrupted; 141: its output was closed early (``| head``). Whatever goes wrong, the
    command ends with one line on stderr, never a traceback.
    """
    parser = build_parser()
    try:
        args, unknown = parser.parse_known_args(argv)
        if unknown:  # say so in the subcommand's words, with its usage line
            command: argparse.ArgumentParser = getattr(args, "parser", parser)
            command.error(f"unrecognized arguments: {' '.join(unknown)}")
        check_required(args)
    except SystemExit as exc:  # argparse exits on --help, --version and usage errors
        return exc.code if isinstance(exc.code, int) else 2
    name = f"sessionlocker {args.command}"
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        code = run(args)
        sys.stdout.flush()  # a closed pipe shows here, not at exit where it cannot be caught
    except SystemExit as exc:  # a subcommand refused an argument with parser.error()
        return exc.code if isinstance(exc.code, int) else 2
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return _output_closed(name)
    except OSError as exc:
        complain(args.command, _os_error(exc))
        return 1
    except Exception as exc:  # a bug: still one line, and the traceback only on request
        if os.environ.get("SESSIONLOCKER_TRACEBACK"):
            raise
        complain(
            args.command,
            f"unexpected {type(exc).__name__}: {exc} (set SESSIONLOCKER_TRACEBACK=1 to see where)",
        )
        return 1
    return code


#: Exit status when the reader of our output went away (128 + SIGPIPE, as a shell says).
EXIT_PIPE = 141


def _output_closed(name: str) -> int:
    """The reader of stdout is gone: say so once, and let nothing more be written there.

    As the Python documentation advises (``signal``, "Note on SIGPIPE"): point stdout at
    devnull, so the flush at interpreter exit cannot fail a second time.
    """
    try:
        target = sys.stdout.fileno()
    except (OSError, ValueError):  # not a real file (captured output): nothing to redirect
        target = None
    if target is not None:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, target)
        os.close(devnull)
    print(f"{name}: output closed early (broken pipe); stopped", file=sys.stderr)
    return EXIT_PIPE


def _os_error(exc: OSError) -> str:
    """``exc`` in one line: what failed on which file."""
    reason = exc.strerror or str(exc)
    if exc.filename is None:
        return reason
    return f"{exc.filename}: {reason}"


def _version() -> str:
    try:
        return version("sessionlocker")
    except PackageNotFoundError:
        return "(version unknown: not installed as a package)"


if __name__ == "__main__":
    sys.exit(main())
