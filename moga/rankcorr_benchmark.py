"""``moga rank-corr --benchmark NAME``: the supernet's estimates against a tabular benchmark's trained accuracies.

Nothing is trained; the ground truth is the table (NAS-Bench-Macro: every network trained 3 times).

1. **The network described.** The table describes ``exp.lut_space`` (``Benchmark.check_space``): the experiment's
   space, or, for a **proxy** supernet trained at a reduced width or resolution (``space.width_mult: 0.5``,
   ``space.resolution: 16``), the full network that ``lut.width_mult`` / ``lut.resolution`` / ``lut.num_classes``
   declare. The supernet scores the same choices in its own space; FLOPs, params and latency are the full network's.
2. **Which networks.** ``--models N``: a seeded uniform sample of the table's distinct networks (canonical
   architectures; seed ``derive_seed(seed, "rankcorr-benchmark", NAME)``); ``--all``: every one. ``--split dev``
   / ``--split heldout``: the protocol that cannot tune to the answer - one fixed permutation of the distinct
   networks (``derive_seed(0, "rankcorr-benchmark-split", NAME)``, independent of the experiment's seed, so every
   supernet seed is judged on the same networks), its first ``DEV_SIZE`` (300) the development sample every
   setting is chosen on, the next ``--models`` (default 1,000) the held-out sample results are reported on.
3. **Estimates.** ``SubnetEvaluator`` (BN recalibrated per path) gives each network's top-1 (``supernet_acc``)
   and minus its cross-entropy (``supernet_neg_loss``) from one pass over the same logits; ``estimate`` is what
   the search ranks by (``supernet.estimate.Estimator``: ``supernet.eval.score``, and with
   ``supernet.eval.additive_paths`` the additive model's prediction). ``--equivalents mean`` averages the
   per-path scores over every equivalent code of a network instead of its canonical path.
4. **Baselines** on the same networks: FLOPs, params, minus the number of skip layers, the run's latency table
   if built, and the zero-cost proxies of ``supernet.zerocost`` (``--zero-cost``: synflow, NASWOT, snip,
   grad-norm on the full network at initialisation, one batch of training images).
5. **Statistics** against the table's mean accuracy over its seeds (``moga.rankcorr.rank_statistics``, paired
   bootstrap): τ-b, ρ and top-k overlap (k = N // 10 by default) with 95 % intervals for the estimate and every
   other column, the paired difference τ(estimate) − τ(FLOPs) with its interval, τ within one depth (the mean τ
   over the groups of networks with the same number of skips, groups of at least 10), and the ceiling: the
   table's seed-to-seed τ.

Outputs in ``<run_dir>/rankcorr/benchmark_<NAME>[_<split>]/``: ``rankcorr.csv`` (a row per network, full
precision), ``rankcorr.json`` (statistics, settings, the sample's seed and split) and ``rankcorr.png``.
"""

from __future__ import annotations

import io
import itertools
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from lut.validate import kendall_tau
from moga.experiment import Experiment
from moga.rankcorr import _finite, _fmt, _png, bootstrap_ci, primary_latency, rank_statistics, seed_repeatability
from supernet.arch import Arch
from supernet.errors import UserError
from supernet.io import atomic_write_bytes, atomic_write_text, write_json
from supernet.space import SearchSpace

if TYPE_CHECKING:
    import torch

    from supernet.benchmark import Benchmark
    from supernet.distributed import DistContext

EQUIVALENTS = ("canonical", "mean")
SPLITS = ("dev", "heldout")
DEV_SIZE = 300  # the development sample of ``--split dev``
HELDOUT_SIZE = 1000  # ``--split heldout``'s default size
MIN_DEPTH_GROUP = 10  # networks with one number of skips needed for that group's τ to count


# ----------------------------------------------------------------------------- which networks
def benchmark_sample(bench: Benchmark, space: SearchSpace, models: int | None, seed: int) -> list[Arch]:
    """``models`` distinct networks of the benchmark (canonical architectures, in code order): a seeded uniform
    sample without replacement; ``None`` = every one."""
    distinct = bench.distinct(space)
    if models is None:
        return distinct
    _check_models(bench, models, len(distinct))
    picks = np.sort(np.random.default_rng(seed).choice(len(distinct), size=models, replace=False))
    return [distinct[i] for i in picks]


