"""The ``moga`` command line: one module per noun (``moga/cli/<noun>.py`` registers its sub-commands), the
parser and the one error boundary here. Each sub-command is a thin wrapper over a library function; user
errors (``UserError``) print one line and exit 2, never a traceback."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from supernet.errors import UserError


class OneLineErrors(argparse.ArgumentParser):
    """A usage mistake is one line too (``moga: error: ...``, exit 2), like every other error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"moga: error: {self.prog}: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    from moga.cli import arch, export, front, lut, rank_corr, report, retrain, run, search, supernet

    parser = OneLineErrors(prog="moga", description="Hardware-aware neural architecture search (MoGA / FairNAS).")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for noun in (arch, export, lut, supernet, run, search, front, report, retrain, rank_corr):
        noun.register(sub)
    return parser


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """The parsed command line; ``key=value`` overrides may also come after the options (``... --pick 3
    retrain.epochs=1``). A command's ``overrides`` positional takes those before its first option; the words
    argparse leaves over after the options, up to the first unknown option, are overrides too (for a command
    that takes them), and anything else is a usage error."""
    args, rest = parser.parse_known_args(argv)
    first_option = next((i for i, word in enumerate(rest) if word.startswith("-")), len(rest))
    if isinstance(getattr(args, "overrides", None), list):
        args.overrides += rest[:first_option]
        rest = rest[first_option:]
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    return args


# the operation an OSError interrupted, by the innermost call in its traceback that names one
_OPERATIONS = {
    "mkdir": "create directory",
    "makedirs": "create directory",
    "mkstemp": "create a file in",
    "open": "open",
    "read_text": "read",
    "read_bytes": "read",
    "write_text": "write",
    "write_bytes": "write",
    "savefig": "write",
    "replace": "replace",
    "rename": "rename",
    "unlink": "delete",
    "rmtree": "delete",
    "rmdir": "delete",
    "iterdir": "list",
    "scandir": "list",
    "listdir": "list",
    "copyfile": "copy",
    "copytree": "copy",
    "stat": "inspect",
}


def os_error_line(exc: OSError) -> str:
    """``cannot <operation> <path>: <reason>`` for an OSError that reached the command line."""
    import re
    import traceback

    from supernet.errors import os_error_message

    operation = "access"
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        called = [frame.name, *re.findall(r"(\w+)\(", frame.line or "")]
        hit = next((_OPERATIONS[c] for c in reversed(called) if c in _OPERATIONS), None)
        if hit:
            operation = hit
            break
    return os_error_message(exc, operation)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. The error boundary: a ``UserError`` or an ``OSError`` on a path becomes one line on
    stderr and exit code 2 (writes are atomic, so nothing is left half-written); Ctrl-C is exit 130."""
    try:
        args = parse_args(build_parser(), argv)
    except SystemExit as exc:  # --help, or a usage error already printed as one line
        return int(exc.code or 0)
    try:
        args.func(args)
    except UserError as exc:
        print(f"moga: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"moga: error: {os_error_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("moga: interrupted", file=sys.stderr)
        return 130
    return 0
