"""``moga retrain`` and ``moga rank-corr``: standalone training of picked or sampled architectures (CLI glue
over ``moga.retrain`` and ``moga.rankcorr``).

Distributed: ``torchrun --nproc_per_node=N -m moga retrain EXPERIMENT.yaml --pick 3``; every rank runs the
same command, rank 0 alone holds the lock, evaluates, exports, measures and writes files.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from moga.cli_types import at_least


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "retrain",
        help="train a picked architecture from scratch: test accuracy, latency, ONNX -> <run_dir>/retrain/<arch-id>/",
    )
    p.add_argument("experiment", help="experiment YAML (its run_dir holds the search's pareto.csv)")
    p.add_argument("overrides", nargs="*", help="section.key=value config overrides, e.g. retrain.epochs=1")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--pick", metavar="ROW", help="row id of <run_dir>/search/pareto.csv (the id column `moga front` shows)")
    which.add_argument("--arch", metavar="STRING", help="architecture string of the experiment's space")
    which.add_argument("--zoo", metavar="NAME", help="published network, e.g. moga_a, fairnas_c")
    p.add_argument("--resume", action="store_true", help="continue an interrupted training run from its last.pt")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (the summary lines are still printed)")
    p.set_defaults(func=cmd_retrain)

    p = sub.add_parser(
        "rank-corr",
        help="Kendall τ / Spearman ρ / top-k overlap of supernet vs standalone (or benchmark-table) accuracy -> <run_dir>/rankcorr/",
    )
    p.add_argument("experiment", help="experiment YAML (its run_dir holds the trained supernet)")
    p.add_argument("overrides", nargs="*", help="section.key=value overrides; the retrain section is the recipe, e.g. retrain.epochs=2")
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


@contextmanager
def _distributed(device: str) -> Iterator[tuple[Any, Any]]:
    """(DistContext, device) for this process; the process group is torn down afterwards."""
    import torch.distributed as tdist

    from supernet.distributed import init_distributed

    ctx, dev = init_distributed(device)
    try:
        yield ctx, dev
    finally:
        if ctx.active and tdist.is_initialized():
            tdist.destroy_process_group()


def _percent(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2f}%"


def cmd_retrain(args: argparse.Namespace) -> None:
    from moga.config import load_config
    from moga.retrain import arch_id, resolve_pick, retrain

    cfg = load_config(args.experiment, args.overrides)
    pick = resolve_pick(cfg, row=args.pick, arch=args.arch, zoo=args.zoo)
    with _distributed(cfg.device) as (ctx, device):
        result = retrain(cfg, pick, resume=args.resume, progress=not args.no_progress and ctx.is_main, dist=ctx, device=device)
    if not ctx.is_main:
        return
    out = cfg.run_path / "retrain" / arch_id(pick.arch)
    weights = " (EMA weights)" if result["ema"] else ""
    latency = "   ".join(f"{name} {ms:.3f} ms (table)" for name, ms in result["latency_ms"].items())
    setup = result["measured_latency_setup"]
    print(f"retrain: {pick.arch} ({pick.label}){' - already retrained, nothing to do' if result.get('status') else ''}")
    bench = f"   benchmark's trained accuracy {_percent(result['benchmark_acc'])}" if "benchmark_acc" in result else ""
    print(f"  test accuracy {_percent(result['test_acc'])}{weights}   supernet estimate {_percent(result['supernet_acc'])}{bench}")
    print(
        f"  params {result['params'] / 1e6:.2f}M   MACs {result['macs'] / 1e6:.1f}M   {latency + '   ' if latency else ''}"
        f"measured {result['measured_latency_ms']:.3f} ms (onnxruntime CPU, {setup['threads']} thread, {setup['resolution']}², batch 1)"
    )
    print(f"  {out}/: model.onnx (max |diff| vs torch {result['onnx_max_abs_diff']:.1e}), result.json, curves.csv/png")
    print(f"  summary: {out.parent / 'summary.csv'}")


def cmd_rank_corr(args: argparse.Namespace) -> None:
    from moga.config import load_config
    from moga.rankcorr import rank_correlation
    from supernet.errors import UserError

    if args.benchmark is not None:
        if args.seeds is not None:
            raise UserError("--seeds does not apply with --benchmark: the table's own seeds are the ground truth (nothing is trained)")
        if (args.models is None) == (not args.all):
            raise UserError("with --benchmark give exactly one of --models N (a random sample of the table's networks) and --all")
        return _rank_corr_benchmark(args)
    for flag, given in (("--all", args.all), ("--equivalents", args.equivalents is not None)):
        if given:
            raise UserError(f"{flag} needs --benchmark NAME (it picks networks of a tabular benchmark)")
    if args.models is None:
        raise UserError("rank-corr needs --models K (architectures to train), or --benchmark NAME with --models N / --all")
    cfg = load_config(args.experiment, args.overrides)
    with _distributed(cfg.device) as (ctx, device):
        report = rank_correlation(
            cfg,
            args.models,
            seeds=1 if args.seeds is None else args.seeds,
            top_k=args.top_k,
            resamples=args.resamples,
            progress=not args.no_progress and ctx.is_main,
            dist=ctx,
            device=device,
        )
    if not ctx.is_main:
        return
    out = cfg.run_path / "rankcorr"
    print(f"rank-corr: {report['models']} models ordered by {report['ordered_by']}; supernet (search_val) vs standalone (test)")
    tau, rho, top = (_statistic(report[name]) for name in ("kendall_tau", "spearman_rho", "top_k_overlap"))
    print(f"  Kendall τ {tau}   Spearman ρ {rho}   top-{report['top_k']} overlap {top}")
    if "seed_to_seed_tau" in report:
        print(f"  standalone vs standalone ({report['seeds']} seeds): Kendall τ {_statistic(report['seed_to_seed_tau'])}")
    print(f"  {out}/: rankcorr.csv, rankcorr.json, rankcorr.png")


def _rank_corr_benchmark(args: argparse.Namespace) -> None:
    from moga.config import load_config
    from moga.rankcorr import benchmark_dir, rank_correlation_benchmark

    cfg = load_config(args.experiment, args.overrides)
    with _distributed(cfg.device) as (ctx, device):
        report = rank_correlation_benchmark(
            cfg,
            args.benchmark,
            None if args.all else args.models,
            equivalents=args.equivalents or "canonical",
            top_k=args.top_k,
            resamples=args.resamples,
            progress=not args.no_progress and ctx.is_main,
            dist=ctx,
            device=device,
        )
    if not ctx.is_main:
        return
    which = "all" if report["all"] else "a random sample"
    print(
        f"rank-corr: {report['models']} {report['benchmark']} networks ({which}, {report['equivalents']} paths: "
        f"{report['paths_scored']} scored); supernet (search_val) vs the table's mean test accuracy"
    )
    print(
        f"  supernet  Kendall τ {_statistic(report['kendall_tau'])}   Spearman ρ {_statistic(report['spearman_rho'])}   "
        f"top-{report['top_k']} overlap {_statistic(report['top_k_overlap'])}"
    )
    print(f"  supernet −val loss  Kendall τ {_statistic(report['supernet_neg_loss']['kendall_tau'])}   (the same logits' cross-entropy)")
    for name, stats in report["proxies"].items():
        label = {"flops": "FLOPs", "params": "params"}.get(name, name)
        print(f"  {label:<8}  Kendall τ {_statistic(stats['kendall_tau'])}   (zero-training proxy)")
    print(f"  ceiling   Kendall τ {_statistic(report['seed_to_seed_tau'])}   (the table's seed-to-seed τ)")
    sc = report["scoring"]
    print(
        f"  scoring {sc['wall_seconds']:.1f} s ({sc['networks_per_min']:.0f} networks/min), {sc['blocks_run']} blocks run "
        f"vs {sc['blocks_one_by_one']} one by one; statistics {report['statistics_wall_seconds']:.1f} s"
    )
    print(f"  {benchmark_dir(cfg, report['benchmark'])}/: rankcorr.csv, rankcorr.json, rankcorr.png")


def _statistic(stat: dict[str, Any]) -> str:
    lo, hi = stat["ci95"]
    value = "n/a" if stat["value"] is None else f"{stat['value']:.3f}"
    return value + ("" if lo is None else f" (95% CI {lo:.3f}..{hi:.3f})")
