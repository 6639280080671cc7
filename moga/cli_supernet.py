"""``moga supernet train|eval``: supernet training and BN-recalibrated path evaluation (CLI glue over
``supernet.train`` and ``supernet.evaluate``).

Distributed training: ``torchrun --nproc_per_node=N -m moga supernet train EXPERIMENT.yaml``; every rank
runs this same command, rank 0 alone holds the run-directory lock and writes files.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from moga.experiment import experiment_dataset, experiment_space, locked_on_rank0
from supernet.errors import UserError


def register(sub: argparse._SubParsersAction) -> None:
    group = sub.add_parser("supernet", help="train the weight-sharing supernet (FairNAS strict fairness), evaluate its paths")
    act = group.add_subparsers(dest="supernet_command", required=True, metavar="ACTION")

    p = act.add_parser("train", help="train the experiment's supernet into <run_dir>/supernet/ (torchrun for several processes)")
    p.add_argument("experiment", help="experiment YAML")
    p.add_argument("overrides", nargs="*", help="section.key=value config overrides, e.g. supernet.steps=50")
    p.add_argument("--resume", action="store_true", help="continue from <run_dir>/supernet/last.pt")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (the final summary line is still printed)")
    p.set_defaults(func=cmd_train)

    p = act.add_parser("eval", help="validation accuracy of architectures with the trained supernet's weights, BN recalibrated")
    p.add_argument("experiment", help="experiment YAML (its run_dir holds the supernet)")
    p.add_argument("overrides", nargs="*", help="section.key=value overrides, e.g. supernet.bn_calib_images=0")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--arch", action="append", help="architecture string (repeatable)")
    which.add_argument("--zoo", action="append", help="zoo model name, e.g. moga_a (repeatable)")
    p.add_argument("--checkpoint", default=None, help="supernet file (default: <run_dir>/supernet/supernet.pt)")
    p.set_defaults(func=cmd_eval)


def cmd_train(args: argparse.Namespace) -> None:
    import torch.distributed as tdist

    from moga.config import dump_config, load_config
    from supernet.distributed import init_distributed
    from supernet.train import train_supernet

    cfg = load_config(args.experiment, args.overrides)
    ctx, device = init_distributed(cfg.device)
    try:
        with locked_on_rank0(cfg.run_path, ctx):
            train_supernet(
                experiment_space(cfg),
                experiment_dataset(cfg),
                cfg.supernet,
                cfg.run_path / "supernet",
                seed=cfg.seed,
                device=device,
                resume=args.resume,
                config_text=dump_config(cfg),
                dist=ctx,
                progress=not args.no_progress,
            )
    finally:
        if ctx.active and tdist.is_initialized():
            tdist.destroy_process_group()
    if ctx.is_main:
        print(f"supernet: {cfg.run_path / 'supernet' / 'supernet.pt'} (curves.csv/png, fairness.json beside it)")


def cmd_eval(args: argparse.Namespace) -> None:
    from moga.config import load_config
    from supernet.evaluate import SubnetEvaluator
    from supernet.model import resolve_arch
    from supernet.train import load_supernet

    cfg = load_config(args.experiment, args.overrides)
    path = Path(args.checkpoint) if args.checkpoint else cfg.run_path / "supernet" / "supernet.pt"
    if not path.exists():
        raise UserError(f"no trained supernet at {path}: run `moga supernet train {args.experiment}` first")
    net = load_supernet(path, cfg.device, data_seed=cfg.seed, space=experiment_space(cfg))
    archs = [resolve_arch(a, net.space) for a in (args.arch or args.zoo)]
    evaluator = SubnetEvaluator.from_config(net, experiment_dataset(cfg), cfg.supernet, seed=cfg.seed)
    s = cfg.supernet
    bn = f"BN recalibrated on {s.bn_calib_images} training images" if s.bn_calib_images else "BN running statistics (no recalibration)"
    n_val = s.eval_images or len(evaluator.dataset.search_val)
    for name, arch, acc in zip(args.arch or args.zoo, archs, evaluator.evaluate(archs), strict=True):
        label = name if name == str(arch) else f"{name} ({arch})"
        print(f"{acc:.2f}%  {label}  [validation: {n_val} search_val images, {bn}]")
