"""Benchmark: what a user gets from a search on NAS-Bench-Macro - regret of the fronts and of the picks.

For each search directory (``runs/<run>/<search.dir>``, from ``moga search`` on a benchmarked space) it reads
``pareto.csv`` (each model's true accuracy and regret) and ``true_front.csv``, and prints one row: the median
regret of the whole front and of its estimate-latency front (what a user picking by accuracy and latency chooses
from), the knee's regret, and the regret of the best-estimated model under three latency budgets - the 25 / 50 /
75 % latency quantiles of the true front, the same for every search of one table - against the best trained
network within that budget. Directories are grouped by ``--group`` (a regular expression whose first group names
the row's method) and the medians over each group's searches are printed last.

    OMP_NUM_THREADS=1 .venv/bin/python bench/search_regret.py runs/p25*/search_after_k* runs/p25*/search_before_k* \
        --group 'search_(\\w+)_k'
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np
import pandas as pd

from moga.front import best_under, knee_index, latency_column, read_front, score_column, two_d_front

QUANTILES = (0.25, 0.5, 0.75)


def search_row(directory: Path) -> dict[str, float | str]:
    front = read_front(directory)
    truth = pd.read_csv(directory / "true_front.csv")
    x, y = latency_column(front), score_column(front)
    if x is None or y is None or "regret" not in front:
        raise SystemExit(f"{directory}: not a search with ground truth (no latency, estimate or regret column)")
    row: dict[str, float | str] = {
        "search": str(directory),
        "estimate": y,
        "models": len(front),
        "median_regret": float(front["regret"].median()),
        "median_regret_2d": float(front.loc[two_d_front(front, x, y), "regret"].median()),
    }
    knee = knee_index(front, x)
    row["knee_regret"] = float(front.loc[knee, "regret"]) if knee is not None else np.nan
    budgets = [float(truth["latency_ms"].quantile(q)) for q in QUANTILES]
    for q, (budget, idx) in zip(QUANTILES, best_under(front, x, budgets).items(), strict=True):
        best = truth.loc[truth["latency_ms"] <= budget, "accuracy"].max()
        row[f"pick_regret_q{int(q * 100)}"] = float(best - front.loc[idx, "true_accuracy"]) if idx is not None else np.nan
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("searches", nargs="+", type=Path, help="search directories with pareto.csv and true_front.csv")
    p.add_argument("--group", default=r"(.*)", help="regular expression; its first group names the method")
    p.add_argument("--out", type=Path, default=None, help="also write the per-search rows to this CSV")
    args = p.parse_args()
    rows = pd.DataFrame([search_row(d) for d in args.searches])
    rows.insert(0, "method", [m.group(1) if (m := re.search(args.group, s)) else s for s in rows["search"]])
    pd.set_option("display.width", 200)
    print(rows.drop(columns="search").round(2).to_string(index=False))
    numeric = rows.drop(columns=["search", "estimate"])
    print("\nmedian over each method's searches:")
    print(numeric.groupby("method").median(numeric_only=True).round(2).to_string())
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        rows.to_csv(args.out, index=False)
        print(f"-> {args.out}")


if __name__ == "__main__":
    main()
