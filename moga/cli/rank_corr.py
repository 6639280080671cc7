"""``moga rank-corr``: how well the supernet ranks architectures - against standalone training of sampled
ones, or against a tabular benchmark (CLI glue over ``moga.rankcorr``; distributed like ``moga retrain``)."""

from __future__ import annotations

import argparse
from typing import Any

from moga.cli.argtypes import add_overrides, at_least
from moga.cli.distributed import on_every_rank
from supernet.errors import UserError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "rank-corr",
        help="Kendall τ / Spearman ρ / top-k overlap of supernet vs standalone (or benchmark-table) accuracy -> <run_dir>/rankcorr/",
    )
    p.add_argument("experiment", help="experiment YAML (its run_dir holds the trained supernet)")
    add_overrides(p, "section.key=value overrides; the retrain section is the recipe, e.g. retrain.epochs=2")
    p.add_argument(
        "--models", type=at_least(3), default=None, metavar="K",
        help="architectures to train, spread over the latency range (>= 3); with --benchmark: networks of the table to score",
    )  # fmt: skip
    p.add_argument(
        "--seeds", type=at_least(1), default=None, metavar="S",
        help="standalone trainings per model (default 1); S >= 2 averages them and reports their own seed-to-seed τ",
    )  # fmt: skip
    p.add_argument(
        "--benchmark", default=None, metavar="NAME",
        help="train nothing: the ground truth is a tabular benchmark of the experiment's space (nasbench_macro) "
        "-> <run_dir>/rankcorr/benchmark_NAME/",
    )  # fmt: skip
    p.add_argument("--all", action="store_true", help="with --benchmark: score every distinct network of the table (instead of --models)")
    p.add_argument(
        "--split", choices=("dev", "heldout"), default=None,
        help="with --benchmark: the fixed development sample (300 networks) to choose settings on, or the disjoint held-out "
        "sample (--models, default 1000) to report on",
    )  # fmt: skip
    p.add_argument(
        "--zero-cost", default="none", metavar="NAMES",
        help="with --benchmark: zero-cost baselines on the full networks at initialisation, comma-separated "
        "(synflow,naswot,snip,grad_norm), all, or none (default)",
    )  # fmt: skip
    p.add_argument(
        "--equivalents", choices=("canonical", "mean"), default=None,
        help="with --benchmark: score each network's canonical path (default) or the mean over all its equivalent codes' paths",
    )  # fmt: skip
    p.add_argument(
        "--top-k",
        type=at_least(1),
        default=None,
        metavar="k",
        help="size of the top sets compared (default K // 3; with --benchmark N // 10)",
    )
    p.add_argument("--resamples", type=at_least(1), default=1000, help="bootstrap resamples for the 95%% intervals (default 1000)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_rank_corr)


def cmd_rank_corr(args: argparse.Namespace) -> None:
    from moga.experiment import Experiment
    from moga.rankcorr import rank_correlation

    if args.benchmark is not None:
        if args.seeds is not None:
            raise UserError("--seeds does not apply with --benchmark: the table's own seeds are the ground truth (nothing is trained)")
        if args.split is not None and args.all:
            raise UserError("--split and --all exclude each other: --split takes the split's networks (--models of them)")
        if args.split is None and (args.models is None) == (not args.all):
            raise UserError("with --benchmark give exactly one of --models N (a random sample of the table's networks), --all and --split")
        return _rank_corr_benchmark(args)
    benchmark_only = (("--all", args.all), ("--equivalents", args.equivalents is not None), ("--split", args.split is not None))
    for flag, given in (*benchmark_only, ("--zero-cost", args.zero_cost != "none")):
        if given:
            raise UserError(f"{flag} needs --benchmark NAME (it picks networks of a tabular benchmark)")
    if args.models is None:
        raise UserError("rank-corr needs --models K (architectures to train), or --benchmark NAME with --models N / --all")
    exp = Experiment.load(args.experiment, args.overrides)
    seeds = 1 if args.seeds is None else args.seeds
    report = on_every_rank(
        exp.cfg.device, not args.no_progress, rank_correlation, exp, args.models, seeds=seeds, top_k=args.top_k, resamples=args.resamples
    )
    if report is None:
        return
    out = exp.rankcorr_dir
    print(f"rank-corr: {report['models']} models ordered by {report['ordered_by']}; supernet (search_val) vs standalone (test)")
    tau, rho, top = (_statistic(report[name]) for name in ("kendall_tau", "spearman_rho", "top_k_overlap"))
    print(f"  Kendall τ {tau}   Spearman ρ {rho}   top-{report['top_k']} overlap {top}")
    if "seed_to_seed_tau" in report:
        print(f"  standalone vs standalone ({report['seeds']} seeds): Kendall τ {_statistic(report['seed_to_seed_tau'])}")
    print(f"  {out}/: rankcorr.csv, rankcorr.json, rankcorr.png")


def zero_cost_names(text: str) -> tuple[str, ...]:
    """``--zero-cost``: ``none``, ``all`` or a comma-separated list of proxy names (checked by the command)."""
    from supernet.zerocost import ZERO_COST

    if text.strip() == "none":
        return ()
    if text.strip() == "all":
        return ZERO_COST
    return tuple(name.strip() for name in text.split(",") if name.strip())


def _rank_corr_benchmark(args: argparse.Namespace) -> None:
    from moga.experiment import Experiment
    from moga.rankcorr_benchmark import benchmark_dir, rank_correlation_benchmark

    exp = Experiment.load(args.experiment, args.overrides)
    report = on_every_rank(
        exp.cfg.device,
        not args.no_progress,
        rank_correlation_benchmark,
        exp,
        args.benchmark,
        None if args.all else args.models,
        split=args.split,
        equivalents=args.equivalents or "canonical",
        zero_cost=zero_cost_names(args.zero_cost),
        top_k=args.top_k,
        resamples=args.resamples,
    )
    if report is None:
        return
    which = "all" if report["all"] else f"the {report['split']} split" if report["split"] else "a random sample"
    print(
        f"rank-corr: {report['models']} {report['benchmark']} networks ({which}, {report['equivalents']} paths: "
        f"{report['paths_scored']} scored); estimates vs the table's mean test accuracy"
    )
    rows = [(f"estimate: {report['estimate']['estimate']}", report)]
    rows += [(BASELINE_LABELS.get(name, f"{name} (zero-cost)"), stats) for name, stats in report["baselines"].items()]
    for label, stats in rows:
        print(f"  {label:<34} Kendall τ {_statistic(stats['kendall_tau'])}   within one depth {stats['within_depth_tau']}")
    print(f"  {'τ(estimate) − τ(FLOPs)':<34} {_statistic(report['tau_minus_flops'])}")
    print(f"  {'ceiling (the table, seed to seed)':<34} Kendall τ {_statistic(report['seed_to_seed_tau'])}")
    sc = report["scoring"]
    print(
        f"  scoring {sc['wall_seconds']:.1f} s ({sc['networks_per_min']:.0f} networks/min), {sc['blocks_run']} blocks run "
        f"vs {sc['blocks_one_by_one']} one by one; estimate {sc['estimate_wall_seconds']:.1f} s, zero-cost "
        f"{sc['zero_cost_wall_seconds']:.1f} s; statistics {report['statistics_wall_seconds']:.1f} s"
    )
    print(f"  {benchmark_dir(exp, report['benchmark'], report['split'])}/: rankcorr.csv, rankcorr.json, rankcorr.png")


BASELINE_LABELS = {
    "supernet_acc": "supernet top-1, per path",
    "supernet_neg_loss": "supernet −val loss, per path",
    "flops": "FLOPs (no training)",
    "params": "params (no training)",
    "neg_skips": "−skips (no training)",
    "latency_ms": "latency (no training)",
}


def _statistic(stat: dict[str, Any]) -> str:
    lo, hi = stat["ci95"]
    value = "n/a" if stat["value"] is None else f"{stat['value']:.3f}"
    return value + ("" if lo is None else f" (95% CI {lo:.3f}..{hi:.3f})")
