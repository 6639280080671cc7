"""``moga run``: the whole experiment pipeline (latency tables -> supernet -> search -> report), then its front."""

from __future__ import annotations

import argparse

from moga.cli.argtypes import add_overrides


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="the whole experiment: latency tables -> supernet -> search -> report (skips finished stages)")
    p.add_argument("experiment", help="experiment YAML, e.g. experiments/quickstart.yaml")
    add_overrides(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> None:
    from moga.cli.front import print_front
    from moga.experiment import Experiment
    from moga.pipeline import run_experiment

    exp = Experiment.load(args.experiment, args.overrides)
    run = run_experiment(exp, progress=not args.no_progress)
    if exp.front_file.exists():
        print(f"\nPareto front: {exp.front_file}   (inspect: moga front {run}; retrain a row: moga retrain {args.experiment} --pick ID)")
        print_front(str(exp.front_file))
