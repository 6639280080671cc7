"""The search: weighted NSGA-II (pymoo) over a space's integer genome, or random search as a baseline.

The loop reads like the algorithm: ask pymoo for offspring, evaluate the new architectures (each
architecture once, batched), tell pymoo, reward the mutation controller, save the generation. The loop owns the
controller and updates it explicitly; the pymoo operators only read its policy (``moga.operators``). Random
search is a pymoo algorithm too (``RandomSearch``), driven by the same loop.

Resume without pickles: every completed generation saves ``state.json`` holding all evaluations so
far. ``--resume`` re-runs the (deterministic, seeded) loop from generation 1 answering evaluations from
that record, so it reaches exactly the state an uninterrupted run had, then continues. Replaying pymoo's
bookkeeping costs milliseconds per generation; evaluations are the expensive part and are never redone.

Ground truth (``moga.truefront``, where the definitions live): on a space with a benchmark table, whatever
``search.accuracy`` is, the search writes ``true_front.csv`` (the true Pareto front of its objectives over every
distinct network), a ``true_accuracy`` column in ``history.csv`` and ``pareto.csv``, ``regret`` in
``pareto.csv``, and per generation ``hv_ratio`` and ``igd`` of its front re-scored with true accuracies in
``hypervolume.csv``. Spaces without a benchmark get none of these.

``search.accuracy: benchmark`` scores accuracy with the table instead of a supernet, and the search then works
on networks, not codes: equivalent codes (``SearchSpace.canonical``) are one network with one record, keyed and
written by its canonical architecture, so ``history.csv`` has one row per distinct network and every count of
evaluations (``evaluated``, ``total_evaluated``) counts networks; NSGA-II's duplicate elimination and random
search's sampler reject an offspring equivalent to one already in the population / already drawn, and an
offspring equivalent to an earlier, archived network is answered from its record at no cost. The genomes the
operators see are left as they are (no repair to canonical form), so mutation and its controller behave as on
any space. With the supernet, equivalent codes are different paths through it with different estimates, so
they stay separate records.

The ``accuracy`` objective's values are written under what they are (``moga.objectives.ESTIMATES``): ``accuracy``
(top-1 %), or ``neg_loss`` when the supernet scores paths by minus their validation loss (``supernet.eval.score:
neg_loss``, read from the metrics' ``score``): the history, front, hypervolume normalisation
(``moga.objectives.estimate_bounds``) and ``pareto.png`` then use ``neg_loss`` and no column is called ``accuracy``;
``true_accuracy``, ``regret`` and the re-scored ``hv_ratio`` / ``igd`` stay true accuracies.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
from pymoo.algorithms.moo.nsga2 import NSGA2
from pymoo.core.algorithm import Algorithm
from pymoo.core.duplicate import DuplicateElimination
from pymoo.core.population import Population
from pymoo.core.problem import Problem
from pymoo.operators.survival.rank_and_crowding import RankAndCrowding
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting
from tqdm.auto import tqdm

from moga.config import SearchConfig
from moga.crowding import make_crowding_function, weighted_crowding_distance
from moga.objectives import Constraint, Objective, check_satisfiable, column, estimate_bounds, parse_search
from moga.operators import ArchSampling, GenomeDuplicateElimination, HybridMutation, LayerCrossover, MutationController, mutation_rewards
from moga.plots import line_plot, pairwise_plot, pareto_plot
from moga.truefront import GroundTruth, TrueFront, feasible_front, hypervolume, objective_matrix
from supernet.arch import Arch, has_codes
from supernet.errors import UserError
from supernet.io import atomic_write_text, read_json, write_json
from supernet.space import SearchSpace


class Metrics(Protocol):
    """What the search needs from an evaluator (real: supernet + tables; tests: a fake)."""

    tables: list[str]  # latency table names, the first is the primary device
    bounds: dict[str, tuple[float, float]]  # exact range of each metric over the space, where known
    # optional: ``score``, what the accuracy values are (``accuracy`` or ``neg_loss``, ``moga.objectives.ESTIMATES``),
    # the key ``__call__`` returns them under; default ``accuracy``

    def __call__(self, archs: list[Arch]) -> dict[str, np.ndarray]: ...

    # optional: ``costs(archs)``, every metric but accuracy (cheap). On a benchmarked space the true front is
    # enumerated with it; without it, only a search with ``accuracy: benchmark`` (whose ``__call__`` is cheap) gets one.


@dataclass
class SearchResult:
    history: pd.DataFrame
    pareto: pd.DataFrame
    generations: pd.DataFrame


def check_state(state: Any, path: Path, space: SearchSpace) -> None:
    """A ``UserError`` naming ``path`` and the part that is wrong unless ``state`` has the shape ``Search``
    writes: a config hash, a count of completed generations, their rows, and one record of numbers per
    architecture of ``space`` (every record with the same metrics)."""

    def bad(problem: str) -> UserError:
        return UserError(f"search state {path}: {problem}; delete it to search afresh")

    if not isinstance(state, dict):
        raise bad(f"expected an object, got {type(state).__name__}")
    kinds = {
        "config_hash": (str, "a string"),
        "completed": (int, "a whole number"),
        "generations": (list, "a list"),
        "records": (dict, "an object"),
    }
    for key, (kind, named) in kinds.items():
        if not isinstance(state.get(key), kind) or isinstance(state.get(key), bool):
            raise bad(f"{key!r} should be {named}, got {state.get(key)!r:.60}")
    if state["completed"] < 0 or len(state["generations"]) != state["completed"]:
        raise bad(f"'completed' is {state['completed']} but {len(state['generations'])} generation rows are recorded")
    if not all(isinstance(g, dict) for g in state["generations"]):
        raise bad("'generations' should hold one object per generation")
    metrics = None
    for arch, record in state["records"].items():
        if not isinstance(record, dict) or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in record.values()):
            raise bad(f"record {arch!r} should map metric names to numbers, got {record!r:.60}")
        if metrics is not None and set(record) != metrics:
            raise bad(f"record {arch!r} has metrics {sorted(record)}, the others {sorted(metrics)}")
        metrics = set(record)
        try:
            Arch.parse(space, arch)
        except UserError as exc:
            raise bad(f"record {exc}") from None


class EvaluationRecord:
    """Every evaluated architecture's metrics, keyed by architecture string, evaluated once.

    ``by_network``: keyed by the canonical architecture, so equivalent codes share one record (one evaluation).
    ``truth``: each record also gets the architecture's ``true_accuracy`` from the benchmark table.
    """

    def __init__(self, space: SearchSpace, metrics: Metrics, records: dict[str, dict[str, float]] | None = None,
                 truth: GroundTruth | None = None, by_network: bool = False):  # fmt: skip
        self.space, self.metrics, self.truth, self.by_network = space, metrics, truth, by_network
        self.records: dict[str, dict[str, float]] = dict(records or {})
        self.generation = 0
        self.new_evaluations = 0
        self.eval_seconds = 0.0
        if truth is not None:  # a state written before records carried it
            stale = [k for k, r in self.records.items() if "true_accuracy" not in r]
            for key, acc in zip(stale, truth.accuracy([Arch.parse(space, k) for k in stale]), strict=True):
                self.records[key] = self.records[key] | {"true_accuracy": float(acc)}

    def arch(self, genome: np.ndarray) -> Arch:
        arch = Arch.from_genome(self.space, genome)
        return arch.canonical() if self.by_network else arch

    def lookup(self, genomes: np.ndarray) -> dict[str, np.ndarray]:
        archs = [self.arch(g) for g in genomes]
        keys = [str(a) for a in archs]
        missing = {k: a for k, a in zip(keys, archs, strict=True) if k not in self.records}
        if missing:
            start = time.perf_counter()
            values = self.metrics(list(missing.values()))
            if self.truth is not None:
                values["true_accuracy"] = self.truth.accuracy(list(missing.values()))
            self.eval_seconds += time.perf_counter() - start
            self.new_evaluations += len(missing)
            for i, key in enumerate(missing):
                self.records[key] = {"generation": self.generation} | {m: float(v[i]) for m, v in values.items()}
        names = [n for n in self.records[keys[0]] if n != "generation"]
        return {n: np.array([self.records[k][n] for k in keys]) for n in names}


class ArchProblem(Problem):
    """pymoo's view: integer genomes in, minimised objectives and <= 0 constraints out."""

    def __init__(self, space: SearchSpace, objectives: list[Objective], constraints: list[Constraint], record: EvaluationRecord):
        n = np.array(space.n_choices)
        super().__init__(n_var=len(n), n_obj=len(objectives), n_ieq_constr=len(constraints), xl=np.zeros(len(n)), xu=n - 1, vtype=int)
        self.objectives, self.constraints, self.record = objectives, constraints, record

    def _evaluate(self, X: np.ndarray, out: dict, *args: object, **kwargs: object) -> None:
        m = self.record.lookup(np.asarray(X).astype(np.int64))
        out["F"] = np.column_stack([o.to_minimised(m[o.metric]) for o in self.objectives])
        if self.constraints:
            out["G"] = np.column_stack([c.violation(m[c.metric]) for c in self.constraints])


