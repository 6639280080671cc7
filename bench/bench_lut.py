"""Latency-table benchmarks: vectorised predictions per second, and building a MoGA 224² table.

.venv/bin/python bench/bench_lut.py                 # both (the build takes a few minutes)
.venv/bin/python bench/bench_lut.py --skip-build    # predictions/s only (seconds)
.venv/bin/python bench/bench_lut.py --out runs/bench_lut/cpu.json   # keep the table (resumes if present)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lut.build import build_table
from lut.measure import FakeBackend, MeasureProtocol, OrtBackend
from supernet.space import get_space


def bench_predict(n: int = 100_000, repeats: int = 5) -> float:
    """Best-of-``repeats`` predictions/s over ``n`` random MoGA genomes (a fake table: speed only)."""
    space = get_space("moga", num_classes=1000, resolution=224)
    with tempfile.TemporaryDirectory() as tmp:
        table, _ = build_table(
            space, FakeBackend(), Path(tmp) / "fake.json", device="fake", protocol=MeasureProtocol(0, 1, 1), progress=False
        )
    predictor = table.predictor(space)
    rng = np.random.default_rng(0)
    genomes = np.stack([rng.integers(0, m, size=n) for m in space.n_choices], axis=1)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        predictor.predict_genomes(genomes)
        best = min(best, time.perf_counter() - t0)
    return n / best


def bench_build(out: Path | None, threads: int = 1) -> tuple[float, int]:
    """Seconds to build a MoGA 224² onnxruntime-CPU table with the default protocol, and its entries."""
    space = get_space("moga", num_classes=1000, resolution=224)
    backend = OrtBackend("cpu", threads)
    with tempfile.TemporaryDirectory() as tmp:
        path = out or Path(tmp) / "cpu.json"
        t0 = time.perf_counter()
        try:
            table, _ = build_table(space, backend, path, device="local-cpu", progress=True)
        finally:
            backend.close()
        return time.perf_counter() - t0, len(table.entries)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip-build", action="store_true")
    parser.add_argument("--out", type=Path, default=None, help="keep the built table here")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    rate = bench_predict()
    print(f"predict_genomes: {rate:,.0f} architectures/s (100,000 MoGA genomes, best of 5)")
    if not args.skip_build:
        seconds, n = bench_build(args.out, args.threads)
        print(f"build MoGA 224² table, onnxruntime CPU, {args.threads} thread(s): {n} entries in {seconds:.0f} s ({seconds / 60:.1f} min)")


if __name__ == "__main__":
    main()
