"""The real evaluator the search asks: supernet accuracy, table latencies, parameter and MAC counts.

Latency, parameters and multiply-adds are additive over layers, so they come from per-layer arrays
(a gather and a sum per architecture) and their exact ranges over the space are known, which lets the
search refuse impossible constraints up front. Accuracy is the expensive part: it is asked only for
architectures not seen before, batched, and shared across torchrun ranks. With ``search.accuracy: benchmark``
it is a table lookup (``moga.truefront.GroundTruth.accuracy``) and nothing is expensive.

The supernet's estimate is written under its score (``supernet.eval.score``): ``accuracy`` (top-1 %) or
``neg_loss`` (minus the mean validation cross-entropy), never as ``accuracy`` when it is no accuracy
(``moga.objectives`` resolves the config's ``accuracy`` objective to the same name).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from lut.table import LatencyTable
from moga.objectives import ESTIMATES, estimate_bounds
from supernet.arch import Arch
from supernet.model import cost_tables
from supernet.space import SearchSpace

AccuracyFn = Callable[[Sequence[Arch]], Sequence[float]]


def score_of(accuracy: AccuracyFn | None) -> str:
    """What ``accuracy`` returns, one of ``moga.objectives.ESTIMATES``: its ``score`` attribute (``shared_across_ranks``
    carries it over), else its ``cfg.score`` (``supernet.estimate.Estimator``: ``supernet.eval.score``), else
    ``accuracy`` (a benchmark table's lookup, a plain function)."""
    score = getattr(accuracy, "score", None) or getattr(getattr(accuracy, "cfg", None), "score", None) or "accuracy"
    if score not in ESTIMATES:
        raise ValueError(f"unknown score {score!r}: use one of {', '.join(ESTIMATES)}")
    return str(score)


def _range(fixed: float, per_layer: Sequence[np.ndarray]) -> tuple[float, float]:
    return float(fixed + sum(a.min() for a in per_layer)), float(fixed + sum(a.max() for a in per_layer))


class ArchMetrics:
    def __init__(
        self,
        space: SearchSpace,
        tables: dict[str, LatencyTable],
        accuracy: AccuracyFn | None,
        latency_space: SearchSpace | None = None,
        score: str | None = None,
    ):
        """``latency_space``: the network that is deployed (``Experiment.lut_space``: ``lut.*`` resolution, head and
        width; default ``space``); latency, params and multiply-adds all describe it, so a proxy supernet's front
        lists the full network's costs.
        A table whose header names another metric (an energy table) gives ``<metric>:<table>``: ``self.tables`` lists
        the latency tables, ``self.others`` maps the rest to their metric. ``score``: what ``accuracy`` returns and
        the metric it is written as (default ``score_of(accuracy)``)."""
        self.space, self.accuracy = space, accuracy
        self.score = score or score_of(accuracy)
        metric = {name: str(t.header.get("metric", "latency")) for name, t in tables.items()}
        self.tables = [name for name in tables if metric[name] == "latency"]
        self.others = {name: m for name, m in metric.items() if m != "latency"}
        self.names = {name: f"{m}:{name}" for name, m in metric.items()}
        lat_space = latency_space or space
        self.predictors = {name: t.predictor(lat_space) for name, t in tables.items()}
        fp, fm, self.params, self.macs = cost_tables(lat_space)
        self.fixed = (fp, fm)
        self.bounds = {
            "params": _range(fp, self.params),
            "macs": _range(fm, self.macs),
            self.score: estimate_bounds(self.score, space.num_classes),
        }
        for name, p in self.predictors.items():
            lo, hi = _range(p.fixed_ms, p.layer_ms)
            self.bounds[self.names[name]] = tuple(sorted(np.asarray(p.calibration.apply(np.array([lo, hi])), float).tolist()))

    def __call__(self, archs: list[Arch]) -> dict[str, np.ndarray]:
        out = self.costs(archs)
        if self.accuracy is not None:
            out[self.score] = np.asarray(self.accuracy(archs), dtype=float)
        return out

    def costs(self, archs: list[Arch]) -> dict[str, np.ndarray]:
        """Every metric but the accuracy estimate: cheap, so a benchmarked space's true front enumerates all its networks."""
        g = np.stack([a.genome for a in archs])
        layers = range(g.shape[1])
        out = {
            "params": self.fixed[0] + sum(self.params[i][g[:, i]] for i in layers),
            "macs": self.fixed[1] + sum(self.macs[i][g[:, i]] for i in layers),
        }
        for name, p in self.predictors.items():
            out[self.names[name]] = p.predict_genomes(g)
        return out


def shared_across_ranks(accuracy: AccuracyFn) -> AccuracyFn:
    """Under torchrun, rank r evaluates architectures r, r+W, ...; results are gathered on every rank. The wrapper
    keeps ``accuracy``'s ``score`` (``score_of``), so ``ArchMetrics`` names its values right."""
    import torch.distributed as dist

    def evaluate(archs: Sequence[Arch]) -> list[float]:
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return list(accuracy(archs))
        rank, world = dist.get_rank(), dist.get_world_size()
        mine = list(accuracy(list(archs)[rank::world]))
        gathered: list[list[float] | None] = [None] * world
        dist.all_gather_object(gathered, mine)
        result = [0.0] * len(archs)
        for r, values in enumerate(gathered):
            result[r::world] = values or []
        return result

    evaluate.score = score_of(accuracy)  # type: ignore[attr-defined]
    return evaluate
