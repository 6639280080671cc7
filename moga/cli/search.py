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
    from moga.config import dump_config, load_config
    from moga.experiment import locked_on_rank0
    from moga.pipeline import search_stage
    from moga.runio import atomic_write_text

    cfg = load_config(args.experiment, args.overrides)
    with distributed(cfg.device) as (ctx, _), locked_on_rank0(cfg.run_path, ctx):
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
