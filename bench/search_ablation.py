"""Search-quality ablation on ONE trained supernet, equal evaluation budget, several search seeds.

    .venv/bin/python bench/search_ablation.py experiments/quickstart.yaml --seeds 0 1 2
    .venv/bin/python bench/search_ablation.py experiments/cifar10_mini.yaml --seeds 0 1 2 --out runs/ablation_mini

The experiment's run directory must hold a finished latency table and supernet (``moga run`` first). Each
variant x seed searches in ``OUT/<variant>/seed<k>/`` whose ``lut/`` and ``supernet/`` link to the run's,
with ``search.seed=k`` (the data split keeps the experiment's seed, so the held-out images stay held out):

* ``weighted+reinforced`` - the experiment's search (weighted NSGA-II, reinforced + random mutation, homogeneous start)
* ``random mutation``     - ``search.reinforced_ratio=0``
* ``unweighted``          - ``search.weighted_crowding=false`` (pymoo's NSGA-II)
* ``two objectives``      - accuracy and latency only, weights 0.5 / 0.5
* ``random search``       - ``search.algorithm=random`` (the same number of architectures)
* ``random start``        - ``search.initial=random`` (a random first population; by default it starts with
  all-k3e3 ... all-k7e6se)

``--variants NAME ...`` runs a subset (names as above).

Every variant evaluates population x generations architectures with the same evaluator. Scores come from
each run's ``history.csv`` (every evaluated architecture), on objectives normalised with bounds shared by all
runs: the hypervolume of the (accuracy, latency) front and of the (accuracy, latency, params) front, and the
best accuracy within three latency budgets (the 25th, 50th and 75th percentiles of all evaluated latencies).
Prints a table (mean +- std over seeds) and writes ``OUT/ablation.csv`` and ``OUT/ablation.png``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import pandas as pd
from pymoo.indicators.hv import HV

from moga.cli import main as moga_main
from moga.experiment import Experiment

VARIANTS: dict[str, list[str]] = {
    "weighted+reinforced": [],
    "random mutation": ["search.reinforced_ratio=0"],
    "unweighted": ["search.weighted_crowding=false"],
    "two objectives": ["search.objectives=[{name: accuracy, weight: 0.5}, {name: latency, weight: 0.5}]"],
    "random search": ["search.algorithm=random"],
    "random start": ["search.initial=random"],
}


def run_variant(experiment: str, run_path: Path, out: Path, seed: int, overrides: list[str]) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    for part in ("lut", "supernet"):
        link = out / part
        if not link.exists():
            os.symlink((run_path / part).resolve(), link)
    if not (out / "search" / "pareto.csv").exists():
        code = moga_main(["search", experiment, f"run_dir={out}", f"search.seed={seed}", *overrides, "--no-progress"])
        if code:
            raise SystemExit(f"search failed for {out} (exit {code})")
    return out / "search" / "history.csv"


def hypervolume(points: np.ndarray) -> float:
    """Points already normalised to [0, 1] and to be minimised; reference point 1.1 in every objective."""
    return float(HV(ref_point=np.full(points.shape[1], 1.1))(points))


def score(history: pd.DataFrame, bounds: dict[str, tuple[float, float]], budgets: list[float]) -> dict[str, float]:
    def norm(col: str, maximise: bool) -> np.ndarray:
        lo, hi = bounds[col]
        x = (history[col].to_numpy(float) - lo) / max(hi - lo, 1e-12)
        return 1 - x if maximise else x

    acc, lat, params = norm("accuracy", True), norm("latency_ms", False), norm("params", True)
    row = {"hv_acc_lat": hypervolume(np.c_[acc, lat]), "hv_acc_lat_params": hypervolume(np.c_[acc, lat, params])}
    for b in budgets:
        within = history[history["latency_ms"] <= b]
        row[f"best_acc@{b:.3f}ms"] = float(within["accuracy"].max()) if len(within) else float("nan")
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("experiment")
    p.add_argument("overrides", nargs="*", help="config overrides applied to every variant")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--out", type=Path, default=None, help="default: <run_dir>/ablation")
    p.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS), metavar="NAME", help="default: all")
    args = p.parse_intermixed_args()
    run = Experiment.load(args.experiment, args.overrides).run
    out = args.out or run / "ablation"
    histories = {
        (name, seed): pd.read_csv(
            run_variant(
                args.experiment,
                run,
                out / name.replace(" ", "_").replace("+", "_") / f"seed{seed}",
                seed,
                [*args.overrides, *extra],
            )
        )
        for name, extra in VARIANTS.items()
        if name in args.variants
        for seed in args.seeds
    }
    everything = pd.concat(histories.values())
    bounds = {c: (float(everything[c].min()), float(everything[c].max())) for c in ("accuracy", "latency_ms", "params")}
    budgets = [float(q) for q in np.quantile(everything["latency_ms"], [0.25, 0.5, 0.75])]
    rows = [{"variant": name, "seed": seed, "evaluated": len(h), **score(h, bounds, budgets)} for (name, seed), h in histories.items()]
    table = pd.DataFrame(rows)
    table.to_csv(out / "ablation.csv", index=False)
    metrics = [c for c in table.columns if c not in ("variant", "seed")]
    summary = table.groupby("variant", sort=False)[metrics].agg(["mean", "std"])
    print(f"{len(args.seeds)} seeds, bounds {bounds}, budgets {[round(b, 3) for b in budgets]} ms")
    for name, r in summary.iterrows():
        cells = "  ".join(f"{m} {r[(m, 'mean')]:.4g}±{r[(m, 'std')]:.2g}" for m in metrics)
        print(f"{name:<20} {cells}")
    plot(table, out / "ablation.png")
    print(f"-> {out / 'ablation.csv'}, {out / 'ablation.png'}")


def plot(table: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(table["variant"]))
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for ax, col in zip(axes, ("hv_acc_lat", "hv_acc_lat_params"), strict=True):
        groups = [table.loc[table["variant"] == n, col].to_numpy() for n in names]
        ax.boxplot(groups)
        ax.set_xticks(range(1, len(names) + 1), names, rotation=20, ha="right")
        ax.set_title(col.replace("hv_", "hypervolume: ").replace("_", ", "))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
