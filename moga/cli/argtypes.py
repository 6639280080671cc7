"""Argument types and shared arguments of the command line: a count or amount out of range is a usage error
naming the option (``argument --budget: expected a number > 0, got -5``), refused before the command does anything."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def at_least(minimum: int) -> Callable[[str], int]:
    """An ``int`` argument of ``minimum`` or more."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number >= {minimum}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected a whole number >= {minimum}, got {value}")
        return value

    parse.__name__ = f"int>={minimum}"
    return parse


def positive_float(text: str) -> float:
    """A finite ``float`` argument greater than zero (a latency budget, a latency limit)."""
    return _finite(text, "number > 0", lambda value: value > 0)


def finite_float(text: str) -> float:
    """A finite ``float`` argument (an accuracy floor)."""
    return _finite(text, "number", lambda value: True)


def _finite(text: str, what: str, accept: Callable[[float], bool]) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a {what}, got {text!r}") from None
    if not (math.isfinite(value) and accept(value)):
        raise argparse.ArgumentTypeError(f"expected a finite {what}, got {text}")
    return value


def add_actions(sub: argparse._SubParsersAction, noun: str, help: str) -> argparse._SubParsersAction:
    """The sub-commands of a noun that has several (``moga lut build``, ``moga lut show``, ...)."""
    return sub.add_parser(noun, help=help).add_subparsers(dest=f"{noun}_command", required=True, metavar="ACTION")


def add_overrides(p: argparse.ArgumentParser, help: str = "section.key=value config overrides") -> None:
    """The ``key=value`` config overrides of a command that loads an experiment; more may follow its options
    (``moga.cli.parse_args`` appends those)."""
    p.add_argument("overrides", nargs="*", default=[], help=help)  # a default: argparse would list it as required