def _normaliser(objectives: list[Objective], bounds: dict[str, tuple[float, float]]) -> Callable[[np.ndarray], np.ndarray]:
    """Map minimised objectives to [0, 1] using the space's exact metric ranges (the estimate: ``estimate_bounds``)."""
    lo, hi = [], []
    for o in objectives:
        a, b = bounds.get(o.metric, (0.0, 100.0))
        lo.append(-b if o.maximize else a)
        hi.append(-a if o.maximize else b)
    lo_a, span = np.array(lo), np.maximum(np.array(hi) - np.array(lo), 1e-12)
    return lambda F: (F - lo_a) / span


class NetworkDuplicateElimination(DuplicateElimination):
    """Duplicate elimination on networks: genomes with the same canonical form are duplicates."""

    def __init__(self, space: SearchSpace):
        super().__init__()
        self.space = space

    def _key(self, x: np.ndarray) -> tuple[int, ...]:
        return self.space.canonical(tuple(int(v) for v in x))

    def _do(self, pop: object, other: object, is_duplicate: np.ndarray) -> np.ndarray:
        seen = set() if other is None else {self._key(x) for x in other.get("X")}  # type: ignore[attr-defined]
        for i, x in enumerate(pop.get("X")):  # type: ignore[attr-defined]
            k = self._key(x)
            if k in seen:
                is_duplicate[i] = True
            else:
                seen.add(k)
        return is_duplicate


