"""``moga supernet train|eval``: supernet training and BN-recalibrated path evaluation (CLI glue over
``supernet.train`` and ``supernet.evaluate``).

Distributed training: ``torchrun --nproc_per_node=N -m moga supernet train EXPERIMENT.yaml`` (``moga.cli.distributed``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from moga.cli.argtypes import add_actions, add_overrides
from moga.cli.distributed import distributed


def register(sub: argparse._SubParsersAction) -> None:
    act = add_actions(sub, "supernet", "train the weight-sharing supernet (FairNAS strict fairness), evaluate its paths")

    p = act.add_parser("train", help="train the experiment's supernet into <run_dir>/supernet/ (torchrun for several processes)")
    p.add_argument("experiment", help="experiment YAML")
    add_overrides(p, "section.key=value config overrides, e.g. supernet.steps=50")
    p.add_argument("--resume", action="store_true", help="continue from <run_dir>/supernet/last.pt")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (the final summary line is still printed)")
    p.set_defaults(func=cmd_train)

    p = act.add_parser("eval", help="validation accuracy of architectures with the trained supernet's weights, BN recalibrated")
    p.add_argument("experiment", help="experiment YAML (its run_dir holds the supernet)")
    add_overrides(p, "section.key=value overrides, e.g. supernet.eval.calib_images=0")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--arch", action="append", help="architecture string (repeatable)")
    which.add_argument("--zoo", action="append", help="zoo model name, e.g. moga_a (repeatable)")
    p.add_argument("--checkpoint", default=None, help="supernet file (default: <run_dir>/supernet/supernet.pt)")
    p.set_defaults(func=cmd_eval)


def cmd_train(args: argparse.Namespace) -> None:
    from moga.experiment import Experiment
    from moga.pipeline import supernet_stage

    exp = Experiment.load(args.experiment, args.overrides)
    with distributed(exp.cfg.device) as (ctx, device), exp.locked(exp.run, ctx):
        supernet_stage(exp, ctx, device, progress=not args.no_progress, resume=args.resume)
    if ctx.is_main:
        print(f"supernet: {exp.supernet_file} (curves.csv/png, fairness.json beside it)")


def cmd_eval(args: argparse.Namespace) -> None:
    from moga.experiment import Experiment
    from supernet.model import resolve_arch

    exp = Experiment.load(args.experiment, args.overrides)
    net = exp.supernet("moga supernet eval", checkpoint=Path(args.checkpoint) if args.checkpoint else None)
    archs = [resolve_arch(a, net.space) for a in (args.arch or args.zoo)]
    evaluator = exp.evaluator(net)
    s = exp.cfg.supernet.eval
    bn = f"BN recalibrated on {s.calib_images} training images" if s.calib_images else "BN running statistics (no recalibration)"
    n_val = s.images or len(evaluator.dataset.search_val)
    for name, arch, acc in zip(args.arch or args.zoo, archs, evaluator.evaluate(archs), strict=True):
        label = name if name == str(arch) else f"{name} ({arch})"
        print(f"{acc:.2f}%  {label}  [validation: {n_val} search_val images, {bn}]")