def split_sample(bench: Benchmark, space: SearchSpace, split: str, models: int | None) -> tuple[list[Arch], int]:
    """The development or held-out networks of the fixed split (disjoint by construction), in code order, and the
    split's seed. ``models``: how many (dev: at most ``DEV_SIZE``, default all of it; held-out: default 1,000)."""
    from supernet.train import derive_seed

    if split not in SPLITS:
        raise UserError(f"--split must be one of {', '.join(SPLITS)}, got {split!r}")
    distinct = bench.distinct(space)
    seed = derive_seed(0, "rankcorr-benchmark-split", bench.name)
    order = np.random.default_rng(seed).permutation(len(distinct))
    pool = order[:DEV_SIZE] if split == "dev" else order[DEV_SIZE:]
    n = models if models is not None else (DEV_SIZE if split == "dev" else min(HELDOUT_SIZE, len(pool)))
    if n > len(pool):
        raise UserError(f"--models {n} exceeds the {len(pool)} networks of the {split} split of benchmark {bench.name!r}")
    _check_models(bench, n, len(distinct))
    return [distinct[i] for i in np.sort(pool[:n])], seed


def _check_models(bench: Benchmark, models: int, available: int) -> None:
    if models < 3:
        raise UserError(f"--models must be at least 3 (got {models}): fewer cannot be ranked meaningfully")
    if models > available:
        raise UserError(f"--models {models} exceeds the {available} distinct networks of benchmark {bench.name!r} (--all scores every one)")


def equivalent_archs(space: SearchSpace) -> dict[tuple[int, ...], list[Arch]]:
    """Canonical genes -> every architecture of the space that is that network (``SearchSpace.canonical``), in
    code order; the canonical one is among them. Enumerates the space: meant for benchmark-sized ones."""
    if space.size > 1_000_000:
        raise ValueError(f"space {space.name!r} has {space.size} architectures: too many to enumerate the equivalents of")
    groups: dict[tuple[int, ...], list[Arch]] = {}
    for genes in itertools.product(*(range(n) for n in space.n_choices)):
        groups.setdefault(space.canonical(genes), []).append(Arch(space, genes))
    return groups


# ----------------------------------------------------------------------------- estimates
def score_networks(
    archs: Sequence[Arch], accuracy: Callable[[Sequence[Arch]], Any], equivalents: str = "canonical"
) -> tuple[np.ndarray, list[int]]:
    """The supernet scores of each network (one row, or one value, per network) and the supernet paths behind it.

    ``canonical``: the scores of the network's canonical path. ``mean``: the mean over every equivalent code's
    path (all codes whose canonical form is the network; one network, different paths through the supernet).
    ``accuracy`` gets every path in one call, so a trie evaluator shares all their prefixes.
    """
    if equivalents not in EQUIVALENTS:
        raise UserError(f"--equivalents must be one of {', '.join(EQUIVALENTS)}, got {equivalents!r}")
    networks = [a.canonical() for a in archs]
    if equivalents == "canonical":
        return np.asarray(accuracy(networks), dtype=np.float64), [1] * len(networks)
    groups = equivalent_archs(archs[0].space) if archs else {}
    paths = [groups[a.genes] for a in networks]
    values = np.asarray(accuracy([p for group in paths for p in group]), dtype=np.float64)
    ends = np.cumsum([len(group) for group in paths])
    return np.array([values[e - len(g) : e].mean(axis=0) for g, e in zip(paths, ends, strict=True)]), [len(g) for g in paths]


def skips(archs: Sequence[Arch]) -> np.ndarray:
    """The number of skip layers of each architecture (the network's depth is the rest)."""
    return np.array([sum(a.space.layers[i].choices[g].skip for i, g in enumerate(a.genes)) for a in archs])


def _table_latency(exp: Experiment) -> tuple[str, Callable[[np.ndarray], np.ndarray]] | None:
    """``primary_latency``, or None with a note when the table does not fit (a proxy column left out)."""
    try:
        return primary_latency(exp)
    except UserError as exc:
        print(f"rank-corr: latency table {next(iter(exp.cfg.lut.tables))!r} left out: {exc}", file=sys.stderr)
        return None


def benchmark_dir(exp: Experiment, name: str, split: str | None = None) -> Path:
    return exp.rankcorr_dir / (f"benchmark_{name}" + (f"_{split}" if split else ""))


