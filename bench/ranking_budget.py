"""Benchmark: supernet ranking per CPU-minute on NAS-Bench-Macro - τ against training minutes, one line per estimator.

    OMP_NUM_THREADS=1 .venv/bin/python bench/ranking_budget.py --split dev runs/p25_s1200 runs/p25r16_s4000 runs/p25_s7200
    OMP_NUM_THREADS=1 .venv/bin/python bench/ranking_budget.py --split heldout --out bench_out/ranking runs/...  [--zero-cost all]
    OMP_NUM_THREADS=1 .venv/bin/python bench/ranking_budget.py --split heldout --ensemble seeds012_s4000 runs/a runs/b runs/c

Each argument is the run directory of a trained supernet (``moga supernet train experiments/nasbench_macro.yaml
...``): its ``supernet/config.yaml`` is the experiment (a proxy supernet is told the full network it estimates
with ``--set lut.width_mult=1.0 --set lut.resolution=32``, the default here), its ``curves.csv`` gives the
training minutes as measured (``elapsed_s`` of the last step: wall time of the training process, with the
thread count and load it ran under). For every run, on the networks of ``--split`` (``moga rank-corr``'s fixed
split: dev = 300 networks to choose settings on, heldout = 1,000 others to report on), one evaluator (BN
recalibrated per path, the experiment's ``supernet.eval``) scores the networks and the additive model's fit
paths once; then every estimator is read from those scores:

* ``top-1`` / ``-loss``: each network's own path, top-1 accuracy or minus the cross-entropy;
* ``additive -loss N`` / ``additive top-1 N``: the per-layer additive model fitted to N paths' scores
  (``supernet.estimate``; N from ``--paths``), predicting every network.

``--ensemble NAME``: the runs (other seeds of one recipe) are one estimator, each supernet's values standardised
and averaged, its minutes summed (a row per estimator named NAME).

Statistics are ``moga rank-corr``'s (``moga.rankcorr_benchmark.benchmark_statistics``): τ-b with a paired
bootstrap 95 % interval, ρ, top-10 % overlap, τ within one depth, τ − τ(FLOPs) with its interval; beside them
FLOPs, params, minus the skips, the zero-cost proxies (``--zero-cost``) and the table's seed-to-seed τ.
Writes ``ranking_<split>.csv`` (a row per run and estimator; rows of runs measured earlier into the same
``--out`` are kept, so runs can be measured as they finish) and ``ranking_<split>.png`` (τ against training minutes, one line
per estimator, FLOPs / the best zero-cost proxy / the ceiling as horizontal lines) to ``--out``, and prints a table.
"""

from __future__ import annotations

import argparse
import io
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from moga.experiment import Experiment
from moga.rankcorr_benchmark import benchmark_statistics, benchmark_table, split_sample, zero_cost_batch
from supernet.arch import Arch
from supernet.benchmark import load_benchmark
from supernet.estimate import AdditiveModel, fit_paths
from supernet.train import derive_seed

PROXY = ["lut.width_mult=1.0", "lut.resolution=32", "lut.num_classes=10"]
PLOTTED = ("top-1", "-loss", "additive top-1 600", "additive -loss 600")  # the lines; every estimator is in the CSV
RECIPE_KEYS = ("distill", "zero_init_residual", "choice_init", "weight_decay", "grad_clip", "sampler", "label_smoothing")


def recipe(exp: Experiment) -> str:
    """How the run's supernet training differs from the experiment file's (``default``: not at all)."""
    from supernet.config import SupernetConfig

    ref = SupernetConfig()
    return (
        ", ".join(f"{k} {getattr(exp.cfg.supernet, k)}" for k in RECIPE_KEYS if getattr(exp.cfg.supernet, k) != getattr(ref, k))
        or "default"
    )


def run_minutes(run: Path) -> float:
    curves = pd.read_csv(run / "supernet" / "curves.csv")
    return float(curves["elapsed_s"].iloc[-1]) / 60


def estimators(exp: Experiment, net: Any, archs: list[Arch], paths: list[int]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Every estimator's values on ``archs`` (the supernet space's), and the per-path (top-1, -loss) scores."""
    evaluator = exp.evaluator(net)
    fit = fit_paths(exp.space, max(paths), derive_seed(exp.cfg.seed, "additive-paths"))
    scores = evaluator.scores([*archs, *fit])
    own, fitted = scores[: len(archs)], scores[len(archs) :]
    out = {"top-1": own[:, 0], "-loss": own[:, 1]}
    genomes, fit_genomes = np.array([a.genes for a in archs]), np.array([a.genes for a in fit])
    for n in paths:
        for column, name in ((1, "-loss"), (0, "top-1")):
            model = AdditiveModel(exp.space.n_choices).fit(fit_genomes[:n], fitted[:n, column])
            out[f"additive {name} {n}"] = model.predict(genomes)
    return out, own


def load(run: Path, split: str, sets: list[str]) -> tuple[Experiment, list[Arch]]:
    exp = Experiment.load(run / "supernet" / "config.yaml", [f"run_dir={run}", *sets])
    bench = load_benchmark("nasbench_macro")
    bench.check_space(exp.lut_space, proxy=exp.space)
    return exp, split_sample(bench, exp.lut_space, split, None)[0]


def zero_cost_values(exp: Experiment, archs: list[Arch], names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The zero-cost proxies of the split's full networks (they do not depend on the supernet: computed once)."""
    if not names:
        return {}
    from supernet.zerocost import zero_cost_scores

    start = time.perf_counter()
    images, labels = zero_cost_batch(exp, archs[0].space)
    out = zero_cost_scores(archs, images, labels, names, seed=exp.cfg.seed)
    print(f"zero-cost proxies of {len(archs)} networks: {time.perf_counter() - start:.1f} s")
    return out


