"""Objectives and constraints by name.

Metrics every evaluated architecture gets: ``accuracy`` (the supernet's estimate, %), one latency per table
(``latency`` is the first table configured, ``latency:<table>`` names one), ``params`` and ``macs``. A table
whose header names another metric (an imported energy table: ``metric: energy``, ``unit: mJ``) gives
``<metric>:<table>`` instead (``energy:<table>``, minimised by default); naming it ``latency:<table>`` is refused.
An objective picks a metric, a direction and a weight; a constraint is ``"<metric> <=|>= <value>"``.
Inside pymoo everything is minimised, so maximised objectives are negated.

The config names the supernet's estimate ``accuracy`` whatever it is; its metric (record key, CSV column, front and
report column) is its score (``supernet.eval.score``, one of ``ESTIMATES``): ``accuracy`` for top-1 accuracies in %,
``neg_loss`` for minus the mean validation cross-entropy (larger is better), so no column is called ``accuracy``
unless it holds accuracies. An accuracy constraint on a ``neg_loss`` estimate is refused: it is not a percentage.
With ``search.accuracy: benchmark`` the values are the table's accuracies, so the metric is ``accuracy``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from supernet.errors import UserError

if TYPE_CHECKING:
    from moga.config import SearchConfig

# the metric the config's ``accuracy`` becomes, by ``supernet.eval.score`` (its values, larger is better)
ESTIMATES = {"accuracy": "top-1 accuracy in %", "neg_loss": "minus the mean validation cross-entropy"}
MAXIMISED_BY_DEFAULT = {"accuracy": True, "neg_loss": True, "params": True, "latency": False, "macs": False}
_CONSTRAINT = re.compile(r"^\s*(?P<metric>[A-Za-z_]+(?::[\w.-]+)?)\s*(?P<op><=|>=)\s*(?P<value>[-+0-9.eE_]+)\s*$")


def estimate_bounds(score: str, num_classes: int) -> tuple[float, float]:
    """The normalisation range of the supernet's estimate (hypervolume; crowding normalises by the front's own range).
    ``accuracy``: 0..100 %. ``neg_loss``: a cross-entropy has no upper bound, so [-2 ln C, 0] for C classes: 0 is the
    exact best (certain, right predictions), ln C the loss of the uniform prediction an untrained path makes, and a
    path more than twice as bad as chance counts as the worst (its normalised value is clipped to the reference
    point, ``moga.truefront.hypervolume``). Fixed by the class count alone, so runs of one dataset compare."""
    if score == "accuracy":
        return (0.0, 100.0)
    if score == "neg_loss":
        return (-2.0 * float(np.log(max(num_classes, 2))), 0.0)
    raise ValueError(f"unknown score {score!r}: use one of {', '.join(ESTIMATES)}")


def column(metric: str, tables: list[str]) -> str:
    """CSV column of a metric: ``latency_ms`` for the first table, ``latency_ms:<name>`` for others."""
    if metric == "latency" or metric == f"latency:{tables[0] if tables else ''}":
        return "latency_ms"
    if metric.startswith("latency:"):
        return f"latency_ms:{metric.split(':', 1)[1]}"
    return metric


def resolve_metric(metric: str, tables: list[str], others: dict[str, str] | None = None, score: str = "accuracy") -> str:
    """Canonical metric name; ``latency`` -> ``latency:<first table>``, ``accuracy`` -> ``score`` (what the estimate
    is: ``accuracy`` or ``neg_loss``). Unknown names are user errors. ``others``: table -> metric of the tables that
    hold something else than latency (``energy``)."""
    if score not in ESTIMATES:
        raise ValueError(f"unknown score {score!r}: use one of {', '.join(ESTIMATES)}")
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
    if base == "accuracy" and not table:
        return score
    if base in ("params", "macs") and not table:
        return base
    extra = "".join(f", {m}:<table>" for m in sorted(set(others.values())))
    raise UserError(f"unknown metric {metric!r}: use accuracy, latency, latency:<table>{extra}, params or macs")


@dataclass(frozen=True)
class Objective:
    metric: str  # canonical: accuracy | neg_loss | latency:<table> | params | macs
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


def parse_search(
    search: SearchConfig, tables: list[str], others: dict[str, str] | None = None, score: str = "accuracy"
) -> tuple[list[Objective], list[Constraint]]:
    """The objectives and constraints of a ``search`` config section, resolved against the experiment's tables.
    ``score``: the supernet's (``supernet.eval.score``), what ``accuracy`` is with ``search.accuracy: supernet``;
    with ``search.accuracy: benchmark`` it is the table's accuracy whatever ``score`` says."""
    score = "accuracy" if search.accuracy == "benchmark" else score
    objectives = make_objectives([(o.name, o.weight, o.maximize) for o in search.objectives], tables, others, score)
    return objectives, [parse_constraint(c, tables, others, score) for c in search.constraints]


def make_objectives(
    specs: list[tuple[str, float, bool | None]], tables: list[str], others: dict[str, str] | None = None, score: str = "accuracy"
) -> list[Objective]:
    """Objectives from (name, weight, maximize) specs; the weights are checked where they are read (``moga.config``)."""
    objectives = []
    for name, weight, maximize in specs:
        metric = resolve_metric(name, tables, others, score)
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


def parse_constraint(text: str, tables: list[str], others: dict[str, str] | None = None, score: str = "accuracy") -> Constraint:
    """``score``: what the ``accuracy`` metric is (``resolve_metric``); an accuracy constraint on any other is refused."""
    match = _CONSTRAINT.match(text)
    if not match:
        raise UserError(f"constraint {text!r} is not of the form '<metric> <= <number>' or '<metric> >= <number>'")
    try:
        value = float(match["value"])
    except ValueError:
        raise UserError(f"constraint {text!r}: {match['value']!r} is not a number") from None
    metric = resolve_metric(match["metric"], tables, others, score)
    if match["metric"] == "accuracy" and metric != "accuracy":
        raise UserError(
            f"constraint {text.strip()!r}: the search's accuracy estimate is {metric}, {ESTIMATES[metric]} (supernet.eval.score: {metric}), "
            "not an accuracy in %; drop the constraint or use supernet.eval.score: accuracy"
        )
    return Constraint(metric, match["op"], value, text.strip())


def check_satisfiable(constraints: list[Constraint], bounds: dict[str, tuple[float, float]]) -> None:
    """Refuse constraints that no architecture of the space can meet (``bounds`` = exact metric range)."""
    for c in constraints:
        if c.metric not in bounds:
            continue
        lo, hi = bounds[c.metric]
        if (c.op == "<=" and lo > c.value) or (c.op == ">=" and hi < c.value):
            raise UserError(f"constraint {c.text!r} cannot be met: {c.metric} ranges over [{lo:.6g}, {hi:.6g}] in this search space")
