"""``moga search``: weighted NSGA-II over the experiment's space (CLI glue over ``moga.pipeline.search_stage``)."""

from __future__ import annotations

import argparse

from moga.cli.argtypes import add_overrides
from moga.cli.distributed import distributed


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("search", help="weighted NSGA-II search with the latency tables and supernet (or benchmark) accuracy")
    p.add_argument("experiment", help="experiment YAML")
    add_overrides(p)
    p.add_argument("--resume", action="store_true", help="continue an interrupted search from its last completed generation")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_search)


def cmd_search(args: argparse.Namespace) -> None:
    from moga.experiment import Experiment
    from moga.pipeline import search_stage

    exp = Experiment.load(args.experiment, args.overrides)
    state = exp.search_dir / "state.json"
    with distributed(exp.cfg.device) as (ctx, _), exp.locked(exp.run, ctx):
        # a new search records its config up front; over an existing one (which may be another config's,
        # refused by search_stage) the config is written only once the search has accepted and finished it
        new = not state.exists()
        if ctx.is_main and new:
            exp.write_config(exp.search_dir)
        try:
            info = search_stage(exp, args.resume, not args.no_progress and ctx.is_main, ctx.is_main)
        except BaseException:
            if ctx.is_main and new and not state.exists():
                (exp.search_dir / "config.yaml").unlink(missing_ok=True)  # refused before it began: leave nothing
            raise
        if ctx.is_main and not new:
            exp.write_config(exp.search_dir)
    if ctx.is_main:
        print(f"search: {info['evaluations']} architectures evaluated, {info['front_size']} on the front -> {exp.search_dir}")
