"""supernet.estimate: the per-layer additive model of the supernet's own scores, and the estimator the search uses."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from supernet.arch import Arch
from supernet.config import EvalConfig
from supernet.estimate import AdditiveModel, Estimator, fit_paths
from supernet.space import get_space


@pytest.fixture(scope="module")
def macro():
    return get_space("nasbench_macro", num_classes=10, resolution=32, width_mult=1.0, variant="imagenet")


class FakeEvaluator:
    """Scores = an additive function of the canonical choices plus a pairwise term; counts what it scored."""

    def __init__(self, space, score: str = "accuracy", interaction: float = 0.0) -> None:
        self.net = type("Net", (), {"space": space})()
        rng = np.random.default_rng(0)
        self.table = [rng.normal(size=n) for n in space.n_choices]
        self.interaction, self.score, self.scored = interaction, score, []

    def value(self, genes) -> float:
        g = self.net.space.canonical(genes)
        return 50.0 + sum(t[c] for t, c in zip(self.table, g, strict=True)) + self.interaction * (g[0] == g[1])

    def evaluate(self, archs):
        self.scored += [a.genes for a in archs]
        return [self.value(a.genes) for a in archs]


def test_additive_model_recovers_an_additive_function_exactly(macro):
    rng = np.random.default_rng(1)
    weights = [rng.normal(size=n) for n in macro.n_choices]
    genomes = np.array([[rng.integers(n) for n in macro.n_choices] for _ in range(200)])
    y = 3.0 + np.array([sum(w[c] for w, c in zip(weights, g, strict=True)) for g in genomes])
    model = AdditiveModel(macro.n_choices).fit(genomes, y)
    test = np.array(list(itertools.islice(itertools.product(*(range(n) for n in macro.n_choices)), 0, 6561, 97)))
    truth = 3.0 + np.array([sum(w[c] for w, c in zip(weights, g, strict=True)) for g in test])
    assert np.abs(model.predict(test) - truth).max() < 0.02  # ridge 1e-3 per path: nearly exact
    effects = model.effects()
    for layer, w in enumerate(weights):  # choice effects relative to the layer's mean
        assert effects[layer] == pytest.approx(list(w - w.mean()), abs=0.02)


def test_additive_model_one_hot_and_intercept(macro):
    model = AdditiveModel(macro.n_choices)
    x = model.features(np.array([[0] * 8, [2] * 8]))
    assert x.shape == (2, 24) and x.sum(axis=1).tolist() == [8.0, 8.0]
    assert x[0, 0] == 1 and x[0, 1] == 0 and x[1, 2] == 1 and x[1, 23] == 1
    constant = model.fit(np.array([[i % 3] * 8 for i in range(9)]), np.full(9, 7.5))
    assert constant.predict(np.array([[1] * 8]))[0] == pytest.approx(7.5)


def test_fit_paths_are_distinct_canonical_and_seeded(macro):
    a, b, c = fit_paths(macro, 300, 4), fit_paths(macro, 300, 4), fit_paths(macro, 300, 5)
    assert [x.genes for x in a] == [x.genes for x in b] and [x.genes for x in a] != [x.genes for x in c]
    assert len({x.genes for x in a}) == 300
    assert all(macro.canonical(x.genes) == x.genes for x in a)
    tiny = get_space("nasbench_macro", num_classes=10, resolution=32, width_mult=1.0, variant="imagenet")
    assert len(fit_paths(tiny, 5000, 0)) < 5000  # a space with fewer networks: all it found (3,969 at most)


def test_estimator_without_additive_is_the_evaluator(macro):
    ev = FakeEvaluator(macro)
    est = Estimator(ev, EvalConfig())
    archs = [Arch(macro, (1,) * 8), Arch(macro, (2, 0, 1, 2, 0, 1, 2, 0))]
    assert est(archs) == ev.evaluate(archs)
    assert est.name == "accuracy" and est.model is None


def test_estimator_additive_fits_once_and_scores_without_evaluating(macro):
    ev = FakeEvaluator(macro, interaction=0.0)
    est = Estimator(ev, EvalConfig(additive_paths=120, score="neg_loss"), seed=3)
    rng = np.random.default_rng(2)
    archs = [Arch.random(macro, rng) for _ in range(50)]
    first = est(archs)
    assert len(ev.scored) == 120  # the fit's paths only, once
    assert est(archs) == first and len(ev.scored) == 120
    assert first == pytest.approx([ev.value(a.genes) for a in archs], abs=0.05)  # additive truth: recovered
    # equivalent codes (a skip moved inside its stage) are one network and get one estimate
    code = next(g for g in itertools.product(*(range(n) for n in macro.n_choices)) if macro.canonical(g) != g)
    assert est([Arch(macro, code)]) == est([Arch(macro, macro.canonical(code))])
    settings = est.settings()
    assert settings["estimate"] == "additive(neg_loss, 120 paths)" and settings["paths_fitted"] == 120
    assert settings["fit_r2"] == pytest.approx(1.0, abs=1e-3) and len(settings["layer_effects"]) == 8
    assert Estimator(FakeEvaluator(macro), EvalConfig(additive_paths=120), seed=3)(archs) == first  # deterministic


def test_estimator_additive_smooths_noise(macro):
    """Scores with per-path noise: the additive fit ranks networks closer to the noiseless truth than the paths."""
    from lut.validate import kendall_tau

    ev = FakeEvaluator(macro)
    noise = np.random.default_rng(7)
    noisy = {}

    def noisy_evaluate(archs):
        return [noisy.setdefault(a.genes, ev.value(a.genes) + noise.normal(scale=1.5)) for a in archs]

    ev.evaluate = noisy_evaluate  # type: ignore[method-assign]
    archs = fit_paths(macro, 400, 11)
    truth = [FakeEvaluator(macro).value(a.genes) for a in archs]
    raw = Estimator(ev, EvalConfig())(archs)
    smooth = Estimator(ev, EvalConfig(additive_paths=300))(archs)
    assert kendall_tau(smooth, truth) > kendall_tau(raw, truth) + 0.1
