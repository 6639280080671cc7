"""Benchmark: ``moga rank-corr --benchmark`` throughput - scoring NAS-Bench-Macro networks with the trie vs one
by one, and the statistics' wall time for the whole table.

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_rankcorr_benchmark.py --models 60
    .venv/bin/python bench/bench_rankcorr_benchmark.py --checkpoint runs/nasbench_macro/supernet/supernet.pt
    .venv/bin/python bench/bench_rankcorr_benchmark.py --models 60 --equivalents mean

Scoring: the same N distinct networks (``benchmark_sample``, seeded) on the same supernet (freshly initialised,
or ``--checkpoint``: the cost does not depend on the weights), with ``SubnetEvaluator`` as rank-corr builds it
(BN recalibrated per path; defaults are experiments/nasbench_macro.yaml's 500 calibration and 1000 validation
images of the embedded CIFAR-10), once with the trie and once one path at a time (``use_trie=False``), in one
process so the ratio is comparable on a noisy machine. The stem-feature cache (once per evaluator) is timed on
its own and left out of both, after a short untimed warm-up. Networks/min are per wall second and per CPU second of this process (the CPU
rate is steadier on a shared machine).

Statistics: what benchmark mode computes for all 3,969 distinct networks with ``--resamples`` bootstrap
resamples - τ-b, ρ, top-k overlap (k = N // 10) for a synthetic supernet estimate (the table's accuracy plus
noise, rounded to a 1000-image accuracy), FLOPs and params, and the 3-seed ceiling.

Prints ``name: value`` lines.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from moga.rankcorr import rank_statistics, seed_repeatability
from moga.rankcorr_benchmark import benchmark_sample, score_networks
from supernet.benchmark import load_benchmark
from supernet.data import load_dataset
from supernet.evaluate import SubnetEvaluator, count_prefixes
from supernet.supernet import Supernet
from supernet.train import load_supernet


def timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """(result, wall seconds, CPU seconds of this process)."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--benchmark", default="nasbench_macro")
    p.add_argument("--models", type=int, default=60, help="distinct networks scored by both methods")
    p.add_argument("--checkpoint", type=Path, default=None, help="a trained supernet.pt of the benchmark's space (default: fresh)")
    p.add_argument("--equivalents", choices=("canonical", "mean"), default="canonical")
    p.add_argument("--calib-images", type=int, default=500)
    p.add_argument("--calib-batch-size", type=int, default=100)
    p.add_argument("--eval-images", type=int, default=1000, help="validation images (of search_val, 100 per class)")
    p.add_argument("--batch-size", type=int, default=100, help="evaluation chunk size")
    p.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples for the statistics timing")
    p.add_argument("--threads", type=int, default=1, help="torch threads (0 = torch default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip-scoring", action="store_true", help="only time the statistics")
    return p.parse_args()


def score(args: argparse.Namespace) -> None:
    bench = load_benchmark(args.benchmark)
    space = bench.space
    data = load_dataset("embedded", resolution=space.resolution, search_val_per_class=100, seed=args.seed)
    if args.checkpoint is not None:
        net = load_supernet(args.checkpoint, space=space)
    else:
        torch.manual_seed(args.seed)
        net = Supernet(space).eval()
    archs = benchmark_sample(bench, space, args.models, args.seed)
    print(f"space: {space.name} {space.resolution}² ({space.variant}), supernet {'fresh' if args.checkpoint is None else args.checkpoint}")
    print(f"threads: {torch.get_num_threads()}")
    print(f"calibration images: {args.calib_images} (batch {args.calib_batch_size})")
    print(f"validation images: {min(args.eval_images, len(data.search_val))} (chunk {args.batch_size})")
    print(f"networks: {len(archs)} ({args.equivalents} paths)")

    warm = SubnetEvaluator(net, data, args.calib_batch_size, args.batch_size, args.batch_size, args.seed)
    warm.evaluate(archs[:2])  # first-call costs (allocator, oneDNN primitives) are paid before anything is timed
    results: dict[str, tuple[np.ndarray, float, float, SubnetEvaluator]] = {}
    for name, use_trie in (("trie", True), ("one-by-one", False)):
        ev = SubnetEvaluator(
            net, data, args.calib_images, args.eval_images, args.batch_size, args.seed, use_trie=use_trie,
            calib_batch_size=args.calib_batch_size,
        )  # fmt: skip
        _, stem_wall, _ = timed(lambda ev=ev: ev.labels)  # the stem-feature cache, once per evaluator
        scored: list[tuple[int, ...]] = []

        def accuracy(batch, ev=ev, scored=scored):  # type: ignore[no-untyped-def]
            scored.extend(a.genes for a in batch)
            return ev.evaluate(batch)

        (acc, _), wall, cpu = timed(lambda accuracy=accuracy: score_networks(archs, accuracy, args.equivalents))
        results[name] = (acc, wall, cpu, ev)
        print(f"{name} stem cache s: {stem_wall:.2f}")
    print(f"paths scored: {len(scored)}")
    print(f"trie nodes (distinct prefixes): {count_prefixes(scored)} of {len(scored) * space.num_layers} path blocks")
    for name, (_, wall, cpu, ev) in results.items():
        print(f"{name} wall s: {wall:.2f}")
        print(f"{name} networks/min: {60 * len(archs) / wall:.1f}")
        print(f"{name} networks/cpu-min: {60 * len(archs) / cpu:.1f}")
        print(f"{name} blocks run: {ev.blocks_run}")
    trie, single = results["trie"], results["one-by-one"]
    print(f"speedup trie/one-by-one (wall): {single[1] / trie[1]:.2f}x")
    print(f"speedup trie/one-by-one (cpu): {single[2] / trie[2]:.2f}x")
    print(f"blocks ratio one-by-one/trie: {single[3].blocks_run / trie[3].blocks_run:.2f}x")
    print(f"identical accuracies: {bool(np.array_equal(trie[0], single[0]))}")


def statistics(args: argparse.Namespace) -> None:
    bench = load_benchmark(args.benchmark)
    archs = bench.distinct()
    records = [bench.lookup(a) for a in archs]
    true = np.array([r.mean_acc for r in records])
    rng = np.random.default_rng(args.seed)
    supernet = np.round((true + rng.normal(scale=3.0, size=len(true))) * 10) / 10  # a 1000-image accuracy: steps of 0.1
    n, k = len(archs), max(1, len(archs) // 10)
    print(f"statistics networks: {n} (resamples {args.resamples}, top-k {k})")
    total = 0.0
    columns = {
        "supernet": supernet,
        "flops": np.array([r.flops for r in records], float),
        "params": np.array([r.params for r in records], float),
    }
    for name, x in columns.items():
        _, wall, _ = timed(lambda x=x: rank_statistics(x, true, k, args.resamples, seed=0))
        total += wall
        print(f"statistics {name} (tau, rho, top-k + CIs) s: {wall:.2f}")
    runs = [np.array([r.test_acc[j] for r in records]) for j in range(bench.seeds)]
    _, wall, _ = timed(lambda: seed_repeatability(runs, args.resamples, seed=0))
    total += wall
    print(f"statistics seed-to-seed tau ({bench.seeds} seeds, CI) s: {wall:.2f}")
    print(f"statistics total s: {total:.2f}")


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.skip_scoring:
        score(args)
    statistics(args)


if __name__ == "__main__":
    main()
