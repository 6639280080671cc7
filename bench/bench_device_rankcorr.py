"""Benchmark: do real devices rank FBNet networks alike? Kendall τ-b between HW-NAS-Bench's devices over random
architectures of the FBNet space, at both of its settings (CIFAR-100 32x32, ImageNet 224x224).

    .venv/bin/python bench/bench_device_rankcorr.py --archs 10000 --seed 0

Each device's figure of an architecture is its table sum (stem + 22 blocks + head conv + pool + FC: the tables
``moga lut import --format hw-nas-bench-fbnet`` writes, which reproduce the benchmark's totals), so this costs
seconds. Architectures are uniform over the 9^22 genomes (seeded). Also printed: τ of each device with
multiply-adds, parameters and depth (non-skip layers), and each device's latency range. Prints ``name: value``
lines.
"""

from __future__ import annotations

import argparse
import itertools

import numpy as np
from scipy.stats import kendalltau

from lut.published import FORMATS, import_published
from supernet.model import count_population
from supernet.space import get_space

SETTINGS = {"cifar100": ("fbnet_cifar", 32, 100), "imagenet": ("fbnet", 224, 1000)}
DEVICES = ("edgegpu_latency", "pixel3_latency", "raspi4_latency", "eyeriss_latency", "fpga_latency")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--archs", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    fmt = FORMATS["hw-nas-bench-fbnet"]
    for setting, (name, res, classes) in SETTINGS.items():
        space = get_space(name, num_classes=classes, resolution=res, variant="imagenet")
        genomes = np.random.default_rng(args.seed).integers(0, 9, size=(args.archs, space.num_layers))
        tables = import_published(space, fmt, columns=[f"{d}_ms" for d in DEVICES])
        lat = {d: tables[d].predictor(space).raw_genomes(genomes) for d in DEVICES}
        params, macs = count_population(space, genomes)
        depth = (genomes != 8).sum(axis=1)  # candidate 8 is the skip
        print(f"[{setting}] {args.archs} random architectures of {name} at {res}x{res}, seed {args.seed}")
        for a, b in itertools.combinations(DEVICES, 2):
            print(f"tau {setting} {a} vs {b}: {kendalltau(lat[a], lat[b])[0]:.3f}")
        for d in DEVICES:
            taus = [kendalltau(lat[d], x)[0] for x in (macs, params, depth)]
            print(f"tau {setting} {d} vs macs/params/depth: {taus[0]:.3f} / {taus[1]:.3f} / {taus[2]:.3f}")
        for d in DEVICES:
            print(f"range {setting} {d}: {lat[d].min():.3f} .. {lat[d].max():.3f} ms (median {np.median(lat[d]):.3f})")


if __name__ == "__main__":
    main()