def benchmark_table(
    bench: Benchmark, archs: Sequence[Arch], scores: np.ndarray, estimate: Sequence[float], paths: list[int]
) -> pd.DataFrame:
    """One row per network: the supernet's scores and estimate, the table's accuracies (mean and per seed),
    FLOPs, params, skips and the paths scored."""
    records = [bench.lookup(a) for a in archs]
    return pd.DataFrame(
        {
            "arch": [str(a) for a in archs],
            "code": [a.code for a in archs],
            "estimate": np.asarray(estimate, dtype=np.float64),
            "supernet_acc": scores[:, 0],
            "supernet_neg_loss": scores[:, 1],
            "true_acc": [r.mean_acc for r in records],
            **{f"acc_seed{j}": [r.test_acc[j] for r in records] for j in range(bench.seeds)},
            "flops": [r.flops for r in records],
            "params": [r.params for r in records],
            "skips": skips(archs),
            "paths": paths,
        }
    )


# ----------------------------------------------------------------------------- statistics
BASELINES = ("supernet_acc", "supernet_neg_loss", "flops", "params", "neg_skips", "latency_ms")


def within_depth_tau(estimate: np.ndarray, true: np.ndarray, skip_counts: np.ndarray) -> float | None:
    """Mean Kendall τ over the groups of networks with one number of skips (groups of at least 10): what an
    estimator knows beyond depth, where counting layers cannot help."""
    taus = [kendall_tau(estimate[m], true[m]) for d in np.unique(skip_counts) if (m := skip_counts == d).sum() >= MIN_DEPTH_GROUP]
    taus = [t for t in taus if not np.isnan(t)]
    return round(float(np.mean(taus)), 6) if taus else None


def benchmark_statistics(table: pd.DataFrame, seeds: int, k: int, resamples: int, seed: int, extra: Sequence[str] = ()) -> dict[str, Any]:
    """The estimate's rank statistics against the table's mean accuracy; beside it the same for every baseline
    column (the raw per-path scores, FLOPs, params, minus the skips, latency, ``extra`` ones such as zero-cost
    proxies), each with τ within one depth; the paired τ difference to FLOPs; the table's seed-to-seed τ."""
    true, skip_counts = table["true_acc"].to_numpy(), table["skips"].to_numpy()
    columns = {
        name: table[name] for name in ("supernet_acc", "supernet_neg_loss", "flops", "params", "latency_ms", *extra) if name in table
    }
    columns["neg_skips"] = -table["skips"]
    stats = rank_statistics(table["estimate"], true, k, resamples, seed=seed)
    stats["within_depth_tau"] = within_depth_tau(table["estimate"].to_numpy(), true, skip_counts)
    stats["baselines"] = {}
    for name, values in columns.items():
        s = rank_statistics(values, true, k, resamples, seed=seed)
        del s["bootstrap"]
        s["within_depth_tau"] = within_depth_tau(values.to_numpy(dtype=np.float64), true, skip_counts)
        stats["baselines"][name] = s
    diff = lambda e, f, t: kendall_tau(e, t) - kendall_tau(f, t)  # noqa: E731
    lo, hi = bootstrap_ci(diff, (table["estimate"], table["flops"], true), resamples, seed)
    value = diff(table["estimate"].to_numpy(), table["flops"].to_numpy(), true)
    stats["tau_minus_flops"] = {"value": _finite(value), "ci95": [_finite(lo), _finite(hi)]}
    stats["seed_to_seed_tau"] = seed_repeatability([table[f"acc_seed{j}"] for j in range(seeds)], resamples, seed=seed)
    return stats


