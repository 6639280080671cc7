"""Benchmark: BN-recalibrated supernet accuracy estimates per minute, trie walk vs one by one.

    .venv/bin/python bench/bench_evaluate.py                      # MoGA cifar 32², 1000 calib + 1000 val images
    .venv/bin/python bench/bench_evaluate.py --val-per-class 200  # 2000 val images (the ~1 s/candidate reference)
    .venv/bin/python bench/bench_evaluate.py --founders 0         # a random population: the trie's worst case
    .venv/bin/python bench/bench_evaluate.py --variant imagenet --width-mult 0.5   # the quickstart's space

The population imitates one late NSGA-II generation: ``--generations`` rounds of uniform crossover and
per-layer mutation (probability 1/L) starting from a converged-ish pool of ``--founders`` genomes, so
offspring share prefixes. Methods, all in one process on the same candidates so ratios are comparable on a
noisy machine (each timed ``--repeats`` times, interleaved, best kept):

* trie       - ``SubnetEvaluator`` (cached stem features, every distinct prefix run once)
* one-by-one - ``SubnetEvaluator(use_trie=False)`` (cached stem features, each candidate's path on its own)
* direct     - ``extract_recalibrated`` + eval forward per candidate (the straightforward implementation)
* plain      - ``net.extract`` + eval forward on the validation images, no recalibration

The per-candidate methods run on the first ``--subset`` candidates (their cost does not depend on sharing);
the trie runs on the whole population. Rates are given per CPU second of this process (``time.process_time``,
one torch thread by default) as well as per wall second: on a machine shared with other jobs the wall clock
swings with their load, the CPU time much less, so the ratios use CPU time. Peak memory is the process's peak
RSS during each method, measured by resetting the kernel's high-water mark (``/proc/self/clear_refs``), minus
the RSS before it (memory the allocator kept from earlier methods is reused and so not counted).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from supernet import Arch, SearchSpace, get_space
from supernet.data import load_dataset
from supernet.evaluate import SubnetEvaluator, count_prefixes, extract_recalibrated
from supernet.model import block_cost
from supernet.supernet import Supernet


def simulate_offspring(space: SearchSpace, rng: np.random.Generator, size: int, generations: int, founders: int) -> list[Arch]:
    """One late-generation offspring population: crossover + mutation from a pool of ``founders`` genomes."""
    n_choices = np.array(space.n_choices)
    rate = 1.0 / space.num_layers

    def mutate(genome: np.ndarray) -> np.ndarray:
        hit = rng.random(len(genome)) < rate
        return np.where(hit, rng.integers(0, n_choices), genome)

    if founders <= 0:  # no convergence at all: a uniformly random population
        return [Arch.random(space, rng) for _ in range(size)]
    pool = [rng.integers(0, n_choices) for _ in range(founders)]
    pop = [mutate(pool[i % founders]) for i in range(size)]
    for _ in range(generations):
        parents = rng.integers(0, size, (size, 2))
        pop = [mutate(np.where(rng.random(space.num_layers) < 0.5, pop[a], pop[b])) for a, b in parents]
    return [Arch.from_genome(space, g) for g in pop]


def predicted_speedup(space: SearchSpace, genomes: list[tuple[int, ...]]) -> float:
    """Trie speedup over one-by-one if a block's cost were its multiply-adds (heads cost the same in both)."""
    macs = [[block_cost(space.layer_shape(i, c))[1] for c in range(n)] for i, n in enumerate(space.n_choices)]
    nodes = {g[: i + 1] for g in genomes for i in range(len(g))}
    head = block_cost(space.head)[1] * len(genomes)
    one_by_one = sum(macs[i][c] for g in genomes for i, c in enumerate(g)) + head
    return one_by_one / (sum(macs[len(p) - 1][p[-1]] for p in nodes) + head)


