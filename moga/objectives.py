"""Objectives and constraints by name.

Metrics every evaluated architecture gets: ``accuracy`` (supernet estimate, %), one latency per table
(``latency`` is the first table configured, ``latency:<table>`` names one), ``params`` and ``macs``. A table
whose header names another metric (an imported energy table: ``metric: energy``, ``unit: mJ``) gives
``<metric>:<table>`` instead (``energy:<table>``, minimised by default); naming it ``latency:<table>`` is refused.
An objective picks a metric, a direction and a weight; a constraint is ``"<metric> <=|>= <value>"``.
Inside pymoo everything is minimised, so maximised objectives are negated.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from supernet.errors import UserError

if TYPE_CHECKING:
    from moga.config import SearchConfig

MAXIMISED_BY_DEFAULT = {"accuracy": True, "params": True, "latency": False, "macs": False}
_CONSTRAINT = re.compile(r"^\s*(?P<metric>[A-Za-z_]+(?::[\w.-]+)?)\s*(?P<op><=|>=)\s*(?P<value>[-+0-9.eE_]+)\s*$")


def column(metric: str, tables: list[str]) -> str:
    """CSV column of a metric: ``latency_ms`` for the first table, ``latency_ms:<name>`` for others."""
    if metric == "latency" or metric == f"latency:{tables[0] if tables else ''}":
        return "latency_ms"
    if metric.startswith("latency:"):
        return f"latency_ms:{metric.split(':', 1)[1]}"
    return metric


def resolve_metric(metric: str, tables: list[str], others: dict[str, str] | None = None) -> str:
    """Canonical metric name; ``latency`` -> ``latency:<first table>``. Unknown names are user errors.
    ``others``: table -> metric of the tables that hold something else than latency (``energy``)."""
    others = others or {}
    base, _, table = metric.partition(":")
    if base == "latency" and table in others:
        raise UserError(f"table {table!r} holds {others[table]}, not latency: name it {others[table]}:{table}")
    if base == "latency":
        if not tables:
            raise UserError("a latency objective or constraint needs a latency table (lut.tables is empty)")
        table = table or tables[0]
        if table not in tables:
            raise UserError(f"unknown latency table {table!r} in {metric!r}: the experiment has {', '.join(tables)}")
        return f"latency:{table}"
    if base in set(others.values()):
        if others.get(table) != base:
            named = [t for t, m in others.items() if m == base]
            raise UserError(f"{metric!r} names no {base} table: the experiment's {base} tables are {', '.join(named)} (use {base}:<table>)")
        return metric
    if base in ("accuracy", "params", "macs") and not table:
        return base
    extra = "".join(f", {m}:<table>" for m in sorted(set(others.values())))
    raise UserError(f"unknown metric {metric!r}: use accuracy, latency, latency:<table>{extra}, params or macs")


@dataclass(frozen=True)
class Objective:
    metric: str  # canonical: accuracy | latency:<table> | params | macs
    weight: float
    maximize: bool

    def to_minimised(self, values: np.ndarray) -> np.ndarray:
        return -values if self.maximize else values


@dataclass(frozen=True)
class Constraint:
    metric: str
    op: str  # <= or >=
    value: float
    text: str

    def violation(self, values: np.ndarray) -> np.ndarray:
        """pymoo convention: <= 0 is satisfied."""
        return values - self.value if self.op == "<=" else self.value - values


def parse_search(search: SearchConfig, tables: list[str], others: dict[str, str] | None = None) -> tuple[list[Objective], list[Constraint]]:
    """The objectives and constraints of a ``search`` config section, resolved against the experiment's tables."""
    objectives = make_objectives([(o.name, o.weight, o.maximize) for o in search.objectives], tables, others)
    return objectives, [parse_constraint(c, tables, others) for c in search.constraints]


def make_objectives(
    specs: list[tuple[str, float, bool | None]], tables: list[str], others: dict[str, str] | None = None
) -> list[Objective]:
    """Objectives from (name, weight, maximize) specs; the weights are checked where they are read (``moga.config``)."""
    objectives = []
    for name, weight, maximize in specs:
        metric = resolve_metric(name, tables, others)
        default = MAXIMISED_BY_DEFAULT.get(metric.split(":")[0], False)  # a table's other metric (energy): minimised
        objectives.append(Objective(metric, float(weight), default if maximize is None else maximize))
    if len({o.metric for o in objectives}) != len(objectives):
        raise UserError("an objective is listed twice")
    return objectives


def constraint_metric(text: str) -> str | None:
    """The metric a constraint reads, without its table (``latency`` for ``latency:pixel3 <= 12``); None if
    ``text`` is no constraint (``parse_constraint`` says why)."""
    match = _CONSTRAINT.match(text)
    return match["metric"].partition(":")[0] if match else None


def parse_constraint(text: str, tables: list[str], others: dict[str, str] | None = None) -> Constraint:
    match = _CONSTRAINT.match(text)
    if not match:
        raise UserError(f"constraint {text!r} is not of the form '<metric> <= <number>' or '<metric> >= <number>'")
    try:
        value = float(match["value"])
    except ValueError:
        raise UserError(f"constraint {text!r}: {match['value']!r} is not a number") from None
    return Constraint(resolve_metric(match["metric"], tables, others), match["op"], value, text.strip())


def check_satisfiable(constraints: list[Constraint], bounds: dict[str, tuple[float, float]]) -> None:
    """Refuse constraints that no architecture of the space can meet (``bounds`` = exact metric range)."""
    for c in constraints:
        if c.metric not in bounds:
            continue
        lo, hi = bounds[c.metric]
        if (c.op == "<=" and lo > c.value) or (c.op == ">=" and hi < c.value):
            raise UserError(f"constraint {c.text!r} cannot be met: {c.metric} ranges over [{lo:.6g}, {hi:.6g}] in this search space")