def _build_algorithm(cfg: SearchConfig, space: SearchSpace, objectives: list[Objective], controller: MutationController,
                     by_network: bool = False) -> NSGA2:  # fmt: skip
    n = np.array(space.n_choices)
    weights = np.array([o.weight for o in objectives])
    survival = RankAndCrowding(crowding_func=make_crowding_function(weights)) if cfg.weighted_crowding else RankAndCrowding()
    return NSGA2(
        pop_size=cfg.population,
        sampling=ArchSampling(n, homogeneous=cfg.initial == "homogeneous"),
        crossover=LayerCrossover(cfg.crossover, cfg.crossover_prob),
        mutation=HybridMutation(n, controller, cfg.reinforced_ratio, cfg.mutation_prob),
        survival=survival,
        eliminate_duplicates=NetworkDuplicateElimination(space) if by_network else GenomeDuplicateElimination(),
    )


def _reinforce(controller: MutationController, parents: Population, offspring: Population, weights: np.ndarray) -> dict[str, float]:
    """Reward the evaluated ``offspring`` bred from the population ``parents``, train ``controller`` on those it
    proposed and return the count and mean reward of both sources (a generation row's columns)."""
    pre, X, F, reinforced = offspring.get("pre", "X", "F", "reinforced")
    rewards, reinforced = mutation_rewards(pre, F, *parents.get("X", "F"), weights), reinforced.astype(bool)
    controller.update(pre[reinforced], X[reinforced].astype(np.int64), rewards[reinforced])
    feedback: dict[str, float] = {}
    for name, mask in (("controller", reinforced), ("random", ~reinforced)):
        feedback |= {f"{name}_n": int(mask.sum()), f"{name}_mean_reward": float(rewards[mask].mean()) if mask.any() else float("nan")}
    return feedback


