"""The fronts found for the Jetson TX2 vs for the Pixel 3 (experiments/fbnet_devices.yaml), and the 4-objective
search against the single-device searches by hypervolume in each device's plane.

    .venv/bin/python bench/fbnet_fronts.py runs/fbnet_devices [--suffix _s1]

Reads ``<run>/search`` (accuracy, TX2 latency, Pixel 3 latency, params), ``<run>/search_tx2`` and
``<run>/search_pixel3`` (accuracy, one device's latency, params), all over the same trained supernet; every
history row carries both devices' latency (every table is scored for every architecture). A search's models
for a device are its non-dominated ones in that device's (accuracy up, latency down) plane, over its whole
history. Printed per device: how many of those models the two single-device searches share, what they look
like (depth = non-skip layers, k5 share, expansions, grouped and skip counts), the price of searching for the
wrong device (a model found for the other device against the cheapest model any search found at no lower
accuracy, in this device's latency; the device's own front priced alike), and the hypervolume of each search in each plane (accuracy 0..100,
latency over the space's exact range, reference point at the worst corner). Prints ``name: value`` lines.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from lut.table import LatencyTable, header_space
from moga.truefront import hypervolume
from supernet.space import parse_token

DEVICES = {"tx2": "latency_ms", "pixel3": "latency_ms:pixel3"}  # column of each device in a history.csv
SEARCHES = {"both": "search", "tx2": "search_tx2", "pixel3": "search_pixel3"}


def plane_front(history: pd.DataFrame, lat: str) -> pd.DataFrame:
    """Rows not dominated in (accuracy max, latency min)."""
    h = history.sort_values([lat, "accuracy"], ascending=[True, False])
    keep, best = [], -np.inf
    for i, acc in zip(h.index, h["accuracy"], strict=True):
        if acc > best:
            keep.append(i)
            best = acc
    return h.loc[keep]


def exact_range(path: Path) -> tuple[float, float]:
    """The fastest and slowest network of the space by one table (a sum of per-layer minima / maxima)."""
    table = LatencyTable.load(path)
    p = table.predictor(header_space(table.header))
    return p.fixed_ms + sum(a.min() for a in p.layer_ms), p.fixed_ms + sum(a.max() for a in p.layer_ms)


def looks(archs: list[str]) -> str:
    tokens = [[parse_token(t) for t in a.split("-")] for a in archs]
    depth = [sum(not c.skip for c in cs) for cs in tokens]
    convs = [c for cs in tokens for c in cs if not c.skip]
    k5 = np.mean([c.kernel == 5 for c in convs]) if convs else 0.0
    e = {x: np.mean([c.expansion == x for c in convs]) if convs else 0.0 for x in (1.0, 3.0, 6.0)}
    g2 = np.mean([sum(c.groups > 1 for c in cs) for cs in tokens])
    return (
        f"depth {np.mean(depth):.1f} (min {min(depth)}, max {max(depth)}), skips {22 - np.mean(depth):.1f}, k5 {k5:.0%} of convs, "
        f"e1/e3/e6 {e[1.0]:.0%}/{e[3.0]:.0%}/{e[6.0]:.0%}, g2 {g2:.1f} per model"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--suffix", default="", help="read search<suffix>, search_tx2<suffix>, ... (other search seeds, e.g. _s1)")
    args = ap.parse_args()
    dirs = {k: args.run / f"{d}{args.suffix}" for k, d in SEARCHES.items()}
    hist = {k: pd.read_csv(d / "history.csv") for k, d in dirs.items() if (d / "history.csv").exists()}
    bounds = {d: exact_range(args.run / "lut" / f"{d}.json") for d in DEVICES}
    for name, h in hist.items():
        print(f"search {name}: {len(h)} architectures evaluated, accuracy {h['accuracy'].min():.1f}..{h['accuracy'].max():.1f} %")
    for dev, col in DEVICES.items():
        other = next(d for d in DEVICES if d != dev)
        if dev not in hist or other not in hist:
            continue
        mine, theirs = plane_front(hist[dev], col), plane_front(hist[other], DEVICES[other])
        shared = set(mine["arch"]) & set(theirs["arch"])
        print(f"{dev} front (its own search, {dev} plane): {len(mine)} models; {looks(list(mine['arch']))}")
        print(f"shared {dev}/{other} fronts: {len(shared)} of {len(mine)} / {len(theirs)}")
        # price of the wrong device: a model's latency on this device over the cheapest model any of the searches
        # found at no lower accuracy (the estimates are deterministic, so the pooled histories are one record);
        # this device's own search is priced alike, which shows how much of the gap is search noise
        pooled = plane_front(pd.concat(hist.values()).drop_duplicates("arch"), col)
        for label, models in ((f"{other}-optimal", theirs), (f"{dev}-optimal (its own search)", mine)):
            price = [row[col] / pooled[pooled["accuracy"] >= row["accuracy"]][col].min() - 1 for _, row in models.iterrows()]
            print(
                f"price on {dev} of the {label} models: median {np.median(price):+.1%}, mean {np.mean(price):+.1%}, max {np.max(price):+.1%} "
                f"over the cheapest {dev} model found at no lower accuracy ({len(price)} models)"
            )
        fastest_other = theirs.sort_values(DEVICES[other]).iloc[0]
        print(
            f"{other}'s fastest model costs {fastest_other[col]:.2f} ms on {dev} (its {other} latency "
            f"{fastest_other[DEVICES[other]]:.2f} ms); {dev}'s fastest {mine[col].min():.2f} ms"
        )
    for dev, col in DEVICES.items():
        lo, hi = bounds[dev]
        for name, h in hist.items():
            f = plane_front(h, col)
            pts = np.column_stack([1 - f["accuracy"] / 100, (f[col] - lo) / (hi - lo)])
            print(f"hypervolume {dev} plane, search {name}: {hypervolume(pts):.4f} ({len(f)} models in the plane)")


if __name__ == "__main__":
    main()
