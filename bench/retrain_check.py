"""Retrain check: does the searched knee model beat baselines of the same predicted latency, trained alike?

    .venv/bin/python bench/retrain_check.py experiments/quickstart.yaml retrain.epochs=10
    .venv/bin/python bench/retrain_check.py experiments/cifar10_mini.yaml --random 5 --hand k3e6

The experiment's run directory must hold a finished search (``moga run`` first). Retrained with the
experiment's ``retrain`` recipe (``key=value`` overrides apply), through ``moga retrain``, so every model is
checkpointed, resumable and lands in ``<run_dir>/retrain/<arch-id>/`` beside the run's other retrains:

* ``knee``    - the knee of the Pareto front (accuracy against the first latency table), as ``moga front`` marks it
* ``random``  - ``--random`` architectures drawn uniformly whose predicted latency is within ``--tolerance``
  of the knee's (the closest ones if too few are), seeded by the experiment's seed
* ``hand``    - every layer the ``--hand`` choice (e.g. ``k3e6``: MobileNetV2-like), whatever its latency

Prints a table and writes ``OUT/retrain_check.csv`` (default ``<run_dir>/retrain_check``).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from moga.cli import main as moga_main
from moga.experiment import Experiment
from moga.front import knee_index, latency_column, read_front
from moga.rankcorr import latency_measure
from moga.retrain import arch_id
from supernet import Arch
from supernet.io import read_json
from supernet.space import SearchSpace
from supernet.train import derive_seed

POOL = 20_000  # random architectures the latency-matched baselines are drawn from


def latency_matched(
    space: SearchSpace, cost: Callable[[np.ndarray], np.ndarray], target: float, n: int, tolerance: float, seed: int
) -> list[Arch]:
    """``n`` uniformly drawn architectures with predicted latency within ``tolerance`` of ``target``."""
    rng = np.random.default_rng(seed)
    pool = [Arch.random(space, rng) for _ in range(POOL)]
    latency = np.asarray(cost(np.stack([a.genome for a in pool])))
    gap = np.abs(latency / target - 1)
    within = np.flatnonzero(gap <= tolerance)
    chosen = within[:n] if len(within) >= n else np.argsort(gap, kind="stable")[:n]
    return [pool[i] for i in chosen]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("experiment")
    p.add_argument("overrides", nargs="*", help="key=value settings, e.g. retrain.epochs=10")
    p.add_argument("--random", type=int, default=5, help="latency-matched random baselines")
    p.add_argument("--tolerance", type=float, default=0.05, help="relative latency gap allowed for the random baselines")
    p.add_argument("--hand", default="k3e6", help="the hand-designed baseline's choice in every layer")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--no-progress", action="store_true", help="passed on to `moga retrain`")
    args = p.parse_intermixed_args()

    exp = Experiment.load(args.experiment, args.overrides)
    cfg, space = exp.cfg, exp.space
    front = read_front(exp.front_file)
    lat = latency_column(front)
    if lat is None:
        raise SystemExit(f"{exp.front_file} has no latency column: the knee is defined on accuracy against latency")
    knee_row = knee_index(front, lat)
    if knee_row is None:
        raise SystemExit(f"{exp.front_file} has no model with both accuracy and latency: no knee to check")
    knee = front.loc[knee_row]
    measure, cost = latency_measure(exp)
    knee_arch = Arch.parse(space, str(knee["arch"]))
    target = float(cost(knee_arch.genome[None])[0])
    models = [("knee", knee_arch, ["--pick", str(int(knee["id"]))])]
    for i, a in enumerate(latency_matched(space, cost, target, args.random, args.tolerance, derive_seed(cfg.seed, "retrain-check"))):
        models.append((f"random {i}", a, ["--arch", str(a)]))
    hand = Arch.parse(space, "-".join([args.hand] * space.num_layers))
    models.append((f"hand ({args.hand})", hand, ["--arch", str(hand)]))

    rows = []
    for role, arch, how in models:
        print(f"== {role}: {arch}", flush=True)
        code = moga_main(["retrain", args.experiment, *how, *args.overrides, *(["--no-progress"] if args.no_progress else [])])
        if code != 0:
            raise SystemExit(f"moga retrain failed for {role} ({arch}): exit {code}")
        result = read_json(cfg.run_path / "retrain" / arch_id(arch) / "result.json")
        rows.append(
            {
                "role": role,
                "test_acc": result["test_acc"],
                "supernet_acc": result["supernet_acc"],
                measure: float(cost(arch.genome[None])[0]),
                "measured_latency_ms": result["measured_latency_ms"],
                "params": result["params"],
                "macs": result["macs"],
                "epochs": result["epochs"],
                "train_wall_s": result["train_wall_s"],
                "arch": str(arch),
            }
        )
    table = pd.DataFrame(rows)
    out = args.out or cfg.run_path / "retrain_check"
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "retrain_check.csv", index=False)
    random_rows = table[table["role"].str.startswith("random")]
    print(table.drop(columns=["arch"]).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if not random_rows.empty:
        print(
            f"knee {table.loc[0, 'test_acc']:.2f}% vs random best {random_rows['test_acc'].max():.2f}% "
            f"(mean {random_rows['test_acc'].mean():.2f}%), hand {table.iloc[-1]['test_acc']:.2f}%"
        )
    print(f"wrote {out / 'retrain_check.csv'}")


if __name__ == "__main__":
    main()
