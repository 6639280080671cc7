"""Which paths one supernet step trains: FairNAS strict fairness (``fair``) or SPOS (``uniform``).

A sampler returns the paths of one step as genomes (one choice index per searchable layer) and draws
them from its own seeded ``numpy`` generator, whose state goes into checkpoints so a resumed run draws
the same paths as an uninterrupted one.

Strict fairness (FairNAS): with m choices per layer, every step draws an independent random permutation
of the m choices for each layer, and path k takes choice ``perm_l[k]`` at layer l. Every choice block is
thereby trained exactly once per step.

Layers with fewer choices. A space may offer ``skip`` only on some layers, so layers can have n < m
choices (m = the largest choice count). Such a layer gets a *padded* permutation of length m: each of
its choices ⌊m/n⌋ times, plus m mod n distinct *extra* choices, shuffled so no path position is favoured.
The extras go to the choices with the fewest extras so far (ties broken at random), so every choice is
trained ⌊m/n⌋ or ⌈m/n⌉ times per step and, over any number of steps, the update counts of a layer's
choices never differ by more than one. (Drawing the extras at random would be fair only in expectation:
the counts would drift apart like a random walk.)

``FairnessAudit`` counts the updates per layer and choice, checks the fairness bound at every step and
records each step's spread; the training loop writes it as ``fairness.json``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

Genes = tuple[int, ...]


class PathSampler:
    """Base class: a seeded generator and its checkpointable state."""

    name = "base"

    def __init__(self, n_choices: Sequence[int], seed: int) -> None:
        if not n_choices or min(n_choices) < 1:
            raise ValueError(f"every layer needs at least one choice, got {list(n_choices)}")
        self.n_choices = tuple(int(n) for n in n_choices)
        self.rng = np.random.default_rng(seed)
        self.extras = [np.zeros(n, dtype=np.int64) for n in self.n_choices]  # padding updates per choice

    @property
    def paths_per_step(self) -> int:
        raise NotImplementedError

    def sample(self) -> list[Genes]:
        """The paths of one step (each a genome)."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        # The generator state holds 128-bit integers; JSON text keeps checkpoints loadable with
        # ``torch.load(weights_only=True)``.
        return {"sampler": self.name, "rng": json.dumps(self.rng.bit_generator.state), "extras": [e.tolist() for e in self.extras]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["sampler"] != self.name:
            raise ValueError(f"checkpoint was written by a {state['sampler']!r} sampler, not {self.name!r}")
        self.rng.bit_generator.state = json.loads(state["rng"])
        self.extras = [np.asarray(e, dtype=np.int64) for e in state["extras"]]


class FairSampler(PathSampler):
    """FairNAS strict fairness: m paths per step built from one (padded) permutation per layer."""

    name = "fair"

    @property
    def paths_per_step(self) -> int:
        return max(self.n_choices)

    def sample(self) -> list[Genes]:
        m = self.paths_per_step
        columns = [self._permutation(layer, m) for layer in range(len(self.n_choices))]  # independent per layer
        return [tuple(int(column[k]) for column in columns) for k in range(m)]

    def _permutation(self, layer: int, m: int) -> np.ndarray:
        """A random permutation of the layer's n choices, padded to length m (see module doc)."""
        n = self.n_choices[layer]
        if n == m:
            return self.rng.permutation(n)
        fewest_first = np.lexsort((self.rng.random(n), self.extras[layer]))  # ties at random
        extra = fewest_first[: m % n]
        self.extras[layer][extra] += 1
        return self.rng.permutation(np.concatenate([np.tile(np.arange(n), m // n), extra]))


class UniformSampler(PathSampler):
    """SPOS: one path per step, each layer's choice uniform at random (fair only in expectation)."""

    name = "uniform"

    @property
    def paths_per_step(self) -> int:
        return 1

    def sample(self) -> list[Genes]:
        return [tuple(int(self.rng.integers(n)) for n in self.n_choices)]


SAMPLERS: dict[str, type[PathSampler]] = {"fair": FairSampler, "uniform": UniformSampler}


def make_sampler(name: str, n_choices: Sequence[int], seed: int) -> PathSampler:
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}: choose one of {', '.join(SAMPLERS)}")
    return SAMPLERS[name](n_choices, seed)


class FairnessAudit:
    """Per-layer, per-choice update counts, checked at every step for a strict-fairness sampler.

    A step's *spread* is the largest, over layers, of (most - least updates any choice of that layer got
    in that step). Strict fairness means spread 0 when every layer has m choices, and at most 1 with
    padded layers; a ``strict`` audit also requires the cumulative counts of each layer to stay within
    one update of each other, and ``record`` raises if either is broken.
    """

    def __init__(self, n_choices: Sequence[int], strict: bool) -> None:
        self.n_choices = tuple(int(n) for n in n_choices)
        self.strict = strict
        self.counts = np.zeros((len(self.n_choices), max(self.n_choices)), dtype=np.int64)
        self.step_spread: list[int] = []

    def record(self, paths: Sequence[Genes]) -> int:
        """Count one step's paths; returns (and keeps) its spread."""
        step = np.zeros_like(self.counts)
        for genes in paths:
            step[np.arange(len(genes)), genes] += 1
        spread = 0
        for layer, n in enumerate(self.n_choices):
            got = step[layer, :n]
            spread = max(spread, int(got.max() - got.min()))
            if self.strict:
                m = len(paths)
                lo, hi = m // n, -(-m // n)
                total = self.counts[layer, :n] + got
                if got.min() < lo or got.max() > hi or total.max() - total.min() > 1:
                    raise RuntimeError(
                        f"strict fairness broken at layer {layer + 1}: per-choice updates {got.tolist()} this step, {total.tolist()} in total"
                    )
        self.counts += step
        self.step_spread.append(spread)
        return spread

    def report(self, choice_names: Sequence[Sequence[str]], sampler: str) -> dict[str, Any]:
        """The content of ``fairness.json``."""
        layers = []
        for layer, (n, names) in enumerate(zip(self.n_choices, choice_names, strict=True)):
            row = self.counts[layer, :n]
            layers.append({"layer": layer + 1, "counts": dict(zip(names, row.tolist(), strict=True)), "spread": int(row.max() - row.min())})
        return {
            "sampler": sampler,
            "steps": len(self.step_spread),
            "strict": self.strict,
            "max_step_spread": max(self.step_spread, default=0),
            "layers": layers,
            "step_spread": self.step_spread,
        }

    def state_dict(self) -> dict[str, Any]:
        return {"counts": self.counts.tolist(), "step_spread": list(self.step_spread)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        counts = np.asarray(state["counts"], dtype=np.int64)
        if counts.shape != self.counts.shape:
            raise ValueError(f"audit state has shape {counts.shape}, expected {self.counts.shape}")
        self.counts = counts
        self.step_spread = [int(s) for s in state["step_spread"]]
