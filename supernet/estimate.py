"""What the search and ``rank-corr`` rank networks by: a path's own score, or an additive model of many paths' scores.

``supernet.eval.score`` picks the score of one path (``SubnetEvaluator``): its top-1 accuracy on the validation
images or minus its mean cross-entropy there. ``supernet.eval.additive_paths: N`` (N > 0) replaces the per-network
score by a **per-layer additive model** of the supernet's own scores:

1. N distinct networks are drawn (uniform random codes, seeded by ``derive_seed(seed, "additive-paths")``, each
   taken in its canonical form; every network of a space with at most N of them) and scored by the evaluator,
   in one call, so its prefix trie shares their work.
2. A ridge regression on the one-hot encoding of their layer choices (one weight per layer and choice, plus an
   intercept; ridge 1e-3 x N, which only settles choices the sample never took) is fitted to those scores -
   the supernet's, never a benchmark's.
3. The estimate of any network is the model's prediction for its canonical choices: no evaluation, the same for
   equivalent codes, and smoothed: one path's score carries the noise of a finite validation set and of its
   own weights, which the fit averages over the N paths that share each choice.

This is the predictor OFA / NSGANetV2 fit to trained accuracies, fitted here to the estimator instead; it cannot
express interactions between layers, so it is exact only where the supernet's scores are additive (BENCHMARKS.md
measures what it gains on NAS-Bench-Macro and how many paths it needs).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from supernet.arch import Arch
from supernet.config import EvalConfig
from supernet.space import SearchSpace

RIDGE_PER_PATH = 1e-3  # ridge strength per fitted path (the intercept is not penalised)


class AdditiveModel:
    """score ~ intercept + sum over layers of w[layer][choice], fitted by ridge regression on one-hot choices."""

    def __init__(self, n_choices: Sequence[int]) -> None:
        self.n_choices = list(n_choices)
        self.offsets = np.concatenate([[0], np.cumsum(self.n_choices)[:-1]]).astype(np.int64)
        self.intercept = 0.0
        self.weights = np.zeros(int(sum(self.n_choices)))

    def features(self, genomes: np.ndarray) -> np.ndarray:
        g = np.asarray(genomes, dtype=np.int64).reshape(-1, len(self.n_choices))
        x = np.zeros((len(g), len(self.weights)))
        x[np.arange(len(g))[:, None], g + self.offsets] = 1.0
        return x

    def fit(self, genomes: np.ndarray, scores: np.ndarray) -> AdditiveModel:
        x, y = self.features(genomes), np.asarray(scores, dtype=np.float64)
        mean_x, mean_y = x.mean(axis=0), y.mean()
        xc = x - mean_x
        ridge = RIDGE_PER_PATH * len(y)
        self.weights = np.linalg.solve(xc.T @ xc + ridge * np.eye(x.shape[1]), xc.T @ (y - mean_y))
        self.intercept = float(mean_y - mean_x @ self.weights)
        return self

    def predict(self, genomes: np.ndarray) -> np.ndarray:
        return self.intercept + self.features(genomes) @ self.weights

    def effects(self) -> list[list[float]]:
        """Per layer, each choice's weight relative to the layer's mean weight (score units)."""
        out = []
        for offset, n in zip(self.offsets, self.n_choices, strict=True):
            w = self.weights[offset : offset + n]
            out.append([round(float(v), 6) for v in w - w.mean()])
        return out


def fit_paths(space: SearchSpace, n: int, seed: int) -> list[Arch]:
    """``n`` distinct canonical networks of ``space`` (uniform random codes, canonicalised, deduplicated; fewer
    only if the space has fewer networks than ``n``, after trying 50 n codes)."""
    rng = np.random.default_rng(seed)
    found: dict[tuple[int, ...], None] = {}
    for _ in range(50 * n):
        if len(found) == n:
            break
        genes = tuple(int(rng.integers(c)) for c in space.n_choices)
        found.setdefault(space.canonical(genes))
    return [Arch(space, g) for g in found]


class Estimator:
    """The search's accuracy source and ``rank-corr``'s estimate: ``evaluator`` (a ``SubnetEvaluator``) scoring each
    network's path, or, with ``additive_paths``, the additive model of ``additive_paths`` networks' scores."""

    def __init__(self, evaluator: Any, cfg: EvalConfig, seed: int = 0) -> None:
        from supernet.train import derive_seed

        self.evaluator, self.cfg = evaluator, cfg
        self.fit_seed = derive_seed(seed, "additive-paths")
        self.model: AdditiveModel | None = None
        self.fit_archs: list[Arch] = []
        self.fit_scores: np.ndarray | None = None

    @property
    def name(self) -> str:
        """What the estimate is, e.g. ``neg_loss`` or ``additive(accuracy, 300 paths)``."""
        n = self.cfg.additive_paths
        return f"additive({self.cfg.score}, {n} paths)" if n else self.cfg.score

    def __call__(self, archs: Sequence[Arch]) -> list[float]:
        if not self.cfg.additive_paths:
            return list(self.evaluator.evaluate(archs))
        model = self.fitted()
        if not archs:
            return []
        space = self.evaluator.net.space
        genomes = np.array([space.canonical(a.genes) for a in archs])
        return [float(v) for v in model.predict(genomes)]

    def fitted(self) -> AdditiveModel:
        """The additive model, fitted on first use (the only evaluation it costs)."""
        if self.model is None:
            space = self.evaluator.net.space
            self.fit_archs = fit_paths(space, self.cfg.additive_paths, self.fit_seed)
            self.fit_scores = np.asarray(self.evaluator.evaluate(self.fit_archs), dtype=np.float64)
            self.model = AdditiveModel(space.n_choices).fit(np.array([a.genes for a in self.fit_archs]), self.fit_scores)
        return self.model

    def settings(self) -> dict[str, Any]:
        out: dict[str, Any] = {"estimate": self.name, "score": self.cfg.score, "additive_paths": self.cfg.additive_paths}
        if self.model is not None and self.fit_scores is not None:
            predicted = self.model.predict(np.array([a.genes for a in self.fit_archs]))
            residual = self.fit_scores - predicted
            total = float(((self.fit_scores - self.fit_scores.mean()) ** 2).sum())
            out |= {
                "paths_fitted": len(self.fit_archs),
                "fit_r2": round(1.0 - float((residual**2).sum()) / total, 6) if total > 0 else None,
                "fit_seed": self.fit_seed,
                "layer_effects": self.model.effects(),
            }
        return out
