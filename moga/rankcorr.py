"""``moga rank-corr``: does the supernet rank architectures the way standalone training does?

1. Sample: many random architectures (seeded), sorted by predicted latency of the run's first table (by
   multiply-adds when the run has no table), and K of them taken at evenly spaced quantiles, so the models
   span the latency range instead of crowding its middle.
2. Supernet accuracy of each: ``SubnetEvaluator`` (BN recalibrated per path) on ``search_val`` - exactly the
   estimate the search ranks by.
3. Standalone accuracy of each: trained from scratch with the experiment's ``retrain`` recipe (override it
   with ``retrain.epochs=2`` etc.; ``init_from_supernet`` is always off here, it would bias the comparison
   toward agreement) and scored on ``test``, the split neither the supernet nor the search ever saw.
   Each run is checkpointed in ``<run_dir>/rankcorr/<arch-id>/``; finished ones are skipped on a rerun.
   With ``--seeds S`` (S >= 2) every model is trained S times (seed j > 0 in ``<arch-id>-seed<j>/``), the
   ground truth is their mean, and the report adds the ground truth's own repeatability: Kendall's τ between
   the seeds' rankings. It bounds what any estimator can show against this recipe: even the exact expected
   accuracies agree with one run only about as well as the square root of that repeatability (for
   Pearson's r exactly).
4. Statistics: Kendall's τ-b, Spearman's ρ and the top-k overlap (k = K // 3 by default), each with a
   seeded bootstrap 95% percentile interval (resampling the K models with replacement).

Outputs in ``<run_dir>/rankcorr/``: ``rankcorr.csv`` (one row per model, rewritten as models finish),
``rankcorr.json`` (statistics and settings) and ``rankcorr.png`` (supernet vs standalone accuracy).
"""

from __future__ import annotations

import io
import itertools
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from lut.validate import kendall_tau, random_archs
from moga.config import ExperimentConfig, dump_config
from moga.experiment import experiment_dataset, experiment_space, locked_on_rank0
from moga.retrain import arch_id
from moga.runio import atomic_write_bytes, atomic_write_text, config_hash, write_json
from supernet.arch import Arch
from supernet.errors import UserError
from supernet.model import count_population
from supernet.space import SearchSpace

if TYPE_CHECKING:
    import torch

    from supernet.train import DistContext

POOL = 2000  # random architectures the K models are chosen from
Statistic = Callable[[np.ndarray, np.ndarray], float]


# ----------------------------------------------------------------------------- statistics (numpy only)
def average_ranks(x: Sequence[float] | np.ndarray) -> np.ndarray:
    """1-based ranks, tied values sharing the mean of the ranks they span (as for Spearman's ρ)."""
    a = np.asarray(x, dtype=np.float64)
    order = np.argsort(a, kind="stable")
    ranks = np.empty(len(a))
    ranks[order] = np.arange(1, len(a) + 1)
    values, inverse = np.unique(a, return_inverse=True)
    sums = np.bincount(inverse, weights=ranks, minlength=len(values))
    return (sums / np.bincount(inverse, minlength=len(values)))[inverse]


