"""Tests for moga.crowding (weighted crowding distance)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from pymoo.algorithms.moo.nsga2 import NSGA2
from pymoo.operators.survival.rank_and_crowding import RankAndCrowding
from pymoo.operators.survival.rank_and_crowding.metrics import (
    calc_crowding_distance,
    get_crowding_function,
)
from pymoo.optimize import minimize
from pymoo.problems import get_problem

from moga.crowding import (
    WeightedCrowding,
    make_crowding_function,
    weighted_crowding_distance,
)

# A 5-point bi-objective front; by hand (both ranges are 10):
#   point:        0     1      2      3     4
#   f1 gap/10:   inf   0.3    0.5    0.7   inf
#   f2 gap/10:   inf   0.7    0.5    0.3   inf
FRONT = np.array([[0, 10], [1, 6], [3, 3], [6, 1], [10, 0]], dtype=float)


def test_hand_checked_unweighted() -> None:
    cd = weighted_crowding_distance(FRONT, np.array([1.0, 1.0]))
    np.testing.assert_allclose(cd, [np.inf, 0.5, 0.5, 0.5, np.inf])


def test_hand_checked_weighted() -> None:
    # weights 3:1 -> 0.75 / 0.25:  p1 = .75*.3+.25*.7 = .4, p2 = .5, p3 = .6
    cd = weighted_crowding_distance(FRONT, np.array([3.0, 1.0]))
    assert np.isinf(cd[0]) and np.isinf(cd[4])
    np.testing.assert_allclose(cd[1:4], [0.4, 0.5, 0.6])
    # scale invariance of the weights
    np.testing.assert_array_equal(cd, weighted_crowding_distance(FRONT, [0.3, 0.1]))


def test_zero_weight_removes_objective_including_boundaries() -> None:
    third = np.array([5.0, 0.0, 9.0, 2.0, 4.0])  # min at point 1, max at point 2
    F = np.column_stack([FRONT, third])
    cd = weighted_crowding_distance(F, np.array([1.0, 1.0, 0.0]))
    np.testing.assert_allclose(cd, calc_crowding_distance(FRONT))
    assert np.all(np.isfinite(cd[1:4]))
    cd = weighted_crowding_distance(FRONT, np.array([1.0, 0.0]))
    np.testing.assert_allclose(cd, [np.inf, 0.3, 0.5, 0.7, np.inf])


def test_degenerate_objective_and_duplicates_like_pymoo() -> None:
    F = np.array([[1.0, 2.0], [1.0, 3.0], [1.0, 3.0], [1.0, 5.0]])
    np.testing.assert_array_equal(weighted_crowding_distance(F, np.ones(2)), calc_crowding_distance(F))


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("n_obj", [2, 3, 5])
def test_equal_weights_bitwise_equal_to_pymoo(seed: int, n_obj: int) -> None:
    rng = np.random.default_rng(seed)
    F = rng.random((int(rng.integers(3, 40)), n_obj))
    F[rng.random(len(F)) < 0.2] = F[0]  # some duplicates
    expected = calc_crowding_distance(F.copy())
    for c in (1.0, 0.1, 7.3):
        np.testing.assert_array_equal(weighted_crowding_distance(F, np.full(n_obj, c)), expected)


@settings(max_examples=60, deadline=None)
@given(
    arrays(
        np.float64,
        st.tuples(st.integers(1, 12), st.integers(1, 4)),
        elements=st.floats(-1e3, 1e3, allow_nan=False),
    )
)
def test_equal_weights_property(F: np.ndarray) -> None:
    np.testing.assert_array_equal(
        weighted_crowding_distance(F, np.ones(F.shape[1])),
        calc_crowding_distance(F.copy()),
    )


def test_wrapper_matches_pymoo_cd_wrapper() -> None:
    rng = np.random.default_rng(0)
    pymoo_cd = get_crowding_function("cd")
    ours = make_crowding_function(np.ones(3))
    assert isinstance(ours, WeightedCrowding)
    assert get_crowding_function(ours) is ours
    for n in (1, 2, 3, 10):
        F = rng.random((n, 3))
        np.testing.assert_array_equal(ours.do(F, n_remove=1), pymoo_cd.do(F, n_remove=1))


def test_wrapper_filter_duplicates() -> None:
    F = np.array([[0.0, 4.0], [1.0, 2.0], [1.0, 2.0], [2.0, 1.0], [4.0, 0.0]])
    d = make_crowding_function([1, 1], filter_out_duplicates=True).do(F)
    assert d[2] == 0.0
    np.testing.assert_array_equal(d[[0, 1, 3, 4]], calc_crowding_distance(F[[0, 1, 3, 4]]))


@pytest.mark.parametrize(
    ("weights", "match"),
    [
        ([1.0, -0.5], "non-negative"),
        ([0.0, 0.0], "all be zero"),
        ([1.0, 1.0, 1.0], "length 3"),
        ([[1.0, 1.0]], "1-D"),
        ([], "non-empty"),
        ([1.0, np.nan], "finite"),
    ],
)
def test_validation(weights: list, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        weighted_crowding_distance(FRONT, np.array(weights))


def test_validation_at_construction() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        make_crowding_function(np.array([-1.0, 1.0]))
    with pytest.raises(ValueError, match="all be zero"):
        make_crowding_function(np.zeros(3))


def _run(survival: RankAndCrowding | None, seed: int = 3) -> np.ndarray:
    algo = NSGA2(pop_size=40) if survival is None else NSGA2(pop_size=40, survival=survival)
    res = minimize(get_problem("zdt1", n_var=8), algo, ("n_gen", 25), seed=seed)
    return np.hstack([res.pop.get("X"), res.pop.get("F")])


def test_nsga2_equal_weights_identical_to_plain_nsga2() -> None:
    plain = _run(None)
    ours = _run(RankAndCrowding(crowding_func=make_crowding_function(np.ones(2))))
    np.testing.assert_array_equal(ours, plain)
    scaled = _run(RankAndCrowding(crowding_func=make_crowding_function([0.5, 0.5])))
    np.testing.assert_array_equal(scaled, plain)


def test_nsga2_unequal_weights_change_result() -> None:
    plain = _run(None)
    ours = _run(RankAndCrowding(crowding_func=make_crowding_function([1.0, 0.05])))
    assert ours.shape == plain.shape
    assert not np.array_equal(ours, plain)