# ----------------------------------------------------------------------------- the command
def rank_correlation_benchmark(
    exp: Experiment,
    benchmark: str,
    models: int | None,
    *,
    split: str | None = None,
    equivalents: str = "canonical",
    zero_cost: Sequence[str] = (),
    top_k: int | None = None,
    resamples: int = 1000,
    progress: bool = True,
    dist: DistContext | None = None,
    device: str | torch.device | None = None,
) -> dict[str, Any]:
    """Score networks of a tabular benchmark (``models`` of them, ``None``: all; or a ``split``) with the trained
    supernet and correlate with the table; returns ``rankcorr.json``'s content (rank 0; other torchrun ranks
    return an empty dict, the work is one process's)."""
    from supernet.benchmark import load_benchmark
    from supernet.distributed import DistContext
    from supernet.train import derive_seed

    ctx, cfg = dist or DistContext(), exp.cfg
    bench = load_benchmark(benchmark)
    described = exp.lut_space  # the network the table describes: the space, or the full network of a proxy
    bench.check_space(described, proxy=exp.space)
    _check_zero_cost(zero_cost)
    if equivalents not in EQUIVALENTS:
        raise UserError(f"--equivalents must be one of {', '.join(EQUIVALENTS)}, got {equivalents!r}")
    if resamples < 1:
        raise UserError(f"--resamples must be at least 1, got {resamples}")
    if split is not None:
        archs, sample_seed = split_sample(bench, described, split, models)
    else:
        sample_seed = derive_seed(cfg.seed, "rankcorr-benchmark", benchmark)
        archs = benchmark_sample(bench, described, models, sample_seed)
    n = len(archs)
    k = top_k if top_k is not None else max(1, n // 10)
    if not 1 <= k <= n:
        raise UserError(f"--top-k must be between 1 and the number of networks ({n}), got {k}")
    out = benchmark_dir(exp, benchmark, split)
    with exp.locked(out, ctx):
        if not ctx.is_main:
            return {}
        net = exp.supernet("rank-corr", device)
        exp.write_config(out)
        estimator = exp.estimator(net, progress=progress)
        trained = [Arch(exp.space, a.genes) for a in archs]  # the same choices in the supernet's (proxy) space
        start = time.perf_counter()
        scores, paths = score_networks(trained, estimator.evaluator.scores, equivalents)
        wall = time.perf_counter() - start
        start = time.perf_counter()
        estimate = estimator(trained)
        estimate_wall = time.perf_counter() - start + (wall if not cfg.supernet.eval.additive_paths else 0.0)
        table = benchmark_table(bench, archs, scores, estimate, paths)
        latency = _table_latency(exp)
        if latency is not None:
            table["latency_ms"] = latency[1](np.stack([a.genome for a in archs]))
        zero_cost_wall = _add_zero_cost(table, exp, archs, zero_cost, progress)
        start_stats = time.perf_counter()
        stats = benchmark_statistics(table, bench.seeds, k, resamples, cfg.seed, extra=zero_cost)
        report = {
            **stats,
            "benchmark": benchmark,
            "benchmark_source": bench.info.source,
            "models": n,
            "all": models is None and split is None,
            "split": split,
            "sample_seed": sample_seed,
            "equivalents": equivalents,
            "paths_scored": sum(paths),
            "estimate": estimator.settings(),
            "trained_space": _space_settings(exp.space),
            "described_space": _space_settings(described),
            "supernet_acc": f"SubnetEvaluator on search_val ({estimator.evaluator.settings()['val_images']} images), BN recalibrated on "
            f"{cfg.supernet.eval.calib_images} train images, "
            + ("the canonical path of each network" if equivalents == "canonical" else "mean over every equivalent code's path"),
            "true_acc": f"{bench.info.dataset}: mean of the {bench.seeds} seeds",
            "seed_to_seed_tau_note": "mean pairwise Kendall τ between the table's seeds on these networks: the ceiling",
            "evaluator": {
                **estimator.evaluator.settings(),
                "batch_size": estimator.evaluator.batch_size,
                "use_trie": estimator.evaluator.use_trie,
            },
            "scoring": _scoring(estimator.evaluator, n, paths, wall, estimate_wall, zero_cost_wall, exp.space.num_layers),
            "statistics_wall_seconds": round(time.perf_counter() - start_stats, 3),
            "choice_effects": choice_effects(archs, table["estimate"].to_numpy(), table["true_acc"].to_numpy()),
            "config_hash": exp.identity("rankcorr-benchmark"),
        }
        del estimator, net
        text = io.StringIO()
        table.to_csv(text, index=False)  # full precision: true_acc equals the table's value exactly
        atomic_write_text(out / "rankcorr.csv", text.getvalue())
        write_json(out / "rankcorr.json", report)
        atomic_write_bytes(out / "rankcorr.png", benchmark_png(table, report))
    return report


ZERO_COST_BATCH = 64  # training images the data-based zero-cost proxies see


def _check_zero_cost(names: Sequence[str]) -> None:
    if not names:
        return
    from supernet.zerocost import ZERO_COST

    unknown = [n for n in names if n not in ZERO_COST]
    if unknown:
        raise UserError(f"--zero-cost: unknown proxy {unknown[0]!r} (moga computes {', '.join(ZERO_COST)}, or all / none)")


def zero_cost_batch(exp: Experiment, space: SearchSpace) -> tuple[torch.Tensor, torch.Tensor]:
    """``ZERO_COST_BATCH`` training images (eval preprocessing, at ``space``'s resolution: the full network's, also
    for a proxy supernet) and their labels, drawn at random with the experiment's seed."""
    from supernet.data import load_dataset

    d = exp.cfg.data
    data = exp.dataset
    if space.resolution != data.resolution:
        data = load_dataset(
            d.kind, d.path, space.resolution, search_val_per_class=d.search_val_per_class, seed=exp.cfg.seed, num_workers=d.workers
        )
    idx = data.calibration_indices(ZERO_COST_BATCH, exp.cfg.seed)
    return data.calibration_batch(ZERO_COST_BATCH, exp.cfg.seed), data.train.labels[idx]


def _add_zero_cost(table: pd.DataFrame, exp: Experiment, archs: Sequence[Arch], names: Sequence[str], progress: bool) -> float:
    """The zero-cost proxies of the full networks as columns of ``table``; returns the seconds they took."""
    if not names:
        return 0.0
    from supernet.zerocost import zero_cost_scores

    start = time.perf_counter()
    images, labels = zero_cost_batch(exp, archs[0].space)
    for name, values in zero_cost_scores(archs, images, labels, names, seed=exp.cfg.seed, progress=progress).items():
        table[name] = values
    return time.perf_counter() - start


def _scoring(
    evaluator: Any, n: int, paths: list[int], wall: float, estimate_wall: float, zero_cost_wall: float, layers: int
) -> dict[str, Any]:
    return {
        "wall_seconds": round(wall, 3),
        "networks_per_min": round(60 * n / max(wall, 1e-9), 2),
        "paths_per_min": round(60 * sum(paths) / max(wall, 1e-9), 2),
        "estimate_wall_seconds": round(estimate_wall, 3),
        "zero_cost_wall_seconds": round(zero_cost_wall, 3),
        "blocks_run": evaluator.blocks_run,
        "blocks_one_by_one": sum(paths) * layers,
        "heads_run": evaluator.heads_run,
    }


def _space_settings(space: SearchSpace) -> dict[str, Any]:
    return {"name": space.name, "resolution": space.resolution, "num_classes": space.num_classes, "width_mult": space.width_mult}


def choice_effects(archs: Sequence[Arch], estimate: np.ndarray, true: np.ndarray) -> list[dict[str, Any]]:
    """Per layer and choice, the mean estimate and the mean true accuracy of the sampled networks taking that
    choice there, each minus the mean over all sampled networks: where the estimator's preferences between a
    layer's choices differ from training's (e.g. a skip penalised less than it should be)."""
    genes = np.array([a.genes for a in archs])
    rows = []
    for layer, spec in enumerate(archs[0].space.layers if archs else []):
        for c, choice in enumerate(spec.choices):
            taken = genes[:, layer] == c
            if taken.any():
                rows.append(
                    {
                        "layer": layer + 1,
                        "choice": choice.token,
                        "networks": int(taken.sum()),
                        "estimate_effect": round(float(estimate[taken].mean() - estimate.mean()), 3),
                        "true_effect": round(float(true[taken].mean() - true.mean()), 3),
                    }
                )
    return rows


def benchmark_png(table: pd.DataFrame, report: dict[str, Any]) -> bytes:
    """The estimate vs the table's mean accuracy, one point per network, coloured by FLOPs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 5))
    size = 30 if len(table) <= 100 else max(2, 3000 // len(table))
    points = ax.scatter(table["estimate"], table["true_acc"], c=table["flops"] / 1e6, cmap="viridis", s=size, alpha=0.7, lw=0)
    fig.colorbar(points, ax=ax, label="MFLOPs")
    ax.set(
        xlabel=f"supernet estimate: {report['estimate']['estimate']}, {report['equivalents']} paths",
        ylabel=f"{report['benchmark']} test accuracy (%), mean of seeds",
    )
    ax.set_title(
        f"{report['models']} {report['benchmark']} networks{' (' + report['split'] + ')' if report['split'] else ''}: "
        f"Kendall τ {_fmt(report['kendall_tau'])}\nFLOPs τ {_fmt(report['baselines']['flops']['kendall_tau'])}, "
        f"ceiling (seed-to-seed τ) {_fmt(report['seed_to_seed_tau'])} (bootstrap 95%)",
        fontsize=9,
    )
    return _png(fig)
