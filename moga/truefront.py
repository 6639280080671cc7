"""Ground truth for a search on a benchmarked space: true accuracies, the true Pareto front, hv_ratio, IGD, regret.

A space that names a benchmark (``SearchSpace.benchmark``, e.g. ``nasbench_macro``; tables in
``supernet.benchmark``) has every network's trained accuracy known, so a search is scored against the best it
could have found. Definitions (the search writes them; ``search.accuracy`` does not change them):

* **true accuracy** of an architecture: the benchmark's mean test accuracy (over its seeds) of the architecture's
  network. Equivalent codes (``SearchSpace.canonical``: identity layers moved to their stage's end) are one
  network and share it. ``history.csv`` and ``pareto.csv`` carry it as ``true_accuracy``.
* **true front** (``search/true_front.csv``, its ``accuracy`` column is the true accuracy): every distinct network
  of the space (3,969 for NAS-Bench-Macro) scored on the search's own objectives with the true accuracy (in place
  of the supernet's estimate, also when that is a ``neg_loss``), the
  experiment's latency table(s) and the counted params/MACs; the networks meeting every constraint (accuracy
  constraints judged on true accuracy); the non-dominated ones among them.
* **normalised space**: each minimised objective mapped to [0, 1] by its exact range over the space (latency,
  params and MACs as for the search's ``hypervolume``; accuracy by the range of the table's accuracies over the
  distinct networks rather than 0..100 %), hypervolume reference point 1 in every coordinate. With
  ``search.accuracy: benchmark`` the search's own ``hypervolume`` is computed in exactly this space (its accuracy
  bounds are the table's), so ``hv_ratio = hypervolume / HV(true front)`` there.
* **re-scored front** at a generation: the front the search itself selects (feasible and non-dominated among
  everything evaluated so far, by its own objective values: supernet estimates or table accuracies), each
  member's accuracy replaced by its true accuracy, members that violate a constraint under the true values
  dropped, non-dominated again. With ``search.accuracy: benchmark`` it is the search's front itself.
* ``hv_ratio`` = HV(re-scored front) / HV(true front), both normalised as above: in [0, 1] (every re-scored
  member is a feasible network, which the true front weakly dominates), 1 once the search's front holds the
  true front (or points of equal value). ``nan`` when no network meets the constraints.
* ``igd``: pymoo's inverted generational distance of the re-scored front w.r.t. the true front in the
  normalised space (mean over true-front points of the Euclidean distance to the nearest re-scored point):
  0 iff every true-front point was found. ``nan`` for an empty re-scored front.
* **regret** of a model (``pareto.csv``): the best true accuracy of any distinct network that meets the
  constraints and is no slower than the model on the primary latency table, minus the model's true accuracy
  (percentage points). The model itself counts as a candidate, so regret >= 0, and it is 0 exactly for models
  on the true (accuracy, primary latency) front. It needs a latency table (no ``regret`` column without one).

Everything is computed from the table and the additive cost tables: no network is trained or run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pymoo.indicators.hv import HV
from pymoo.indicators.igd import IGD
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

from moga.objectives import ESTIMATES, Constraint, Objective, column
from supernet.arch import Arch
from supernet.benchmark import Benchmark, load_benchmark, registered_benchmarks
from supernet.errors import UserError
from supernet.space import SearchSpace

Costs = Callable[[list[Arch]], dict[str, np.ndarray]]  # every metric but accuracy (``ArchMetrics.costs``)


def feasible_front(F: np.ndarray, cv: np.ndarray) -> np.ndarray:
    """Indices of the non-dominated rows among those with total violation ``cv <= 0``."""
    ok = np.flatnonzero(cv <= 0)
    if len(ok) == 0:
        return ok
    return ok[NonDominatedSorting().do(F[ok], only_non_dominated_front=True)]


def objective_matrix(
    rows: dict[str, np.ndarray], objectives: list[Objective], constraints: list[Constraint], accuracy: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Minimised objectives and total constraint violation of metric columns; ``accuracy`` names the column read for
    the estimate's metric, ``accuracy`` or ``neg_loss`` (``true_accuracy`` to re-score with the table; default: its own)."""

    def get(metric: str) -> np.ndarray:
        return np.asarray(rows[accuracy if accuracy is not None and metric in ESTIMATES else metric], float)

    n = len(next(iter(rows.values())))
    F = np.column_stack([o.to_minimised(get(o.metric)) for o in objectives]) if n else np.zeros((0, len(objectives)))
    if not constraints or not n:
        return F, np.zeros(n)
    G = np.column_stack([c.violation(get(c.metric)) for c in constraints])
    return F, np.maximum(G, 0).sum(axis=1)


def hypervolume(points: np.ndarray) -> float:
    """HV of normalised (minimised, [0, 1]) points w.r.t. the reference point 1."""
    if len(points) == 0:
        return 0.0
    return float(HV(ref_point=np.ones(points.shape[1]))(np.clip(points, 0, 1)))


def regret(model_latency: np.ndarray, model_accuracy: np.ndarray, latency: np.ndarray, accuracy: np.ndarray,
           feasible: np.ndarray) -> np.ndarray:  # fmt: skip
    """Best ``accuracy`` among ``feasible`` networks with ``latency <= model_latency``, minus ``model_accuracy``,
    never below 0 (the model itself is a candidate)."""
    lat, acc = np.asarray(latency, float)[feasible], np.asarray(accuracy, float)[feasible]
    order = np.argsort(lat, kind="stable")
    lat, best = lat[order], np.maximum.accumulate(acc[order]) if len(acc) else acc
    at = np.searchsorted(lat, np.asarray(model_latency, float), side="right")  # networks no slower than the model
    reachable = np.where(at > 0, best[np.maximum(at - 1, 0)] if len(best) else -np.inf, -np.inf)
    own = np.asarray(model_accuracy, float)
    return np.maximum(reachable, own) - own


