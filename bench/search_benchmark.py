"""Search quality against ground truth: NAS-Bench-Macro, accuracy from the benchmark table, several seeds and budgets.

    OMP_NUM_THREADS=1 .venv/bin/python bench/search_benchmark.py                      # 10 seeds, CPU table built here
    OMP_NUM_THREADS=1 .venv/bin/python bench/search_benchmark.py --table runs/nasbench_macro/lut/cpu.json
    OMP_NUM_THREADS=1 .venv/bin/python bench/search_benchmark.py --fake-latency --seeds 3   # no measuring

The space is ``nasbench_macro`` (3,969 distinct networks), ``search.accuracy: benchmark`` (the table's mean
accuracy, so no supernet), the default objectives (accuracy 0.4, latency 0.4, params 0.2) and the in-process
``Search`` API. Each variant x budget x seed is one search; a budget is population x generations offspring
slots (100 = 20 x 5, 300 = 30 x 10, 1000 = 50 x 20). With benchmark accuracy the search works on networks, so
``evaluated`` (distinct networks actually scored) can be a little under the budget: an offspring equivalent to
an archived network costs nothing and is not counted. Variants:

* ``weighted+reinforced`` - the default: weighted crowding, reinforced + random mutation, homogeneous start
* ``random mutation``     - ``reinforced_ratio: 0``
* ``unweighted``          - ``weighted_crowding: false`` (pymoo's NSGA-II crowding)
* ``two objectives``      - accuracy and latency only (0.5 / 0.5); its hv_ratio is against the 2-objective true front
* ``random search``       - ``algorithm: random`` (distinct networks drawn at random, population x generations of them)

Scores (``moga.truefront``): ``hv_ratio`` (final generation; hypervolume of the search's front over the true
front's, normalised objectives, reference point 1), ``igd``, and the best true accuracy among evaluated networks
within three latency budgets: 25 / 50 / 75 % of the way across the latency range of the (3-objective) true
front, the same budgets for every variant (the ``oracle`` row is the best any network reaches). Paired
comparisons (same seeds, same first population) test the ablation claims: the mean difference, its standard
error over seeds, and wins / ties / losses; "tie" when |mean| < 2 standard errors.

Writes ``OUT/runs.csv`` (one row per search), ``OUT/summary.csv`` and ``OUT/summary.md`` (the printed tables).
Latency: ``--table PATH`` (a table for this space at 32x32, batch 1), else one measured on this CPU with
onnxruntime (1 thread, ``--clock``) into ``OUT/lut/cpu.json`` (kept and reused; ~20 blocks, under a minute), or
the fake backend with ``--fake-latency``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lut.build import build_table
from lut.measure import MeasureProtocol, make_backend
from lut.table import LatencyTable
from moga.config import SearchConfig
from moga.metrics import ArchMetrics
from moga.search import Search
from moga.truefront import GroundTruth
from supernet.benchmark import load_benchmark

BUDGETS: dict[int, tuple[int, int]] = {100: (20, 5), 300: (30, 10), 1000: (50, 20)}  # evaluations -> (population, generations)
TWO = [{"name": "accuracy", "weight": 0.5}, {"name": "latency", "weight": 0.5}]
VARIANTS: dict[str, dict] = {
    "weighted+reinforced": {},
    "random mutation": {"reinforced_ratio": 0.0},
    "unweighted": {"weighted_crowding": False},
    "two objectives": {"objectives": TWO},
    "random search": {"algorithm": "random"},
}
CLAIMS = [("weighted+reinforced", "unweighted", "weighted crowding"), ("weighted+reinforced", "random mutation", "reinforced mutation")]
QUANTILES = (0.25, 0.5, 0.75)


def latency_table(args: argparse.Namespace, space) -> LatencyTable:
    if args.table:
        table = LatencyTable.load(args.table)
        table.check_space(space, batch=1, user="bench/search_benchmark.py")
        print(f"latency: {args.table} ({table.header.get('device')})")
        return table
    kind = "fake" if args.fake_latency else "onnxruntime-cpu"
    path = args.out / "lut" / ("fake.json" if args.fake_latency else "cpu.json")
    backend = make_backend(kind, 1, args.clock)
    try:
        start = time.perf_counter()
        table, n = build_table(space, backend, path, device="fake" if args.fake_latency else "local-cpu",
                               protocol=MeasureProtocol(5, 15, 2), progress=False)  # fmt: skip
    finally:
        backend.close()
    done = "reused" if n == 0 else f"measured {n} blocks in {time.perf_counter() - start:.0f} s"
    print(f"latency: {path} ({kind}, 1 thread, clock {args.clock}; {done})")
    return table


def run_one(space, metrics, truth, variant: str, budget: int, seed: int, tmp: Path, budgets: list[float]) -> dict:
    population, generations = BUDGETS[budget]
    cfg = SearchConfig(population=population, generations=generations, accuracy="benchmark", **VARIANTS[variant])
    start = time.perf_counter()
    search = Search(space, cfg, metrics, tmp / f"{variant}-{budget}-{seed}", seed, writer=False, truth=truth)
    result = search.run(progress=False)
    last, h = result.generations.iloc[-1], result.history
    row = {"variant": variant, "budget": budget, "seed": seed, "evaluated": len(h), "hv_ratio": float(last["hv_ratio"]),
           "igd": float(last["igd"]), "front_size": int(last["front_size"]), "seconds": time.perf_counter() - start}  # fmt: skip
    for q, b in zip(QUANTILES, budgets, strict=True):
        within = h.loc[h["latency_ms"] <= b, "true_accuracy"]
        row[f"best@{q:.0%}"] = float(within.max()) if len(within) else float("nan")
    return row


def summarise(runs: pd.DataFrame, oracle: dict[str, float]) -> tuple[pd.DataFrame, str]:
    metrics = ["evaluated", "hv_ratio", "igd", *oracle]
    summary = runs.groupby(["budget", "variant"], sort=False)[metrics].agg(["mean", "std"])
    summary.columns = [f"{m}_{s}" for m, s in summary.columns]
    summary = summary.reset_index()
    head = "| budget | variant | evaluated | hv_ratio | igd | " + " | ".join(f"best true acc {k}" for k in oracle) + " |"
    lines = [head, "|" + "---|" * (5 + len(oracle))]
    for _, r in summary.iterrows():
        cells = [f"{r['budget']}", r["variant"], f"{r['evaluated_mean']:.0f}", f"{r['hv_ratio_mean']:.4f} ± {r['hv_ratio_std']:.4f}",
                 f"{r['igd_mean']:.4f} ± {r['igd_std']:.4f}"]  # fmt: skip
        cells += [f"{r[f'{k}_mean']:.2f} ± {r[f'{k}_std']:.2f}" for k in oracle]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("| | oracle (best network) | 3969 | 1 | 0 | " + " | ".join(f"{v:.2f}" for v in oracle.values()) + " |")
    return summary, "\n".join(lines)


def claims(runs: pd.DataFrame) -> str:
    """Paired (same seed) differences of hv_ratio between the default and each ablation."""
    lines = ["| budget | claim | hv_ratio default − ablation | SE | wins / ties / losses | verdict |", "|---|---|---|---|---|---|"]
    for budget in sorted(runs["budget"].unique()):
        b = runs[runs["budget"] == budget].set_index(["variant", "seed"])["hv_ratio"]
        for a, other, name in CLAIMS:
            d = (b[a] - b[other]).dropna()
            mean, se = float(d.mean()), float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("nan")
            w, t, lo = int((d > 1e-12).sum()), int((d.abs() <= 1e-12).sum()), int((d < -1e-12).sum())
            verdict = "tie" if not abs(mean) >= 2 * se else ("confirmed" if mean > 0 else "reversed")
            lines.append(f"| {budget} | {name} | {mean:+.4f} | {se:.4f} | {w} / {t} / {lo} | {verdict} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=10, help="search seeds 0..N-1 (default 10)")
    p.add_argument("--budgets", type=int, nargs="+", default=list(BUDGETS), choices=list(BUDGETS))
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS), metavar="NAME")
    p.add_argument("--table", default=None, help="an existing latency table for nasbench_macro at 32x32")
    p.add_argument("--fake-latency", action="store_true", help="the fake latency backend (no measuring)")
    p.add_argument(
        "--clock", choices=["wall", "cpu"], default="cpu", help="clock of a table measured here (cpu: robust on a shared machine)"
    )
    p.add_argument("--out", type=Path, default=Path("runs/search_benchmark"))
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    bench = load_benchmark("nasbench_macro")
    space = bench.space
    truth = GroundTruth.for_space(space, required=True)
    metrics = ArchMetrics(space, {"cpu": latency_table(args, space)}, truth.accuracy)
    with tempfile.TemporaryDirectory() as tmp:
        ref = Search(space, SearchConfig(accuracy="benchmark"), metrics, Path(tmp) / "ref", 0, writer=False, truth=truth).true_front
        lat = ref.metrics["latency:cpu"][ref.front]
        budgets = [float(lat.min() + q * (lat.max() - lat.min())) for q in QUANTILES]
        every = ref.metrics["latency:cpu"]
        oracle = {f"best@{q:.0%}": float(truth.true_acc[every <= b].max()) for q, b in zip(QUANTILES, budgets, strict=True)}
        print(f"true front: {len(ref.front)} of {len(truth.networks)} networks (3 objectives), latency {lat.min():.3f}..{lat.max():.3f} ms; "
              f"budgets {', '.join(f'{q:.0%} = {b:.3f} ms' for q, b in zip(QUANTILES, budgets, strict=True))}")  # fmt: skip
        rows, start = [], time.perf_counter()
        for budget in args.budgets:
            for variant in args.variants:
                for seed in range(args.seeds):
                    rows.append(run_one(space, metrics, truth, variant, budget, seed, Path(tmp), budgets))
            print(f"  budget {budget}: done ({time.perf_counter() - start:.0f} s)", flush=True)
    runs = pd.DataFrame(rows)
    runs.to_csv(args.out / "runs.csv", index=False)
    summary, table = summarise(runs, oracle)
    summary.to_csv(args.out / "summary.csv", index=False)
    text = (f"{args.seeds} seeds; hv_ratio and igd: final generation, mean ± std over seeds; best true accuracy (%) "
            f"among evaluated networks within {', '.join(f'{b:.3f}' for b in budgets)} ms\n\n{table}\n\n"
            f"Paired ablation claims (hv_ratio; SE = std of the paired difference / sqrt(seeds); tie: |mean| < 2 SE)\n\n"
            f"{claims(runs)}\n")  # fmt: skip
    (args.out / "summary.md").write_text(text)
    print(text)
    print(
        f"-> {args.out / 'runs.csv'}, {args.out / 'summary.csv'}, {args.out / 'summary.md'} ({time.perf_counter() - start:.0f} s of searches)"
    )


if __name__ == "__main__":
    main()
