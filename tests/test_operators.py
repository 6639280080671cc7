"""Tests for moga.operators (integer-genome pymoo operators + reinforced mutation)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from pymoo.algorithms.moo.nsga2 import NSGA2
from pymoo.core.population import Population
from pymoo.core.problem import Problem

from moga.operators import (
    ArchSampling,
    GenomeDuplicateElimination,
    HybridMutation,
    LayerCrossover,
    MutationController,
    RandomLayerMutation,
    mutation_reward,
    mutation_rewards,
)

N_CHOICES = np.array([12] * 14)
MIXED = np.array([3, 1, 5, 2, 7, 4])  # includes a layer with a single choice


class ToyArch(Problem):
    """Deterministic 3-objective toy evaluator on integer genomes."""

    def __init__(self, n_choices: np.ndarray) -> None:
        self.n = np.asarray(n_choices)
        super().__init__(n_var=len(self.n), n_obj=3, xl=0, xu=self.n - 1, vtype=int)

    def _evaluate(self, X: np.ndarray, out: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        X = np.asarray(X, dtype=float)
        layer = np.arange(X.shape[1])
        f1 = X.sum(axis=1)
        f2 = ((self.n - 1 - X) * (1 + layer % 3)).sum(axis=1)
        f3 = (np.cos(X * (layer + 1)) + 0.1 * (X - 5.0) ** 2).sum(axis=1)
        out["F"] = np.column_stack([f1, f2, f3])


def test_sampling_within_bounds_and_uses_given_rng() -> None:
    s = ArchSampling(MIXED)
    X = s.do(ToyArch(MIXED), 500, random_state=np.random.default_rng(0)).get("X")
    assert X.shape == (500, len(MIXED)) and np.issubdtype(X.dtype, np.integer)
    assert np.all(X >= 0) and np.all(X < MIXED)
    assert all(len(np.unique(X[:, j])) == MIXED[j] for j in range(len(MIXED)))
    X2 = s.do(ToyArch(MIXED), 500, random_state=np.random.default_rng(0)).get("X")
    np.testing.assert_array_equal(X, X2)
    with pytest.raises(ValueError, match="n_var"):
        s.do(ToyArch(N_CHOICES), 3, random_state=np.random.default_rng(0))


def test_homogeneous_sampling_starts_with_the_one_choice_networks() -> None:
    X = ArchSampling(MIXED, homogeneous=True).do(ToyArch(MIXED), 20, random_state=np.random.default_rng(0)).get("X")
    assert X.shape == (20, len(MIXED)) and np.all(X >= 0) and np.all(X < MIXED)
    np.testing.assert_array_equal(X[0], np.zeros(len(MIXED)))  # every layer its first choice
    np.testing.assert_array_equal(X[4], [1, 0, 4, 0, 4, 0])  # choice 4, wrapped in layers with fewer choices
    # as many as the widest layer has choices (7), each layer wrapping at its own count [3, 1, 5, 2, 7, 4]
    expected = [
        [0, 0, 0, 0, 0, 0],
        [1, 0, 1, 1, 1, 1],
        [2, 0, 2, 0, 2, 2],
        [0, 0, 3, 1, 3, 3],
        [1, 0, 4, 0, 4, 0],
        [2, 0, 0, 1, 5, 1],
        [0, 0, 1, 0, 6, 2],
    ]
    np.testing.assert_array_equal(X[:7], expected)
    random_part = ArchSampling(MIXED).do(ToyArch(MIXED), 13, random_state=np.random.default_rng(0)).get("X")
    np.testing.assert_array_equal(X[7:], random_part)  # then what the random sampling would draw
    small = ArchSampling(N_CHOICES, homogeneous=True).do(ToyArch(N_CHOICES), 5, random_state=np.random.default_rng(0)).get("X")
    assert [set(row) for row in small] == [{0}, {1}, {2}, {3}, {4}]  # a smaller population: the first ones


def _parents(rng: np.random.Generator, n: int = 50) -> np.ndarray:
    return np.stack([rng.integers(0, N_CHOICES, size=(n, 14)), rng.integers(0, N_CHOICES, size=(n, 14))])


def test_uniform_crossover_positionwise() -> None:
    rng = np.random.default_rng(1)
    X = _parents(rng)
    Q = LayerCrossover("uniform")._do(None, X, random_state=rng)
    assert Q.shape == X.shape
    assert np.all((Q[0] == X[0]) | (Q[0] == X[1]))
    # complementary: each position's pair of genes is the parents' pair
    np.testing.assert_array_equal(np.sort(Q, axis=0), np.sort(X, axis=0))
    differ = X[0] != X[1]
    from_p2 = (Q[0] == X[1]) & differ
    assert 0.3 < from_p2.sum() / differ.sum() < 0.7


@pytest.mark.parametrize("kind", ["one_point", "two_point"])
def test_point_crossover_structure(kind: str) -> None:
    rng = np.random.default_rng(2)
    X = np.stack([np.zeros((200, 14), int), np.ones((200, 14), int)])
    Q = LayerCrossover(kind)._do(None, X, random_state=rng)
    np.testing.assert_array_equal(Q[0] + Q[1], np.ones((200, 14)))
    switches = np.abs(np.diff(Q[0], axis=1)).sum(axis=1)
    assert np.all(switches == (1 if kind == "one_point" else 2))
    if kind == "one_point":
        assert np.all(Q[0][:, 0] == 0) and np.all(Q[0][:, -1] == 1)
    else:  # swapped segment is interior: ends stay with their own parent
        assert np.all(Q[0][:, 0] == 0) and np.all(Q[0][:, -1] == 0)


def test_crossover_via_pymoo_do_two_offspring() -> None:
    rng = np.random.default_rng(3)
    pop = Population.new("X", rng.integers(0, N_CHOICES, size=(10, 14)))
    parents = rng.integers(0, 10, size=(5, 2))
    off = LayerCrossover("two_point", prob=1.0).do(ToyArch(N_CHOICES), pop, parents, random_state=rng)
    assert len(off) == 10
    with pytest.raises(ValueError, match="kind"):
        LayerCrossover("three_point")


@pytest.mark.parametrize(("prob", "min_changes"), [(None, 1), (0.0, 1), (0.0, 3), (0.5, 2), (0.0, 0)])
def test_random_mutation_min_changes_and_bounds(prob: float | None, min_changes: int) -> None:
    rng = np.random.default_rng(4)
    X = rng.integers(0, MIXED, size=(300, len(MIXED)))
    mut = RandomLayerMutation(MIXED, prob_per_layer=prob, min_changes=min_changes)
    Y = mut.do(ToyArch(MIXED), Population.new("X", X), random_state=rng).get("X")
    assert np.all(Y >= 0) and np.all(Y < MIXED)
    n_changed = (Y != X).sum(axis=1)
    assert np.all(n_changed >= min_changes)
    assert np.all(Y[:, 1] == 0)  # single-choice layer never changes
    if prob == 0.0:
        assert np.all(n_changed == min_changes)


def test_controller_propose_bounds_min_changes_and_logprob() -> None:
    rng = np.random.default_rng(5)
    ctl = MutationController(MIXED, min_changes=2)
    parents = rng.integers(0, MIXED, size=(400, len(MIXED)))
    logits = ctl.logits.copy()
    children = ctl.propose(parents, rng)
    assert np.all(children >= 0) and np.all(children < MIXED)
    assert np.all((children != parents).sum(axis=1) >= 2)
    assert np.all(children[:, 1] == 0)
    log_prob = ctl.log_prob(parents, children)
    assert np.all(np.isfinite(log_prob)) and np.all(log_prob < 0)
    np.testing.assert_array_equal(ctl.logits, logits)  # proposing does not change the policy
    assert ctl.n_updates == 0 and ctl.baseline == 0.0


def test_controller_conditional_sampling_is_exact() -> None:
    """Empirical child distribution == policy conditioned on >= 1 change."""
    n = np.array([2, 3])
    ctl = MutationController(n, init_change_prob=0.4, min_changes=1)
    parent = np.array([[1, 0]])
    P = ctl.probs(parent)[0]
    joint = np.outer(P[0, :2], P[1, :3])
    joint[1, 0] = 0.0  # "no change" excluded
    joint /= joint.sum()
    rng = np.random.default_rng(6)
    kids = ctl.propose(np.repeat(parent, 40000, axis=0), rng)
    freq = np.zeros((2, 3))
    np.add.at(freq, (kids[:, 0], kids[:, 1]), 1)
    np.testing.assert_allclose(freq / freq.sum(), joint, atol=0.01)
    np.testing.assert_allclose(np.exp(ctl.log_prob(np.repeat(parent, len(kids), axis=0), kids)), joint[kids[:, 0], kids[:, 1]])


def test_controller_gradient_matches_finite_differences() -> None:
    rng = np.random.default_rng(7)
    ctl = MutationController(MIXED, min_changes=2)
    ctl.logits += rng.normal(size=ctl.logits.shape) * ctl.valid
    parents = rng.integers(0, MIXED, size=(3, len(MIXED)))
    kids = ctl.propose(parents, rng)
    g = ctl.grad_log_prob(parents, kids)

    np.testing.assert_allclose(ctl.log_prob(parents, kids), [_logp(ctl, parents[i], kids[i]) for i in range(3)])
    for i in range(3):
        for layer in (0, 2, 4):
            f = parents[i, layer]
            for t in range(MIXED[layer]):
                old = ctl.logits[layer, f, t]
                ctl.logits[layer, f, t] = old + 1e-6
                up = _logp(ctl, parents[i], kids[i])
                ctl.logits[layer, f, t] = old - 1e-6
                down = _logp(ctl, parents[i], kids[i])
                ctl.logits[layer, f, t] = old
                assert abs((up - down) / 2e-6 - g[i, layer, t]) < 1e-5


def _logp(ctl: MutationController, parent: np.ndarray, child: np.ndarray) -> float:
    """Brute-force conditional log-prob by enumerating change patterns."""
    P = ctl.probs(parent[None])[0]
    L = len(parent)
    c = 1 - P[np.arange(L), parent]
    tail = 0.0
    for bits in range(1 << L):
        pattern = np.array([(bits >> j) & 1 for j in range(L)], bool)
        if pattern.sum() >= ctl.min_changes:
            tail += np.prod(np.where(pattern, c, 1 - c))
    return float(np.log(P[np.arange(L), child]).sum() - np.log(tail))


def test_controller_learns_rewarded_move() -> None:
    n = np.array([3, 3, 3, 3])
    ctl = MutationController(n, lr=0.2)
    rng = np.random.default_rng(8)
    before = ctl.probs(np.zeros((1, 4), int))[0, 0, 2]
    for _ in range(300):
        parents = rng.integers(0, 3, size=(16, 4))
        kids = ctl.propose(parents, rng)
        r = ((kids[:, 0] == 2) & (parents[:, 0] != 2)).astype(float)
        ctl.update(parents, kids, r)
    after = ctl.probs(np.array([[0, 0, 0, 0], [1, 1, 1, 1]]))[:, 0, 2]
    assert before == pytest.approx(0.125)
    assert np.all(after > 0.6), after
    assert ctl.n_updates == 300


def test_controller_state_dict_round_trip() -> None:
    rng = np.random.default_rng(9)
    ctl = MutationController(N_CHOICES)
    for _ in range(20):
        p = rng.integers(0, 12, size=(8, 14))
        ctl.update(p, ctl.propose(p, rng), rng.random(8))
    state = json.loads(json.dumps(ctl.state_dict()))
    clone = MutationController(N_CHOICES)
    clone.load_state_dict(state)
    p = rng.integers(0, 12, size=(32, 14))
    k1 = ctl.propose(p, np.random.default_rng(42))
    k2 = clone.propose(p, np.random.default_rng(42))
    np.testing.assert_array_equal(k1, k2)
    np.testing.assert_array_equal(ctl.log_prob(p, k1), clone.log_prob(p, k2))
    r = np.linspace(-1, 1, 32)
    ctl.update(p, k1, r)
    clone.update(p, k2, r)
    np.testing.assert_array_equal(ctl.logits, clone.logits)
    assert ctl.baseline == clone.baseline
    with pytest.raises(ValueError, match="n_choices"):
        MutationController(MIXED).load_state_dict(state)


def test_mutation_reward_cases() -> None:
    parent = np.array([1.0, 1.0])
    child = np.array([[0.5, 1.0], [0.0, 1.2], [0.9, 2.0], [1.0, 1.0], [1.5, 1.0]])
    r = mutation_reward(child, np.tile(parent, (5, 1)), np.array([1.0, 1.0]))
    np.testing.assert_array_equal(r, [1.0, 0.5, 0.0, 0.0, -0.5])
    # weights decide the trade-off case
    r = mutation_reward(child[2], parent, np.ones(2), weights=np.array([1.0, 0.0]))
    assert r[0] == 0.5


def test_mutation_rewards_against_the_nearest_population_member() -> None:
    pop_X = np.array([[0, 0], [1, 1], [0, 1]])
    pop_F = np.array([[4.0, 0.0], [2.0, 1.0], [0.0, 2.0]])  # ranges 4 and 2: normalised [1, 0], [.5, .5], [0, 1]
    # with weights (3, 1) the scores are 0.75, 0.5, 0.25; [1, 0] is one layer from both [0, 0] and [1, 1], so its
    # reference is [1, 1] (the better score; against [0, 0], children 0 and 2 would score +0.5); [0, 1] is its own
    pre = np.array([[1, 0], [0, 1], [1, 0]])
    children_F = np.array([[1.0, 0.5], [0.0, 2.0], [3.0, 1.0]])
    r = mutation_rewards(pre, children_F, pop_X, pop_F, np.array([3.0, 1.0]))
    # child 0 dominates its reference (2, 1); child 1 equals its own; child 2 is dominated by (2, 1)
    np.testing.assert_array_equal(r, [1.0, 0.0, -0.5])


def test_hybrid_marks_offspring_and_only_reads_the_policy() -> None:
    X = np.random.default_rng(10).integers(0, 12, size=(40, 14))
    ctl = MutationController(N_CHOICES)
    hyb = HybridMutation(N_CHOICES, ctl, reinforced_ratio=0.5)
    before = json.dumps(ctl.state_dict())

    def mutate(seed: int) -> Population:
        return hyb.do(ToyArch(N_CHOICES), Population.new("X", X.copy()), random_state=np.random.default_rng(seed))

    off = mutate(0)
    Y, pre, reinforced = off.get("X", "pre", "reinforced")
    np.testing.assert_array_equal(pre, X)
    assert reinforced.dtype == bool and 5 < reinforced.sum() < 35
    assert np.all((Y != X).sum(axis=1) >= 1) and np.all(Y < N_CHOICES)
    assert json.dumps(ctl.state_dict()) == before  # the policy is read, never changed
    np.testing.assert_array_equal(mutate(0).get("X"), Y)  # nothing carried from one call to the next
    assert not np.array_equal(mutate(1).get("X"), Y)
    # the controller's policy decides its share: made certain to move layer 0 to choice 7, its offspring all do
    ctl.logits[0, :, :] = -20.0
    ctl.logits[0, :, 7] = 20.0
    off = mutate(0)
    Y, reinforced = off.get("X", "reinforced")
    assert np.all(Y[reinforced & (X[:, 0] != 7), 0] == 7)
    everyone = HybridMutation(N_CHOICES, ctl, reinforced_ratio=1.0).do(ToyArch(N_CHOICES), Population.new("X", X.copy()),
                                                                       random_state=np.random.default_rng(0))  # fmt: skip
    assert everyone.get("reinforced").all()
    with pytest.raises(ValueError, match="controller"):
        HybridMutation(MIXED, ctl)


def test_duplicate_elimination_by_genome() -> None:
    X = np.array([[0, 1, 2], [0, 1, 2], [2, 1, 0], [1, 1, 1]])
    other = Population.new("X", np.array([[1, 1, 1]]))
    kept = GenomeDuplicateElimination().do(Population.new("X", X), other).get("X")
    np.testing.assert_array_equal(kept, [[0, 1, 2], [2, 1, 0]])


def _search(seed: int, ratio: float = 0.5) -> tuple[np.ndarray, dict[str, Any]]:
    """NSGA-II through ask/tell, the loop training the controller on the offspring it proposed."""
    controller, problem = MutationController(N_CHOICES), ToyArch(N_CHOICES)
    algo = NSGA2(
        pop_size=24,
        sampling=ArchSampling(N_CHOICES),
        crossover=LayerCrossover("uniform"),
        mutation=HybridMutation(N_CHOICES, controller, reinforced_ratio=ratio),
        eliminate_duplicates=GenomeDuplicateElimination(),
    )
    algo.setup(problem, termination=("n_gen", 12), seed=seed)
    while algo.has_next():
        parents = algo.pop
        off = algo.ask()
        algo.evaluator.eval(problem, off)
        algo.tell(infills=off)
        if parents is not None:
            pre, X, F, reinforced = off.get("pre", "X", "F", "reinforced")
            rewards = mutation_rewards(pre, F, *parents.get("X", "F"), np.ones(3))
            controller.update(pre[reinforced], X[reinforced], rewards[reinforced])
    return np.hstack([algo.pop.get("X"), algo.pop.get("F")]), controller.state_dict()


def test_nsga2_deterministic_given_seed() -> None:
    a, sa = _search(seed=1)
    b, sb = _search(seed=1)
    c, _ = _search(seed=2)
    np.testing.assert_array_equal(a, b)
    assert sa == sb and sa["n_updates"] == 11
    assert not np.array_equal(a, c)
    assert len({tuple(x) for x in a[:, :14]}) == len(a)  # duplicates eliminated