@dataclass
class TrueFront:
    """Every distinct network scored on one search's objectives, and the true front among them."""

    archs: list[Arch]  # canonical, one per distinct network
    metrics: dict[str, np.ndarray]  # metric -> value per network (``accuracy`` is the table's)
    F: np.ndarray  # minimised objectives per network
    cv: np.ndarray  # total constraint violation per network
    front: np.ndarray  # indices of the true front
    points: np.ndarray  # normalised objectives of the true front
    hv: float  # its hypervolume (reference point 1)

    def scores(self, F_true_normalised: np.ndarray) -> dict[str, float]:
        """``hv_ratio`` and ``igd`` of a re-scored front (normalised, feasible, non-dominated)."""
        if len(self.front) == 0 or self.hv <= 0:
            return {"hv_ratio": float("nan"), "igd": float("nan")}
        if len(F_true_normalised) == 0:
            return {"hv_ratio": 0.0, "igd": float("nan")}
        P = np.clip(F_true_normalised, 0, 1)
        return {"hv_ratio": hypervolume(P) / self.hv, "igd": float(IGD(self.points)(P))}

    def table(self, tables: list[str], code: bool) -> pd.DataFrame:
        """``true_front.csv``: the front's networks with the search's column names, by primary latency."""
        idx = self.front
        df = pd.DataFrame({"arch": [str(self.archs[i]) for i in idx]})
        if code:
            df["code"] = [self.archs[i].code for i in idx]
        for m, v in self.metrics.items():
            df[column(m, tables)] = v[idx]
        sort = [*[c for c in ("latency_ms", "macs") if c in df][:1], "arch"]
        df = df.sort_values(sort).reset_index(drop=True)
        df.insert(0, "id", range(len(df)))
        return df


class GroundTruth:
    """A benchmark table for one space: true accuracy of any architecture, every distinct network."""

    def __init__(self, bench: Benchmark, space: SearchSpace):
        bench.check_space(space)
        self.bench, self.space, self.name = bench, space, bench.name
        self.networks: list[Arch] = bench.distinct(space)
        self.index = {a.genes: i for i, a in enumerate(self.networks)}
        self.true_acc = np.array([bench.lookup(a).mean_acc for a in self.networks])
        self.accuracy_range = (float(self.true_acc.min()), float(self.true_acc.max()))
        self._costs: dict[int, tuple[object, dict[str, np.ndarray]]] = {}

    @classmethod
    def for_space(cls, space: SearchSpace, required: bool = False) -> GroundTruth | None:
        """The ground truth of ``space`` if it names a benchmark that describes it exactly, else None; with
        ``required`` (``search.accuracy: benchmark``) its absence or a mismatch is a ``UserError``."""
        if space.benchmark is None:
            if required:
                raise UserError(
                    f"search.accuracy: benchmark needs a space with a benchmark table; space {space.name!r} has none "
                    f"(benchmarked spaces: {', '.join(registered_benchmarks())}); use search.accuracy: supernet"
                )
            return None
        bench = load_benchmark(space.benchmark)
        cached = _CACHE.get(space)
        if cached is not None and cached.bench is bench:
            return cached
        try:
            truth = cls(bench, space)
        except UserError:
            if required:
                raise
            return None  # e.g. the benchmark's space at another resolution: the table does not describe it
        _CACHE[space] = truth
        return truth

    def position(self, archs: Sequence[Arch]) -> np.ndarray:
        """Index into ``networks`` of each architecture's network."""
        return np.array([self.index[self.space.canonical(a.genes)] for a in archs], dtype=np.int64)

    def accuracy(self, archs: Sequence[Arch]) -> np.ndarray:
        """True accuracy (%) of each architecture (an ``AccuracyFn`` for ``search.accuracy: benchmark``)."""
        return self.true_acc[self.position(archs)] if len(archs) else np.zeros(0)

    def all_metrics(self, costs: Costs) -> dict[str, np.ndarray]:
        """Every metric of every distinct network: ``costs`` (latency, params, MACs) plus the true accuracy.
        Computed once per metrics object (``costs`` is its method or the object itself)."""
        owner = getattr(costs, "__self__", costs)
        if id(owner) not in self._costs:
            values = {m: np.asarray(v, float) for m, v in costs(self.networks).items() if m not in ("accuracy", "true_accuracy")}
            self._costs[id(owner)] = (owner, values)  # the object is kept, so its id is not reused
        return self._costs[id(owner)][1] | {"accuracy": self.true_acc}

    def front(self, objectives: list[Objective], constraints: list[Constraint], costs: Costs,
              normalise: Callable[[np.ndarray], np.ndarray]) -> TrueFront:  # fmt: skip
        metrics = self.all_metrics(costs)
        F, cv = objective_matrix(metrics, objectives, constraints, accuracy="accuracy")
        idx = feasible_front(F, cv)
        points = np.clip(normalise(F[idx]), 0, 1)
        return TrueFront(self.networks, metrics, F, cv, idx, points, hypervolume(points))

    def regret(self, archs: Sequence[Arch], latency_metric: str, truth: TrueFront) -> np.ndarray:
        """Regret (pp) of each architecture on the primary latency table (see the module docstring)."""
        pos = self.position(archs)
        lat = truth.metrics[latency_metric]
        return regret(lat[pos], self.true_acc[pos], lat, self.true_acc, truth.cv <= 0)


_CACHE: dict[SearchSpace, GroundTruth] = {}
