"""Tabular NAS benchmarks: trained accuracies of every network of a space, shipped with moga.

``NAS-Bench-Macro`` (Su et al., "Prioritized Architecture Sampling with Monte-Carlo Tree Search", CVPR 2021;
public repository xiusu/NAS-Bench-Macro; Apache-2.0, ``assets/nasbench_macro/LICENSE``) trained each of
the 3,969 distinct networks of the ``nasbench_macro`` space three times for 50 epochs on CIFAR-10 and gives
the test accuracy of each run, plus parameter and FLOPs counts. The file ships unchanged (gzip of the
published JSON; its sha256 is checked on load) and is read with ``json`` only: a table is data, never code.

    bench = load_benchmark("nasbench_macro")
    bench.check_space(space)            # the space resolves to exactly the benchmarked network
    rec = bench.lookup(arch)            # per-seed and mean accuracy, params, FLOPs
    archs = bench.distinct(space)       # one canonical architecture per distinct network

Equivalent architectures (``SearchSpace.canonical``: identity layers moved to their stage's end) are one
network and share one record; ``lookup`` canonicalises.
"""

from __future__ import annotations

import gzip
import hashlib
import itertools
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from supernet.arch import Arch
from supernet.errors import UserError
from supernet.space import SearchSpace, get_space

ASSETS = Path(__file__).parent / "assets"


@dataclass(frozen=True)
class BenchmarkInfo:
    """Where a benchmark's table is and the exact space setting it was trained in."""

    file: Path
    space: str
    resolution: int
    num_classes: int
    width_mult: float
    variant: str
    source: str
    dataset: str
    sha256: str  # of the uncompressed table, checked on load


BENCHMARKS: dict[str, BenchmarkInfo] = {
    "nasbench_macro": BenchmarkInfo(
        ASSETS / "nasbench_macro" / "nas-bench-macro_cifar10.json.gz",
        "nasbench_macro",
        32,
        10,
        1.0,
        "imagenet",
        "NAS-Bench-Macro (Su et al., CVPR 2021), Apache-2.0",
        "CIFAR-10 test set, best of 50 epochs, 3 seeds",
        "686dee8363cc21cca8c1f321ad5749454f2d9b9ca5972682e137e539bc522297",
    ),
}


@dataclass(frozen=True)
class BenchmarkRecord:
    """One trained network: the test accuracy (%) of each seed, their mean and std, params and FLOPs."""

    code: str
    test_acc: tuple[float, ...]
    mean_acc: float
    std: float
    params: int
    flops: int


class Benchmark:
    """The table of one benchmark, keyed by canonical code."""

    def __init__(self, name: str, info: BenchmarkInfo, records: dict[str, BenchmarkRecord]):
        self.name, self.info, self.records = name, info, records
        self.space = benchmarked_space(info)
        self.seeds = len(next(iter(records.values())).test_acc)

    def check_space(self, space: SearchSpace, proxy: SearchSpace | None = None) -> None:
        """Refuse a space that is not the benchmarked network (another space, resolution, width, stride variant).

        ``proxy``: the space a supernet is trained in to estimate ``space``'s networks (a reduced width or
        resolution): it must offer the benchmark's layers and choices, so that every network has its path."""
        if space.name != self.space.name:
            raise UserError(f"benchmark {self.name!r} describes space {self.space.name!r}, not {space.name!r}")
        if space != self.space:
            i = self.info
            keys = "space.resolution/num_classes/width_mult/variant to match"
            if proxy is not None and proxy != space:
                keys = "lut.resolution/num_classes/width_mult to the full network the proxy supernet estimates"
            elif proxy is not None and space.variant == i.variant:
                keys += ", or, to train a reduced proxy, lut.resolution/num_classes/width_mult to the benchmark's network"
            raise UserError(
                f"benchmark {self.name!r} describes space {i.space!r} at resolution {i.resolution}, {i.num_classes} classes, width "
                f"{i.width_mult:g}, variant {i.variant}; this one is at resolution {space.resolution}, {space.num_classes} classes, "
                f"width {space.width_mult:g}, variant {space.variant} (set {keys})"
            )
        if proxy is not None and proxy != space:
            tokens = lambda s: [[c.token for c in layer.choices] for layer in s.layers]  # noqa: E731
            if proxy.name != space.name or tokens(proxy) != tokens(space):
                raise UserError(
                    f"the supernet's space {proxy.name!r} is not a proxy of benchmark {self.name!r}'s network: it must offer the "
                    f"same layers and choices (only space.resolution, space.width_mult and space.num_classes may differ)"
                )

    def lookup(self, arch: Arch) -> BenchmarkRecord:
        """The record of ``arch``'s network (equivalent architectures share one)."""
        self.check_space(arch.space)
        code = arch.canonical().code
        record = self.records.get(code or "")
        if record is None:
            raise UserError(f"benchmark {self.name!r} has no entry for {arch} (code {code}): the table is incomplete")
        return record

    def mean_accuracy(self, archs: list[Arch]) -> np.ndarray:
        return np.array([self.lookup(a).mean_acc for a in archs])

    def distinct(self, space: SearchSpace | None = None) -> list[Arch]:
        """One canonical architecture per distinct network, in code order."""
        space = space or self.space
        self.check_space(space)
        genomes = itertools.product(*(range(n) for n in space.n_choices))
        return [Arch(space, g) for g in genomes if space.canonical(g) == g]


def benchmarked_space(info: BenchmarkInfo) -> SearchSpace:
    """The space exactly as the benchmark trained it."""
    return get_space(info.space, num_classes=info.num_classes, resolution=info.resolution, width_mult=info.width_mult, variant=info.variant)


def registered_benchmarks() -> list[str]:
    return sorted(BENCHMARKS)


def load_benchmark(name: str) -> Benchmark:
    """A registered benchmark (``nasbench_macro``); an unknown name or an unreadable table is a ``UserError``."""
    if name not in BENCHMARKS:
        raise UserError(f"unknown benchmark {name!r}: moga ships {', '.join(registered_benchmarks())}")
    return _load(name)


@cache
def _load(name: str) -> Benchmark:
    info = BENCHMARKS[name]
    try:
        with gzip.open(info.file, "rb") as f:
            data = f.read()
        if hashlib.sha256(data).hexdigest() != info.sha256:
            raise UserError(f"benchmark table {info.file} is not the published file (sha256 differs): reinstall moga")
        raw = json.loads(data.decode("utf-8"))
    except (OSError, EOFError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"cannot read benchmark table {info.file}: {exc}") from None
    space = benchmarked_space(info)  # its canonical form keys the records
    records = {}
    try:
        if not isinstance(raw, dict):
            raise TypeError("expected an object of code -> record")
        for code, r in raw.items():
            genes = tuple(int(d) for d in code)
            if len(genes) != space.num_layers:
                raise ValueError(f"code {code!r} has {len(genes)} digits")
            canonical = "".join(map(str, space.canonical(genes)))
            accs = tuple(float(a) for a in r["test_acc"])
            record = BenchmarkRecord(canonical, accs, float(r["mean_acc"]), float(r["std"]), int(r["params"]), int(r["flops"]))
            if records.setdefault(canonical, record) != record:
                raise ValueError(f"equivalent codes {code!r} and {canonical!r} have different records")
    except (TypeError, ValueError, KeyError) as exc:
        raise UserError(f"benchmark table {info.file} is malformed: {type(exc).__name__}: {exc}") from None
    return Benchmark(name, info, records)