def spearman_rho(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float:
    """Spearman's ρ: Pearson correlation of the average ranks (the tie-corrected form); NaN if one is constant."""
    rx, ry = average_ranks(x), average_ranks(y)
    if len(rx) != len(ry) or len(rx) < 2:
        raise ValueError("spearman_rho needs two 1-D arrays of the same length, at least 2")
    dx, dy = rx - rx.mean(), ry - ry.mean()
    denom = math.sqrt(float((dx * dx).sum() * (dy * dy).sum()))
    return float((dx * dy).sum() / denom) if denom else float("nan")


def top_k(x: np.ndarray, k: int) -> set[int]:
    """Indices of the k largest values; ties go to the lower index (a stable, documented choice)."""
    return set(np.argsort(-np.asarray(x, dtype=np.float64), kind="stable")[:k].tolist())


def top_k_overlap(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray, k: int) -> float:
    """Share of the k best models by ``x`` that are also among the k best by ``y`` (0..1)."""
    if not 1 <= k <= len(x):
        raise ValueError(f"top-k overlap needs 1 <= k <= {len(x)}, got {k}")
    return len(top_k(np.asarray(x), k) & top_k(np.asarray(y), k)) / k


def bootstrap_ci(
    stat: Callable[..., float],
    columns: Sequence[Sequence[float] | np.ndarray],
    resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile interval of ``stat(*columns)`` over ``resamples`` resamplings of the rows (the models,
    drawn with replacement; every column is indexed alike).

    Resamples where the statistic is undefined (e.g. all drawn models have one accuracy: τ is NaN) are
    left out; if every one is, the interval is (NaN, NaN).
    """
    cols = [np.asarray(c, dtype=np.float64) for c in columns]
    idx = np.random.default_rng(seed).integers(0, len(cols[0]), size=(resamples, len(cols[0])))
    values = np.array([stat(*(c[i] for c in cols)) for i in idx])
    values = values[~np.isnan(values)]
    if values.size == 0:
        return float("nan"), float("nan")
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(values, [tail, 100 - tail])
    return float(lo), float(hi)


def rank_statistics(
    supernet_acc: Sequence[float], standalone_acc: Sequence[float], k: int, resamples: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """τ-b, ρ and top-k overlap of the two accuracy lists, each ``{"value", "ci95": [lo, hi]}``."""
    x, y = np.asarray(supernet_acc, dtype=np.float64), np.asarray(standalone_acc, dtype=np.float64)
    stats: dict[str, Statistic] = {
        "kendall_tau": kendall_tau,
        "spearman_rho": spearman_rho,
        "top_k_overlap": lambda a, b: top_k_overlap(a, b, k),
    }
    out: dict[str, Any] = {}
    for name, fn in stats.items():
        lo, hi = bootstrap_ci(fn, (x, y), resamples, seed)
        out[name] = {"value": _finite(fn(x, y)), "ci95": [_finite(lo), _finite(hi)]}
    out["top_k"] = k
    out["bootstrap"] = {"resamples": resamples, "seed": seed, "interval": "percentile, 95%"}
    return out


def mean_pairwise_tau(*runs: np.ndarray) -> float:
    """Mean Kendall τ-b over every pair of runs (each one accuracy per model): how well one standalone
    training reproduces the ranking of another."""
    if len(runs) < 2:
        raise ValueError("mean_pairwise_tau needs at least two runs")
    return float(np.mean([kendall_tau(a, b) for a, b in itertools.combinations(runs, 2)]))


def seed_repeatability(runs: Sequence[Sequence[float]], resamples: int = 1000, seed: int = 0) -> dict[str, Any]:
    """``{"value", "ci95"}`` of :func:`mean_pairwise_tau` over the standalone runs (one list per seed)."""
    lo, hi = bootstrap_ci(mean_pairwise_tau, runs, resamples, seed)
    return {"value": _finite(mean_pairwise_tau(*(np.asarray(r, dtype=np.float64) for r in runs))), "ci95": [_finite(lo), _finite(hi)]}


def _finite(v: float) -> float | None:
    """JSON has no NaN: an undefined statistic is written as null."""
    return None if math.isnan(v) else round(float(v), 6)


# ----------------------------------------------------------------------------- sampling
def spread_archs(space: SearchSpace, k: int, seed: int, cost: Callable[[np.ndarray], np.ndarray], pool: int = POOL) -> list[Arch]:
    """``k`` architectures at evenly spaced quantiles of ``cost`` over ``pool`` random ones (deterministic)."""
    if k < 3:
        raise UserError(f"--models must be at least 3 (got {k}): fewer cannot be ranked meaningfully")
    if k > space.size:
        raise UserError(f"--models {k} exceeds the {space.size} architectures of space {space.name!r}")
    if space.size <= pool:  # a small space is taken whole: no draws that could only repeat
        candidates = [Arch(space, genes) for genes in itertools.product(*(range(n) for n in space.n_choices))]
    else:
        candidates = random_archs(space, max(pool, k), seed)
    values = cost(np.stack([a.genome for a in candidates]))
    order = np.argsort(values, kind="stable")
    picks = np.round(np.linspace(0, len(candidates) - 1, k)).astype(int)
    return [candidates[i] for i in order[picks]]


def latency_measure(cfg: ExperimentConfig) -> tuple[str, Callable[[np.ndarray], np.ndarray]]:
    """(name, genomes -> value): the run's first latency table if it exists, else multiply-adds."""
    from lut.build import lut_space, table_path
    from lut.table import LatencyTable

    # Only the primary (first) table orders the sample: another device's table would pick other models.
    name, tc = next(iter(cfg.lut.tables.items()), (None, None))
    if name is not None and tc is not None:
        path = table_path(cfg, name)
        if path.exists():
            table = LatencyTable.load(path)
            table.check_space(lut_space(cfg), batch=tc.batch)
            return f"latency_ms:{name}", table.predictor(lut_space(cfg)).predict_genomes
        print(
            f"rank-corr: no latency table at {path} (run `moga lut build` for one): spreading the sample over multiply-adds",
            file=sys.stderr,
        )
    space = experiment_space(cfg)
    return "macs", lambda genomes: count_population(space, genomes)[1].astype(np.float64)


# ----------------------------------------------------------------------------- the command
def _load_supernet(cfg: ExperimentConfig, device: Any) -> Any:
    from supernet.train import load_supernet

    path = cfg.run_path / "supernet" / "supernet.pt"
    if not path.exists():
        raise UserError(f"rank-corr needs a trained supernet, but there is no {path}: run `moga supernet train` (or `moga run`) first")
    return load_supernet(path, device, data_seed=cfg.seed, space=experiment_space(cfg))


def rank_correlation(
    cfg: ExperimentConfig,
    models: int,
    *,
    seeds: int = 1,
    top_k: int | None = None,
    resamples: int = 1000,
    progress: bool = True,
    dist: DistContext | None = None,
    device: str | torch.device | None = None,
) -> dict[str, Any]:
    """Sample, evaluate, train and correlate ``models`` architectures; returns ``rankcorr.json``'s content
    (rank 0; other torchrun ranks train alongside and return an empty dict)."""
    from supernet.evaluate import SubnetEvaluator
    from supernet.standalone import train_standalone
    from supernet.train import DistContext, derive_seed

    ctx = dist or DistContext()
    k = top_k if top_k is not None else max(1, models // 3)
    if not 1 <= k <= models:
        raise UserError(f"--top-k must be between 1 and --models ({models}), got {k}")
    if resamples < 1:
        raise UserError(f"--resamples must be at least 1, got {resamples}")
    if seeds < 1:
        raise UserError(f"--seeds must be at least 1, got {seeds}")
    out = cfg.run_path / "rankcorr"
    recipe = cfg.retrain.model_copy(update={"init_from_supernet": False})
    with locked_on_rank0(out, ctx):
        net = _load_supernet(cfg, device or cfg.device)
        dataset = experiment_dataset(cfg)
        measure_name, cost = latency_measure(cfg)
        archs = spread_archs(experiment_space(cfg), models, derive_seed(cfg.seed, "rankcorr"), cost)
        table = pd.DataFrame({"arch_id": [arch_id(a) for a in archs], "arch": [str(a) for a in archs]})
        table[measure_name] = cost(np.stack([a.genome for a in archs]))
        if ctx.is_main:
            atomic_write_text(out / "config.yaml", dump_config(cfg))
            evaluator = SubnetEvaluator.from_config(net, dataset, cfg.supernet, seed=cfg.seed, progress=progress)
            table["supernet_acc"] = evaluator.evaluate(archs)
            del evaluator
        del net  # every rank loaded it (a wrong file stops all of them); training needs the memory
        runs = [f"standalone_acc_seed{j}" for j in range(seeds)] if seeds > 1 else ["standalone_acc"]
        table = table.assign(**{column: np.nan for column in ["standalone_acc", *runs]})
        for j, column in enumerate(runs):  # seed by seed: the first full ranking is there soonest
            for i, arch in enumerate(archs):
                result = train_standalone(
                    arch, dataset, recipe, out / standalone_dir(arch, j), seed=standalone_seed(cfg.seed, j),
                    device=device or cfg.device, resume=True, config_text=dump_config(cfg), dist=ctx, progress=progress,
                    desc=f"rank-corr {i + 1}/{models}" + (f" seed {j + 1}/{seeds}" if seeds > 1 else ""),
                )  # fmt: skip
                table.loc[i, column] = result["test_acc"]
                if ctx.is_main:
                    _write_csv(out / "rankcorr.csv", table)
        table["standalone_acc"] = table[runs].mean(axis=1)
        if not ctx.is_main:
            return {}
        stats = rank_statistics(table["supernet_acc"], table["standalone_acc"], k, resamples, seed=cfg.seed)
        if seeds > 1:
            stats["seed_to_seed_tau"] = seed_repeatability([table[c] for c in runs], resamples, seed=cfg.seed)
        _write_csv(out / "rankcorr.csv", table)
        report = {
            **stats,
            "models": models,
            "seeds": seeds,
            "ordered_by": measure_name,
            "supernet_acc": f"SubnetEvaluator on search_val ({len(dataset.search_val)} images), BN recalibrated on {cfg.supernet.bn_calib_images} train images",
            "standalone_acc": f"trained from scratch with the retrain recipe, top-1 on test ({len(dataset.test)} images)"
            + (f", mean of {seeds} seeds" if seeds > 1 else ""),
            "recipe": recipe.model_dump(mode="json"),
            "config_hash": config_hash(cfg.section_dump("seed", "space", "data", "supernet", "retrain", "lut")),
        }
        write_json(out / "rankcorr.json", report)
        atomic_write_bytes(out / "rankcorr.png", scatter_png(table, measure_name, stats))
    return report


def standalone_dir(arch: Arch, j: int) -> str:
    """Run directory name of the ``j``-th standalone training of ``arch`` (seed 0 keeps the plain id)."""
    return arch_id(arch) if j == 0 else f"{arch_id(arch)}-seed{j}"


def standalone_seed(seed: int, j: int) -> int:
    """The experiment's seed for the first standalone training, an independent derived one for the others."""
    from supernet.train import derive_seed

    return seed if j == 0 else derive_seed(seed, "rankcorr-standalone", j)


def _write_csv(path: Path, table: pd.DataFrame) -> None:
    text = io.StringIO()
    table.to_csv(text, index=False, float_format="%.6g")
    atomic_write_text(path, text.getvalue())


def scatter_png(table: pd.DataFrame, color: str, stats: dict[str, Any]) -> bytes:
    """Supernet estimate vs standalone accuracy, one point per model, coloured by latency (or MACs)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 5))
    runs = table.filter(regex=r"^standalone_acc_seed\d+$")
    if runs.shape[1] > 1:  # the spread of the seeds behind each mean
        y = table["standalone_acc"]
        ax.errorbar(table["supernet_acc"], y, yerr=[y - runs.min(axis=1), runs.max(axis=1) - y], fmt="none", ecolor="0.7", lw=1, zorder=1)
    points = ax.scatter(table["supernet_acc"], table["standalone_acc"], c=table[color], cmap="viridis", s=30, zorder=2)
    fig.colorbar(points, ax=ax, label=color.replace("latency_ms", "latency (ms)").replace("macs", "multiply-adds"))
    for _, row in table.iterrows():
        ax.annotate(
            row["arch_id"], (row["supernet_acc"], row["standalone_acc"]), fontsize=6, alpha=0.7, xytext=(3, 3), textcoords="offset points"
        )

    def fmt(name: str) -> str:
        s = stats[name]
        ci = "n/a" if None in s["ci95"] else f"[{s['ci95'][0]:.2f}, {s['ci95'][1]:.2f}]"
        return "n/a" if s["value"] is None else f"{s['value']:.3f} {ci}"

    seeds = f", mean (bar: range) of {runs.shape[1]} seeds" if runs.shape[1] > 1 else ""
    ax.set(xlabel="supernet accuracy, search_val (%)", ylabel=f"standalone accuracy, test (%){seeds}")
    ceiling = f"\nstandalone seed-to-seed τ {fmt('seed_to_seed_tau')}" if "seed_to_seed_tau" in stats else ""
    ax.set_title(
        f"{len(table)} models: Kendall τ {fmt('kendall_tau')}, Spearman ρ {fmt('spearman_rho')}\n"
        f"top-{stats['top_k']} overlap {fmt('top_k_overlap')} (bootstrap 95% intervals){ceiling}",
        fontsize=9,
    )
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()
