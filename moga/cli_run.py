"""``moga run | search | front | report``: the experiment pipeline and reading its results (CLI glue)."""

from __future__ import annotations

import argparse

from moga.cli_types import finite_float, positive_float
from supernet.errors import UserError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="the whole experiment: latency tables -> supernet -> search -> report (skips finished stages)")
    p.add_argument("experiment", help="experiment YAML, e.g. experiments/quickstart.yaml")
    p.add_argument("overrides", nargs="*", help="section.key=value config overrides")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("search", help="weighted NSGA-II search with the latency tables and supernet (or benchmark) accuracy")
    p.add_argument("experiment", help="experiment YAML")
    p.add_argument("overrides", nargs="*", help="section.key=value config overrides")
    p.add_argument("--resume", action="store_true", help="continue an interrupted search from its last completed generation")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("front", help="print a Pareto front with row ids, the knee and the best model under latency budgets")
    p.add_argument("path", help="run directory or pareto.csv")
    p.add_argument("--max-latency", type=positive_float, default=None, help="keep rows at or under this latency (ms)")
    p.add_argument("--min-accuracy", type=finite_float, default=None, help="keep rows at or above this accuracy (%%)")
    p.add_argument("--budget", type=positive_float, action="append", help="latency budget to mark the best model under (repeatable)")
    p.add_argument("--sort", default=None, help="column to sort by (default: latency)")
    p.add_argument("--plot", default=None, help="write an accuracy-vs-latency plot of the (filtered) front to this PNG")
    p.set_defaults(func=cmd_front)

    p = sub.add_parser("report", help="write <run_dir>/report.html summarising a run")
    p.add_argument("run_dir", help="run directory")
    p.set_defaults(func=cmd_report)


def cmd_run(args: argparse.Namespace) -> None:
    from moga.config import load_config
    from moga.pipeline import run_experiment

    cfg = load_config(args.experiment, args.overrides)
    run = run_experiment(cfg, progress=not args.no_progress)
    front = run / cfg.search.dir / "pareto.csv"
    if front.exists():
        print(f"\nPareto front: {front}   (inspect: moga front {run}; retrain a row: moga retrain {args.experiment} --pick ID)")
        cmd_front(argparse.Namespace(path=str(front), max_latency=None, min_accuracy=None, budget=None, sort=None, plot=None))


def cmd_search(args: argparse.Namespace) -> None:
    from moga.config import dump_config, load_config
    from moga.experiment import locked_on_rank0
    from moga.pipeline import search_stage
    from moga.runio import atomic_write_text
    from supernet.distributed import init_distributed

    cfg = load_config(args.experiment, args.overrides)
    ctx, _ = init_distributed(cfg.device)
    with locked_on_rank0(cfg.run_path, ctx):
        # a new search records its config up front; over an existing one (which may be another config's,
        # refused by search_stage) the config is written only once the search has accepted and finished it
        new = not (cfg.run_path / cfg.search.dir / "state.json").exists()
        if ctx.is_main and new:
            atomic_write_text(cfg.run_path / cfg.search.dir / "config.yaml", dump_config(cfg))
        try:
            info = search_stage(cfg, args.resume, not args.no_progress and ctx.is_main, ctx.is_main)
        except BaseException:
            if ctx.is_main and new and not (cfg.run_path / cfg.search.dir / "state.json").exists():
                (cfg.run_path / cfg.search.dir / "config.yaml").unlink(missing_ok=True)  # refused before it began: leave nothing
            raise
        if ctx.is_main and not new:
            atomic_write_text(cfg.run_path / cfg.search.dir / "config.yaml", dump_config(cfg))
    if ctx.is_main:
        print(
            f"search: {info['evaluations']} architectures evaluated, {info['front_size']} on the front -> {cfg.run_path / cfg.search.dir}"
        )


def cmd_front(args: argparse.Namespace) -> None:
    from moga.front import annotate, filter_front, format_front, latency_column, read_front, regret_summary

    front = read_front(args.path)
    shown = filter_front(front, args.max_latency, args.min_accuracy, args.sort)
    if shown.empty:
        raise UserError("no model on the front passes these filters")
    marked, budgets = annotate(shown, args.budget)
    print(format_front(marked))
    summary = regret_summary(marked)
    if summary:
        print(summary)
    x = latency_column(marked)
    if budgets and x:
        print(f"\nknee: the best accuracy-for-latency trade-off; best<=B: most accurate model within B ms ({x})")
    if args.plot:
        from moga.plots import pareto_plot

        pareto_plot(front, marked, x or "macs", "accuracy" if "accuracy" in front else "params", args.plot)
        print(f"plot: {args.plot}")


def cmd_report(args: argparse.Namespace) -> None:
    from moga.report import build_report

    print(f"report: {build_report(args.run_dir)}")
