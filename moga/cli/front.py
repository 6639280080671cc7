"""``moga front``: a Pareto front with row ids, the knee and the best model under latency budgets."""

from __future__ import annotations

import argparse

from moga.cli.argtypes import finite_float, positive_float
from supernet.errors import UserError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("front", help="print a Pareto front with row ids, the knee and the best model under latency budgets")
    p.add_argument("path", help="run directory or pareto.csv")
    p.add_argument("--max-latency", type=positive_float, default=None, help="keep rows at or under this latency (ms)")
    p.add_argument("--min-accuracy", type=finite_float, default=None, help="keep rows at or above this accuracy (%%)")
    p.add_argument("--budget", type=positive_float, action="append", help="latency budget to mark the best model under (repeatable)")
    p.add_argument("--sort", default=None, help="column to sort by (default: latency)")
    p.add_argument("--plot", default=None, help="write an accuracy-vs-latency plot of the (filtered) front to this PNG")
    p.set_defaults(func=cmd_front)


def cmd_front(args: argparse.Namespace) -> None:
    print_front(args.path, args.max_latency, args.min_accuracy, args.budget, args.sort, args.plot)


def print_front(
    path: str,
    max_latency: float | None = None,
    min_accuracy: float | None = None,
    budgets: list[float] | None = None,
    sort: str | None = None,
    plot: str | None = None,
) -> None:
    """Print the front at ``path`` (run directory or pareto.csv), filtered, with the knee and the best model
    under each budget marked; ``plot`` also writes its accuracy-vs-latency PNG (what ``moga run`` ends with)."""
    from moga.front import annotate, filter_front, format_front, latency_column, read_front, regret_summary, score_column

    front = read_front(path)
    shown = filter_front(front, max_latency, min_accuracy, sort)
    if shown.empty:
        raise UserError("no model on the front passes these filters")
    marked, marked_budgets = annotate(shown, budgets)
    print(format_front(marked))
    summary = regret_summary(marked)
    if summary:
        print(summary)
    x = latency_column(marked)
    if marked_budgets and x:
        score = score_column(marked) or "accuracy"
        print(f"\nknee: the best {score}-for-latency trade-off; best<=B: highest {score} within B ms ({x})")
    if plot:
        from moga.plots import pareto_plot

        pareto_plot(front, marked, x or "macs", score_column(front) or "params", plot)
        print(f"plot: {plot}")