class RandomSearch(Algorithm):
    """Random search, the baseline, as a pymoo algorithm: each generation ``population`` genomes never drawn
    before (with ``by_network``: networks, so equivalent codes count as drawn), each gene drawn in turn from
    pymoo's generator; no selection, mating or survival. A generation is smaller when a tiny space runs out."""

    def __init__(self, space: SearchSpace, population: int, by_network: bool = False):
        super().__init__()
        self.space, self.population, self.by_network = space, population, by_network
        self.drawn: set[bytes] = set()

    def _initialize_infill(self) -> Population:
        return self._infill()

    def _infill(self) -> Population:
        batch: list[np.ndarray] = []
        for _ in range(self.population * 100):  # bounded: tiny spaces simply run out of new architectures
            if len(batch) == self.population:
                break
            g = np.array([self.random_state.integers(n) for n in self.space.n_choices])
            key = np.array(self.space.canonical(tuple(g.tolist()))).tobytes() if self.by_network else g.tobytes()
            if key not in self.drawn:
                self.drawn.add(key)
                batch.append(g)
        return Population.new("X", np.stack(batch)) if batch else Population.empty()

    def _advance(self, infills: Population | None = None, **kwargs: Any) -> None:
        self.pop = infills


class Search:
    """One search run writing into ``out_dir`` (history, front, plots, per-generation state)."""

    def __init__(
        self,
        space: SearchSpace,
        cfg: SearchConfig,
        metrics: Metrics,
        out_dir: str | Path,
        seed: int,
        config_hash: str = "",
        writer: bool = True,
        truth: GroundTruth | None = None,
    ):
        """``writer=False`` on torchrun ranks other than 0: they search in lockstep but write nothing. ``truth``:
        the space's benchmark (default: ``GroundTruth.for_space(space)``, required by ``accuracy: benchmark``)."""
        self.space, self.cfg, self.metrics, self.seed = space, cfg, metrics, seed
        self.out_dir, self.config_hash, self.writer = Path(out_dir), config_hash, writer
        others = getattr(metrics, "others", {})  # tables of another metric than latency (energy)
        score = getattr(metrics, "score", "accuracy")  # what the metrics' accuracy values are
        self.objectives, self.constraints = parse_search(cfg, metrics.tables, others, score)
        # the metric the accuracy objective's values are recorded and written as: accuracy or neg_loss
        self.estimate = "accuracy" if cfg.accuracy == "benchmark" else score
        self.truth = truth if truth is not None else GroundTruth.for_space(space, required=cfg.accuracy == "benchmark")
        self.by_network = cfg.accuracy == "benchmark"
        bounds = {self.estimate: estimate_bounds(self.estimate, space.num_classes)} | dict(metrics.bounds)
        # re-scored objectives read true accuracies where the estimate was (``objective_matrix``): the table's range
        true_bounds = bounds | ({self.estimate: self.truth.accuracy_range} if self.truth else {})
        if self.by_network:  # the search's own accuracies are the table's: their exact range is known
            bounds = true_bounds
        check_satisfiable(self.constraints, bounds)
        self.normalise = _normaliser(self.objectives, bounds)
        self.true_normalise = _normaliser(self.objectives, true_bounds)
        self._true_front: TrueFront | None = None

    # ------------------------------------------------------------------ state
    @property
    def state_path(self) -> Path:
        return self.out_dir / "state.json"

    def _load_state(self, resume: bool) -> dict:
        if not self.state_path.exists():
            return {"records": {}, "completed": 0}
        state = read_json(self.state_path, "search state")
        check_state(state, self.state_path, self.space)
        if state.get("config_hash") != self.config_hash:
            raise UserError(f"{self.state_path} belongs to a search with a different config; use another run_dir or remove {self.out_dir}")
        if not resume and state.get("completed", 0) < self.cfg.generations:
            raise UserError(f"{self.out_dir} holds an unfinished search (generation {state['completed']}); pass --resume to continue it")
        return state

    def _save_state(self, record: EvaluationRecord, completed: int, gens: list[dict], controller: MutationController | None) -> None:
        state = {"config_hash": self.config_hash, "seed": self.seed, "completed": completed, "generations": gens, "records": record.records}
        if controller is not None:
            state["controller"] = controller.state_dict()
        write_json(self.state_path, state)

    # ------------------------------------------------------------------ ground truth
    @property
    def true_front(self) -> TrueFront | None:
        """Every distinct network on this search's objectives and the true front (None without a benchmark)."""
        if self.truth is None:
            return None
        if self._true_front is None:
            costs = getattr(self.metrics, "costs", None) or (self.metrics if self.by_network else None)
            if costs is None:
                return None
            self._true_front = self.truth.front(self.objectives, self.constraints, costs, self.true_normalise)
        return self._true_front

    def _true_scores(self, record: EvaluationRecord, front: np.ndarray) -> dict[str, float]:
        """``hv_ratio`` and ``igd`` of the search's front re-scored with true accuracies (``moga.truefront``)."""
        truth = self.true_front
        if truth is None:
            return {}
        if len(front) == 0:
            return truth.scores(np.zeros((0, len(self.objectives))))
        records = list(record.records.values())
        rows = [records[i] for i in front]
        cols = {m: np.array([r[m] for r in rows]) for m in rows[0] if m != "generation"}
        F, cv = objective_matrix(cols, self.objectives, self.constraints, accuracy="true_accuracy")
        return truth.scores(self.true_normalise(F[feasible_front(F, cv)]))

    # ------------------------------------------------------------------ loop
    def run(self, resume: bool = False, progress: bool = True) -> SearchResult:
        state = self._load_state(resume)
        self._saved_generations: list[dict] = state.get("generations", [])
        truth = self.truth if self.true_front is not None else None
        record = EvaluationRecord(self.space, self.metrics, state["records"], truth, self.by_network)
        problem = ArchProblem(self.space, self.objectives, self.constraints, record)
        gens: list[dict] = []
        bar = tqdm(total=self.cfg.generations, desc="search", unit="gen", disable=not progress, dynamic_ncols=True)
        self._loop(problem, record, gens, state["completed"], bar)
        bar.close()
        return self._write_outputs(record, gens)

    def _algorithm(self) -> tuple[Algorithm, MutationController | None]:
        """The pymoo algorithm, and the mutation controller this search owns (None for random search)."""
        if self.cfg.algorithm == "random":
            return RandomSearch(self.space, self.cfg.population, self.by_network), None
        controller = MutationController(np.array(self.space.n_choices), lr=self.cfg.controller_lr)
        return _build_algorithm(self.cfg, self.space, self.objectives, controller, self.by_network), controller

    def _loop(self, problem: ArchProblem, record: EvaluationRecord, gens: list[dict], completed: int, bar: tqdm) -> None:
        """pymoo's ask/tell. With NSGA-II the loop owns the mutation controller (the operators only read its
        policy) and, once a mated generation's offspring are evaluated, trains it on those it proposed."""
        algorithm, controller = self._algorithm()
        weights = np.array([o.weight for o in self.objectives])
        algorithm.setup(problem, termination=("n_gen", self.cfg.generations), seed=self.seed, verbose=False)
        while algorithm.has_next():
            start, before = time.perf_counter(), (record.eval_seconds, record.new_evaluations)
            record.generation = algorithm.n_gen or 1
            mated, parents = algorithm.is_initialized, algorithm.pop  # the first ask samples the initial population
            offspring = algorithm.ask()
            algorithm.evaluator.eval(problem, offspring)
            algorithm.tell(infills=offspring)
            feedback = _reinforce(controller, parents, offspring, weights) if controller is not None and mated else {}
            self._end_generation(record, gens, start, before, feedback, completed, controller, bar)

    def _end_generation(self, record: EvaluationRecord, gens: list[dict], start: float, before: tuple[float, int], feedback: dict,
                        completed: int, controller: MutationController | None, bar: tqdm) -> None:  # fmt: skip
        if len(gens) < min(completed, len(self._saved_generations)):
            # a replayed generation: its row as recorded when it ran (the record now also holds later generations)
            gens.append(self._saved_generations[len(gens)] | {"replayed": True})
        else:
            F, cv = self._objective_matrix(record)
            front = feasible_front(F, cv)
            hv = hypervolume(self.normalise(F[front]))
            eval_s = record.eval_seconds - before[0]
            total_s = time.perf_counter() - start
            gens.append(
                {"generation": len(gens) + 1, "evaluated": record.new_evaluations - before[1], "total_evaluated": len(record.records),
                 "eval_s": eval_s, "generation_s": total_s, "bookkeeping_s": max(total_s - eval_s, 0.0), "hypervolume": hv,
                 "front_size": len(front), "replayed": len(gens) < completed} | self._true_scores(record, front) | feedback
            )  # fmt: skip
        hv, front_size = gens[-1]["hypervolume"], gens[-1]["front_size"]
        if len(gens) > completed and self.writer:
            self._save_state(record, len(gens), gens, controller)
        bar.set_postfix(evals=len(record.records), front=front_size, hv=f"{hv:.4f}")
        bar.update(1)

    def _objective_matrix(self, record: EvaluationRecord) -> tuple[np.ndarray, np.ndarray]:
        rows = list(record.records.values())
        metrics = {o.metric for o in self.objectives} | {c.metric for c in self.constraints}
        return objective_matrix({m: np.array([r[m] for r in rows]) for m in metrics}, self.objectives, self.constraints)

    # ------------------------------------------------------------------ outputs
    def _write_outputs(self, record: EvaluationRecord, gens: list[dict]) -> SearchResult:
        tables = self.metrics.tables
        F, cv = self._objective_matrix(record)
        history = pd.DataFrame([{"arch": k} | v for k, v in record.records.items()])
        history = history.rename(columns={m: column(m, tables) for m in history.columns if m.startswith("latency:")})
        history["generation"] = history["generation"].astype(int)
        history["cv"], history["feasible"] = cv, cv <= 0
        history["rank"], history["crowding"] = self._ranks(F, cv)
        first = ["generation", "arch"]
        history = history[first + [c for c in history.columns if c not in first]]
        front = history[history["rank"] == 0].copy()
        sort_col = column(f"latency:{tables[0]}", tables) if tables else self.objectives[0].metric
        front = front.sort_values([sort_col, "arch"]).reset_index(drop=True)
        front.insert(0, "id", range(len(front)))
        front = front.drop(columns=["cv"])
        truth = self.true_front
        if truth is not None and tables and self.truth is not None:
            archs = [Arch.parse(self.space, a) for a in front["arch"]]
            front.insert(int(front.columns.get_loc("true_accuracy")) + 1, "regret", self.truth.regret(archs, f"latency:{tables[0]}", truth))
        generations = pd.DataFrame(gens)
        if self.writer:
            atomic_write_text(self.out_dir / "history.csv", history.to_csv(index=False))
            atomic_write_text(self.out_dir / "pareto.csv", front.to_csv(index=False))
            atomic_write_text(self.out_dir / "hypervolume.csv", generations.to_csv(index=False))
            if truth is not None:
                atomic_write_text(self.out_dir / "true_front.csv", truth.table(tables, has_codes(self.space)).to_csv(index=False))
            self._plot(history, front, generations)
        if front.empty:
            closest = history.sort_values("cv").iloc[0]
            raise UserError(
                f"no evaluated architecture meets the constraints {', '.join(c.text for c in self.constraints)} "
                f"(closest: {closest['arch']} with total violation {closest['cv']:.4g}); history.csv is in {self.out_dir}"
            )
        return SearchResult(history, front, generations)

    def _ranks(self, F: np.ndarray, cv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Non-dominated rank among feasible architectures (-1 = infeasible) and crowding within the front."""
        rank, crowd = np.full(len(F), -1), np.zeros(len(F))
        ok = np.flatnonzero(cv <= 0)
        weights = np.array([o.weight for o in self.objectives]) if self.cfg.weighted_crowding else np.ones(len(self.objectives))
        for r, idx in enumerate(NonDominatedSorting().do(F[ok]) if len(ok) else []):
            rank[ok[idx]] = r
            crowd[ok[idx]] = weighted_crowding_distance(F[ok[idx]], weights) if len(idx) > 2 else np.inf
        return rank, crowd

    def _plot(self, history: pd.DataFrame, front: pd.DataFrame, generations: pd.DataFrame) -> None:
        cols = [column(o.metric, self.metrics.tables) for o in self.objectives]
        x = next((c for c in cols if c.startswith("latency_ms")), "macs")
        if self.estimate in history and x in history:
            pareto_plot(history, front, x, self.estimate, self.out_dir / "pareto.png")
        if len(cols) >= 2:
            pairwise_plot(history, front, cols, self.out_dir / "pareto_pairs.png")
        ys = ["hypervolume", "front_size"] + (["hv_ratio"] if "hv_ratio" in generations else [])
        line_plot(generations, "generation", ys, self.out_dir / "hypervolume.png", "search progress")
