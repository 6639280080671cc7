"""Weighted crowding distance for MoGA's weighted NSGA-II.

MoGA ("Searching Beyond MobileNetV3", Chu et al. 2020) weights its objectives
(e.g. accuracy, latency, #params) but does not publish where the weights enter
NSGA-II.  In this implementation they enter **only through the crowding
distance**:

* Every objective ``j`` contributes its normalised neighbour gap
  ``(f_j[next] - f_j[prev]) / (max_j - min_j)`` exactly as in pymoo's
  :func:`~pymoo.operators.survival.rank_and_crowding.metrics.calc_crowding_distance`,
  but scaled by ``w_j / sum(w)``.  pymoo averages the gaps over objectives
  (``sum / n_obj``); equal weights therefore reproduce pymoo bit for bit.
* Non-dominated sorting (ranks) is untouched, so dominance is unweighted.
* The weighted distance is used by ``RankAndCrowding`` survival to truncate the
  last (split) front, and -- because survival stores it as the ``crowding``
  attribute of every survivor -- by NSGA-II's ``binary_tournament`` to break
  ties between mutually non-dominated candidates in mating selection.

A zero weight removes an objective's contribution completely, including the
infinite distance of that objective's boundary points.  Boundary points of a
positively weighted objective get ``inf`` (as in pymoo); an objective whose
values are all equal contributes 0 (as in pymoo).
"""

from __future__ import annotations

import numpy as np
from pymoo.operators.survival.rank_and_crowding.metrics import CrowdingDiversity
from pymoo.util.misc import find_duplicates

__all__ = ["WeightedCrowding", "make_crowding_function", "weighted_crowding_distance"]


def _validate_weights(weights: np.ndarray, n_obj: int | None = None) -> np.ndarray:
    w = np.asarray(weights, dtype=float)
    if w.ndim != 1 or w.size == 0:
        raise ValueError(f"weights must be a non-empty 1-D array, got shape {w.shape}")
    if n_obj is not None and w.size != n_obj:
        raise ValueError(f"weights has length {w.size} but F has {n_obj} objectives")
    if not np.all(np.isfinite(w)):
        raise ValueError(f"weights must be finite, got {w.tolist()}")
    if np.any(w < 0):
        raise ValueError(f"weights must be non-negative, got {w.tolist()}")
    if not np.any(w > 0):
        raise ValueError("weights must not all be zero")
    return w


def _scaled_weights(w: np.ndarray) -> np.ndarray:
    """Rescale so that ``sum == n_obj`` (equal weights -> exactly ones)."""
    if np.all(w == w[0]):
        return np.ones_like(w)
    return w * (w.size / w.sum())


def weighted_crowding_distance(F: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Crowding distance with per-objective weights (minimisation, rows = points).

    ``cd_i = sum_j (w_j / sum(w)) * (gap_ij / range_j)`` where ``gap_ij`` is the
    distance between point ``i``'s two neighbours along objective ``j``
    (``inf`` for boundary points) -- identical to pymoo's
    ``calc_crowding_distance`` when all weights are equal.
    Duplicates are not filtered here (pymoo's ``"cd"`` does not filter either).
    """
    F = np.asarray(F, dtype=float)
    if F.ndim != 2:
        raise ValueError(f"F must be 2-D (n_points, n_obj), got shape {F.shape}")
    n_points, n_obj = F.shape
    w = _scaled_weights(_validate_weights(weights, n_obj))
    if n_points == 0:
        return np.zeros(0)

    # --- identical to pymoo's calc_crowding_distance -------------------------
    I = np.argsort(F, axis=0, kind="mergesort")  # noqa: E741
    F = F[I, np.arange(n_obj)]
    dist = np.vstack([F, np.full(n_obj, np.inf)]) - np.vstack([np.full(n_obj, -np.inf), F])
    norm = np.max(F, axis=0) - np.min(F, axis=0)
    norm[norm == 0] = np.nan
    dist_to_last, dist_to_next = dist, np.copy(dist)
    dist_to_last, dist_to_next = dist_to_last[:-1] / norm, dist_to_next[1:] / norm
    dist_to_last[np.isnan(dist_to_last)] = 0.0
    dist_to_next[np.isnan(dist_to_next)] = 0.0
    J = np.argsort(I, axis=0)
    gaps = dist_to_last[J, np.arange(n_obj)] + dist_to_next[J, np.arange(n_obj)]
    # --- weighting: w == 1 leaves gaps bitwise unchanged ----------------------
    pos = w > 0  # a zero weight must not turn an infinite gap into 0 * inf = nan
    contrib = np.zeros_like(gaps)
    contrib[:, pos] = gaps[:, pos] * w[pos]
    return np.sum(contrib, axis=1) / n_obj


class WeightedCrowding(CrowdingDiversity):
    """pymoo crowding metric (``RankAndCrowding(crowding_func=...)``) using weights.

    Mirrors pymoo's ``FunctionalDiversity``: fronts with <= 2 points get ``inf``;
    duplicates are kept (like ``"cd"``) unless ``filter_out_duplicates`` is set,
    in which case duplicates get 0 and the rest are computed without them.
    """

    def __init__(self, weights: np.ndarray, filter_out_duplicates: bool = False) -> None:
        super().__init__()
        self.weights = _validate_weights(weights)
        self.filter_out_duplicates = filter_out_duplicates

    def _do(self, F: np.ndarray, n_remove: int | None = None) -> np.ndarray:
        n_points = F.shape[0]
        if n_points <= 2:
            _validate_weights(self.weights, F.shape[1])
            return np.full(n_points, np.inf)
        if not self.filter_out_duplicates:
            return weighted_crowding_distance(F, self.weights)
        is_unique = np.where(~find_duplicates(F, epsilon=1e-32))[0]
        d = np.zeros(n_points)
        d[is_unique] = weighted_crowding_distance(F[is_unique], self.weights)
        return d


def make_crowding_function(weights: np.ndarray, filter_out_duplicates: bool = False) -> WeightedCrowding:
    """Return a crowding metric for ``RankAndCrowding(crowding_func=...)``.

    ``NSGA2(survival=RankAndCrowding(crowding_func=make_crowding_function(w)))``
    behaves exactly like plain ``NSGA2()`` when ``w`` is constant.
    """
    return WeightedCrowding(weights, filter_out_duplicates=filter_out_duplicates)
