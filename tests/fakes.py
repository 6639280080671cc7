"""Deterministic stand-ins for the expensive parts (supernet accuracy, measured latency)."""

from typing import ClassVar

import numpy as np

from supernet.arch import Arch
from supernet.model import cost_tables
from supernet.space import SearchSpace


class FakeMetrics:
    """Accuracy rises with capacity (with a per-layer twist), latency is additive per layer."""

    tables: ClassVar[list[str]] = ["cpu"]

    def __init__(self, space: SearchSpace, seed: int = 0):
        self.space = space
        rng = np.random.default_rng(seed)
        self.lat = [rng.uniform(0.1, 1.0, n) for n in space.n_choices]
        self.acc = [rng.uniform(0.0, 5.0, n) for n in space.n_choices]
        fp, fm, self.params, self.macs = cost_tables(space)
        self.fixed = (fp, fm)
        self.calls = 0
        self.bounds = {
            "latency:cpu": (sum(t.min() for t in self.lat), sum(t.max() for t in self.lat)),
            "params": (fp + sum(t.min() for t in self.params), fp + sum(t.max() for t in self.params)),
            "macs": (fm + sum(t.min() for t in self.macs), fm + sum(t.max() for t in self.macs)),
        }

    def __call__(self, archs: list[Arch]) -> dict[str, np.ndarray]:
        self.calls += len(archs)
        g = np.stack([a.genome for a in archs])
        layers = range(g.shape[1])
        lat = sum(self.lat[i][g[:, i]] for i in layers)
        acc = 20 + sum(self.acc[i][g[:, i]] for i in layers) + 2 * np.log1p(lat)
        return {
            "accuracy": np.minimum(acc, 99.0),
            "latency:cpu": lat,
            "params": self.fixed[0] + sum(self.params[i][g[:, i]] for i in layers),
            "macs": self.fixed[1] + sum(self.macs[i][g[:, i]] for i in layers),
        }