def sharing_table(space: SearchSpace, size: int, seed: int) -> None:
    """Distinct-prefix share and predicted speedup for populations of different convergence."""
    print("founders generations  nodes/(N*L)  predicted speedup (MAC-weighted)")
    for founders in (0, 2, 4, 8):
        for generations in (1, 3, 10) if founders else (0,):
            genomes = list(
                dict.fromkeys(a.genes for a in simulate_offspring(space, np.random.default_rng(seed), size, generations, founders))
            )
            share = count_prefixes(genomes) / (len(genomes) * space.num_layers)
            print(f"{founders:>8} {generations:>11} {share:>12.1%} {predicted_speedup(space, genomes):>10.2f}x")


# ----------------------------------------------------------------------------- memory
def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def measure(fn: Callable[[], object]) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds, peak RSS increase in MB) of one call."""
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak-RSS high-water mark to the current RSS
    before = _status_kb("VmRSS")
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return wall, cpu, (_status_kb("VmHWM") - before) / 1024


# ----------------------------------------------------------------------------- the methods
def direct_accuracy(
    net: Supernet, arch: Arch, calib: torch.Tensor, val: list[tuple[torch.Tensor, torch.Tensor]], calib_batch: int
) -> float:
    model = extract_recalibrated(net, arch, calib, calib_batch)
    return _accuracy(model, val)


def plain_accuracy(net: Supernet, arch: Arch, val: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
    return _accuracy(net.extract(arch).eval(), val)


def _accuracy(model: torch.nn.Module, val: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
    with torch.inference_mode():
        correct = sum(int((model(x).argmax(1) == y).sum()) for x, y in val)
    return 100.0 * correct / sum(len(y) for _, y in val)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--space", default="moga")
    p.add_argument("--resolution", type=int, default=32)
    p.add_argument("--variant", default="cifar", help="space stride variant: cifar or imagenet (the quickstart's)")
    p.add_argument("--width-mult", type=float, default=1.0)
    p.add_argument("--calib-images", type=int, default=1000)
    p.add_argument("--calib-batch-size", type=int, default=100, help="BN recalibration batch")
    p.add_argument("--val-per-class", type=int, default=None, help="search_val images per class (data.py default: 100)")
    p.add_argument("--batch-size", type=int, default=100, help="evaluation chunk size (speed and memory only)")
    p.add_argument("--population", type=int, default=70)
    p.add_argument("--generations", type=int, default=3)
    p.add_argument("--founders", type=int, default=4, help="converged pool size; 0 = random population")
    p.add_argument("--subset", type=int, default=10, help="candidates timed for the per-candidate methods")
    p.add_argument("--repeats", type=int, default=1, help="interleaved timing rounds, best kept")
    p.add_argument("--threads", type=int, default=1, help="torch threads (0 = torch default)")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    data = load_dataset("embedded", resolution=args.resolution, search_val_per_class=args.val_per_class, seed=args.seed)
    space = get_space(
        args.space, num_classes=len(data.classes), resolution=args.resolution, width_mult=args.width_mult, variant=args.variant
    )
    torch.manual_seed(args.seed)
    net = Supernet(space).eval()  # random weights: the cost does not depend on training
    pop = simulate_offspring(space, np.random.default_rng(args.seed), args.population, args.generations, args.founders)
    distinct = list(dict.fromkeys(a.genes for a in pop))
    nodes = count_prefixes(distinct)
    subset = pop[: args.subset]
    settings = {
        "calib_images": args.calib_images,
        "calib_batch_size": args.calib_batch_size,
        "batch_size": args.batch_size,
        "seed": args.seed,
        "channels_last": args.channels_last,
    }
    calib = data.calibration_batch(args.calib_images, args.seed, args.channels_last)
    val = list(data.loader("search_val", args.batch_size, train=False, channels_last=args.channels_last))
    n_val = sum(len(y) for _, y in val)
    print(f"space {space.name} {args.resolution}² ({space.variant}), {args.calib_images} calibration (batch {args.calib_batch_size}) + "
          f"{n_val} validation images, chunk {args.batch_size}, threads {torch.get_num_threads()}, channels_last={args.channels_last}")  # fmt: skip
    sharing_table(space, args.population, args.seed)
    print(f"\nbenchmarked population: {len(pop)} ({len(distinct)} distinct), trie nodes {nodes} = "
          f"{nodes / (len(distinct) * space.num_layers):.1%} of N*L, predicted speedup {predicted_speedup(space, distinct):.2f}x")  # fmt: skip

    results: dict[str, dict[str, float]] = {}
    accuracies: dict[str, list[float]] = {}

    def run(name: str, fn: Callable[[], list[float]], candidates: int) -> None:
        out: list[float] = []
        wall, cpu, peak = measure(lambda: out.extend(fn()))
        if name not in results or cpu < results[name]["cpu_seconds"]:
            results[name] = {
                "candidates": candidates,
                "wall_seconds": wall,
                "cpu_seconds": cpu,
                "evals_per_min": 60 * candidates / max(wall, 1e-9),
                "evals_per_cpu_min": 60 * candidates / max(cpu, 1e-9),
                "peak_rss_mb": peak,
            }
        accuracies[name] = out

    def evaluator(use_trie: bool) -> SubnetEvaluator:
        ev = SubnetEvaluator(net, data, use_trie=use_trie, **settings)
        _ = ev.labels  # builds the stem-feature cache: once per evaluator (per search), timed on its own below
        return ev

    run("stem cache", lambda: [float(len(evaluator(True).labels))], 0)
    for _ in range(args.repeats):
        trie, single = evaluator(True), evaluator(False)
        run("trie", lambda ev=trie: ev.evaluate(pop), len(distinct))
        run("one-by-one", lambda ev=single: ev.evaluate(subset), len(subset))
        run("direct", lambda: [direct_accuracy(net, a, calib, val, args.calib_batch_size) for a in subset], len(subset))
        run("plain", lambda: [plain_accuracy(net, a, val) for a in subset], len(subset))
    trie_subset = trie.evaluate(subset)  # cache hits
    if not trie_subset == accuracies["one-by-one"] == accuracies["direct"]:
        raise SystemExit(f"accuracies differ: trie {trie_subset} one-by-one {accuracies['one-by-one']} direct {accuracies['direct']}")
    report(results, trie.peak_activation_bytes)
    if args.json:
        summary = {"args": {k: str(v) for k, v in vars(args).items()}, "n_val": n_val, "distinct": len(distinct), "trie_nodes": nodes}
        args.json.write_text(
            json.dumps({**summary, "trie_working_set_bytes": trie.peak_activation_bytes, "results": results}, indent=2) + "\n"
        )


def report(results: dict[str, dict[str, float]], working_set: int) -> None:
    print(f"\n{'method':<12} {'candidates':>10} {'wall s':>8} {'CPU s':>8} {'evals/min':>10} {'evals/CPU-min':>14} {'peak RSS +MB':>13}")
    for name, r in results.items():
        print(f"{name:<12} {r['candidates']:>10.0f} {r['wall_seconds']:>8.1f} {r['cpu_seconds']:>8.1f} {r['evals_per_min']:>10.2f} "
              f"{r['evals_per_cpu_min']:>14.2f} {r['peak_rss_mb']:>13.0f}")  # fmt: skip
    rate = {name: r["evals_per_cpu_min"] for name, r in results.items()}
    print(f"\nper CPU time: trie vs one-by-one {rate['trie'] / rate['one-by-one']:.2f}x, trie vs direct {rate['trie'] / rate['direct']:.2f}x, "
          f"one-by-one vs direct {rate['one-by-one'] / rate['direct']:.2f}x; plain inference vs trie {rate['plain'] / rate['trie']:.2f}x")  # fmt: skip
    print(f"trie working set (activations held, stem cache excluded): {working_set / 2**20:.0f} MB; accuracies identical across methods")


if __name__ == "__main__":
    main()