def scored(
    run: Path, split: str, paths: list[int], sets: list[str]
) -> tuple[Experiment, list[Arch], dict[str, np.ndarray], np.ndarray, float]:
    """The run's experiment, the split's networks, every estimator's values on them, the per-path scores and the
    scoring seconds."""
    exp, archs = load(run, split, sets)
    net = exp.supernet("bench/ranking_budget.py")
    start = time.perf_counter()
    values, own = estimators(exp, net, [Arch(exp.space, a.genes) for a in archs], paths)
    return exp, archs, values, own, time.perf_counter() - start


def statistics_rows(
    info: dict[str, Any],
    archs: list[Arch],
    values: dict[str, np.ndarray],
    own: np.ndarray,
    zero_cost: dict[str, np.ndarray],
    resamples: int,
    seed: int,
) -> list[dict[str, Any]]:
    bench = load_benchmark("nasbench_macro")
    base = benchmark_table(bench, archs, own, values["-loss"], [1] * len(archs)).assign(**zero_cost)
    rows = []
    for name, v in values.items():
        table = base.assign(estimate=v)
        s = benchmark_statistics(table, bench.seeds, max(1, len(archs) // 10), resamples, seed, extra=tuple(zero_cost))
        row = {
            **info, "networks": len(archs), "estimator": name,
            "tau": s["kendall_tau"]["value"], "tau_lo": s["kendall_tau"]["ci95"][0], "tau_hi": s["kendall_tau"]["ci95"][1],
            "rho": s["spearman_rho"]["value"], "top10_overlap": s["top_k_overlap"]["value"], "tau_within_depth": s["within_depth_tau"],
            "tau_minus_flops": s["tau_minus_flops"]["value"], "tau_minus_flops_lo": s["tau_minus_flops"]["ci95"][0],
            "tau_minus_flops_hi": s["tau_minus_flops"]["ci95"][1], "ceiling": s["seed_to_seed_tau"]["value"],
        }  # fmt: skip
        for b, bs in s["baselines"].items():
            row[f"{b}_tau"] = bs["kendall_tau"]["value"]
        rows.append(row)
    return rows


def measure(
    run: Path, split: str, paths: list[int], sets: list[str], zero_cost: dict[str, np.ndarray], resamples: int
) -> list[dict[str, Any]]:
    exp, archs, values, own, seconds = scored(run, split, paths, sets)
    info = {
        "run": run.name, "recipe": recipe(exp), "seed": exp.cfg.seed, "steps": exp.cfg.supernet.steps,
        "minutes": round(run_minutes(run), 2), "scoring_minutes": round(seconds / 60, 2), "split": split,
    }  # fmt: skip
    return statistics_rows(info, archs, values, own, zero_cost, resamples, exp.cfg.seed)


def standardised(v: np.ndarray) -> np.ndarray:
    return (v - v.mean()) / (v.std() or 1.0)


def measure_ensemble(
    name: str, runs: list[Path], split: str, paths: list[int], sets: list[str], zero_cost: dict[str, np.ndarray], resamples: int
) -> list[dict[str, Any]]:
    """The runs (supernets of one recipe, other seeds) as one estimator: each estimator's values standardised per
    supernet and averaged; its minutes are the runs' training (and scoring) minutes summed."""
    results = [scored(run, split, paths, sets) for run in runs]
    exp, archs = results[0][0], results[0][1]
    recipes = {recipe(r[0]) for r in results}
    values = {k: np.mean([standardised(r[2][k]) for r in results], axis=0) for k in results[0][2]}
    own = np.mean([r[3] for r in results], axis=0)  # the per-path columns of the table: the seeds' mean
    info = {
        "run": name, "recipe": f"ensemble of {len(runs)}, " + ", ".join(sorted(recipes)), "seed": -1,
        "steps": sum(r[0].cfg.supernet.steps for r in results), "minutes": round(sum(run_minutes(run) for run in runs), 2),
        "scoring_minutes": round(sum(r[4] for r in results) / 60, 2), "split": split,
    }  # fmt: skip
    return statistics_rows(info, archs, values, own, zero_cost, resamples, exp.cfg.seed)


def plot(df: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    default = df[(df["recipe"] == "default") & df["estimator"].isin(PLOTTED)]
    mean = default.groupby(["estimator", "steps"], as_index=False).agg(
        minutes=("minutes", "mean"), tau=("tau", "mean"), lo=("tau_lo", "mean"), hi=("tau_hi", "mean"), seeds=("seed", "nunique")
    )
    colors = dict(zip(PLOTTED, ("tab:cyan", "tab:blue", "tab:olive", "tab:green"), strict=True))
    for name in PLOTTED:
        g = mean[mean["estimator"] == name].sort_values("minutes")
        label = f"{name} (mean of the seeds run)"
        ax.errorbar(
            g["minutes"], g["tau"], yerr=[g["tau"] - g["lo"], g["hi"] - g["tau"]], marker="o", capsize=3, color=colors[name], label=label
        )
        seeds = default[default["estimator"] == name]
        ax.scatter(seeds["minutes"], seeds["tau"], s=12, color=colors[name], alpha=0.5)
    variants = df[(df["recipe"] != "default") & (df["estimator"] == PLOTTED[-1])]
    for (variant, rows), marker in zip(variants.groupby("recipe"), "sD^v", strict=False):
        ax.scatter(rows["minutes"], rows["tau"], marker=marker, s=40, color="tab:red", label=f"{PLOTTED[-1]}, {variant}")
    lines = [
        ("flops_tau", "FLOPs", "k", "--"),
        ("neg_skips_tau", "−skips", "0.5", ":"),
        ("ceiling", "ceiling (table seed-to-seed)", "r", "-."),
    ]
    zc = [c for c in df.columns if c.endswith("_tau") and c.split("_tau")[0] in ("synflow", "naswot", "snip", "grad_norm")]
    if zc:
        best = max(zc, key=lambda c: df[c].mean())
        lines.append((best, f"best zero-cost ({best.removesuffix('_tau')})", "g", "--"))
    for column, label, color, style in lines:
        ax.axhline(df[column].mean(), color=color, ls=style, lw=1, label=f"{label} {df[column].mean():.3f}")
    ax.set(
        xlabel="supernet training, minutes (measured)",
        ylabel=f"Kendall τ vs NAS-Bench-Macro ({df['split'].iloc[0]}, {df['networks'].iloc[0]} networks)",
        title="bars: 95 % bootstrap interval (mean over seeds); small dots: single seeds",
    )
    ax.title.set_fontsize(8)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    path.write_bytes(buf.getvalue())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("runs", nargs="+", type=Path, help="run directories of trained supernets")
    p.add_argument("--split", choices=("dev", "heldout"), default="dev")
    p.add_argument("--paths", default="50,100,200,300,600", help="additive model fit sizes, comma-separated")
    p.add_argument("--set", dest="sets", action="append", default=None, help="config override for every run (default: the proxy's lut.*)")
    p.add_argument("--zero-cost", default="none", help="zero-cost baselines on the full networks: all, none or names")
    p.add_argument("--resamples", type=int, default=1000)
    p.add_argument("--out", type=Path, default=Path("bench_out/ranking"))
    p.add_argument("--ensemble", default=None, help="measure the runs as one ensemble of this name (other seeds of one recipe)")
    args = p.parse_args()
    from moga.cli.rank_corr import zero_cost_names

    paths = [int(n) for n in args.paths.split(",")]
    sets = PROXY if args.sets is None else args.sets
    zero_cost = zero_cost_values(*load(args.runs[0], args.split, sets), zero_cost_names(args.zero_cost))
    if args.ensemble:
        rows = measure_ensemble(args.ensemble, args.runs, args.split, paths, sets, zero_cost, args.resamples)
    else:
        rows = [row for run in args.runs for row in measure(run, args.split, paths, sets, zero_cost, args.resamples)]
    df = pd.DataFrame(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    csv = args.out / f"ranking_{args.split}.csv"
    if csv.exists():  # runs measured earlier stay (one row set per run name: a run measured again replaces its rows)
        earlier = pd.read_csv(csv)
        df = pd.concat([earlier[~earlier["run"].isin(df["run"])], df], ignore_index=True)
    df.to_csv(csv, index=False)
    plot(df, args.out / f"ranking_{args.split}.png")
    show = [
        "run",
        "recipe",
        "seed",
        "minutes",
        "estimator",
        "tau",
        "tau_lo",
        "tau_hi",
        "rho",
        "top10_overlap",
        "tau_within_depth",
        "tau_minus_flops",
        "flops_tau",
    ]
    print(df[show].to_string(index=False))
    print(json.dumps({c: round(float(df[c].mean()), 3) for c in df.columns if c.endswith("_tau") or c == "ceiling"}))
    print(f"-> {args.out}/ranking_{args.split}.csv, ranking_{args.split}.png")


if __name__ == "__main__":
    main()
