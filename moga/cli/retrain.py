"""``moga retrain``: standalone training of a picked architecture (CLI glue over ``moga.retrain``).

Distributed: ``torchrun --nproc_per_node=N -m moga retrain EXPERIMENT.yaml --pick 3`` (``moga.cli.distributed``);
rank 0 alone evaluates, exports, measures and writes files.
"""

from __future__ import annotations

import argparse

from moga.cli.argtypes import add_overrides
from moga.cli.distributed import on_every_rank


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "retrain",
        help="train a picked architecture from scratch: test accuracy, latency, ONNX -> <run_dir>/retrain/<arch-id>/",
    )
    p.add_argument("experiment", help="experiment YAML (its run_dir holds the search's pareto.csv)")
    add_overrides(p, "section.key=value config overrides, e.g. retrain.epochs=1")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--pick", metavar="ROW", help="row id of <run_dir>/search/pareto.csv (the id column `moga front` shows)")
    which.add_argument("--arch", metavar="STRING", help="architecture string of the experiment's space")
    which.add_argument("--zoo", metavar="NAME", help="published network, e.g. moga_a, fairnas_c")
    p.add_argument("--resume", action="store_true", help="continue an interrupted training run from its last.pt")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (the summary lines are still printed)")
    p.set_defaults(func=cmd_retrain)


def _percent(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2f}%"


def cmd_retrain(args: argparse.Namespace) -> None:
    from moga.experiment import Experiment
    from moga.retrain import resolve_pick, retrain, retrain_dir

    exp = Experiment.load(args.experiment, args.overrides)
    pick = resolve_pick(exp, row=args.pick, arch=args.arch, zoo=args.zoo)
    result = on_every_rank(exp.cfg.device, not args.no_progress, retrain, exp, pick, resume=args.resume)
    if result is None:
        return
    out = retrain_dir(exp, pick.arch)
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
