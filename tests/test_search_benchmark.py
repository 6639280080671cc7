"""Search on ground truth: a synthetic benchmark on a tiny space (63 distinct networks of 81 codes), the true
front, hv_ratio / IGD, regret, honest evaluation counts, and ``moga run`` without a supernet."""

from __future__ import annotations

import gzip
import hashlib
import itertools
import json

import numpy as np
import pandas as pd
import pytest

from lut.build import build_table
from lut.measure import FakeBackend
from moga.cli import main
from moga.config import SearchConfig
from moga.metrics import ArchMetrics
from moga.search import Search
from moga.truefront import GroundTruth, regret
from supernet import UserError, get_space
from supernet import benchmark as benchmark_module
from supernet.arch import Arch
from supernet.benchmark import BenchmarkInfo
from tests.fakes import FakeMetrics
from tests.tiny_experiment import write_experiment

# Not the shared tiny space: a benchmark space names its benchmark and lists its choices (3 per layer, skip among
# them), so that every one of its 81 codes has a table row the search can be scored against.
SPACE_YAML = """\
name: tinybench
benchmark: tinybench
stem: {channels: 8, kernel: 3, stride: 1, act: relu}
layers:
  out_channels: [8, 8, 16, 16]
  strides: [1, 1, 2, 1]
  acts: relu
choices: [skip, k3e3, k5e6]
head: {channels: 32, act: relu, fc_channels: 0, dropout: 0.0}
"""
SPACE_ARGS = {"num_classes": 4, "resolution": 32, "width_mult": 1.0, "variant": "imagenet"}


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """The ``tinybench`` benchmark registered for this module: a table for every code, equivalents sharing one record."""
    root = tmp_path_factory.mktemp("tinybench")
    (root / "space.yaml").write_text(SPACE_YAML)
    mp = pytest.MonkeyPatch()
    mp.setitem(benchmark_module.BENCHMARKS, "tinybench", None)  # a space may only name a registered benchmark
    space = get_space(str(root / "space.yaml"), **SPACE_ARGS)
    rng = np.random.default_rng(0)
    per_choice = rng.uniform(0, 8, (space.num_layers, 3))
    records = {}
    for genes in itertools.product(*(range(n) for n in space.n_choices)):
        canon = space.canonical(genes)
        if canon not in records:
            acc = 50 + sum(per_choice[i, g] for i, g in enumerate(canon)) + rng.normal(0, 2)
            seeds = [acc - 0.1, acc + 0.1]
            records[canon] = {"test_acc": seeds, "mean_acc": float(np.mean(seeds)), "std": 0.1, "params": 1, "flops": 1}
    table = {"".join(map(str, g)): records[space.canonical(g)] for g in itertools.product(*(range(n) for n in space.n_choices))}
    data = json.dumps(table).encode()
    with gzip.open(root / "tinybench.json.gz", "wb") as f:
        f.write(data)
    info = BenchmarkInfo(root / "tinybench.json.gz", str(root / "space.yaml"), 32, 4, 1.0, "imagenet", "synthetic", "synthetic",
                         hashlib.sha256(data).hexdigest())  # fmt: skip
    mp.setitem(benchmark_module.BENCHMARKS, "tinybench", info)
    benchmark_module._load.cache_clear()
    lut, _ = build_table(space, FakeBackend(), root / "cpu.json", device="fake", progress=False)
    yield {"root": root, "space": space, "table": lut, "n": len(records)}
    mp.undo()
    benchmark_module._load.cache_clear()


def metrics_for(bench, accuracy=None):
    truth = GroundTruth.for_space(bench["space"], required=True)
    return ArchMetrics(bench["space"], {"cpu": bench["table"]}, accuracy or truth.accuracy), truth


def run_search(bench, tmp_path, name="s", metrics=None, seed=0, **cfg):
    cfg = {"population": 8, "generations": 4, "accuracy": "benchmark"} | cfg
    metrics = metrics or metrics_for(bench)[0]
    search = Search(bench["space"], SearchConfig(**cfg), metrics, tmp_path / name, seed=seed, config_hash="h")
    return search, search.run(progress=False)


def brute_force_front(points: np.ndarray, feasible: np.ndarray) -> set[int]:
    """Indices of feasible rows no feasible row dominates (minimised columns)."""
    out = set()
    for i in np.flatnonzero(feasible):
        others = points[feasible]
        if not np.any(np.all(others <= points[i], axis=1) & np.any(others < points[i], axis=1)):
            out.add(int(i))
    return out


def test_search_reaches_the_true_front_when_the_budget_covers_the_space(bench, tmp_path):
    for algorithm, population, generations in (("random", 16, 8), ("nsga2", 20, 10)):
        _, result = run_search(bench, tmp_path, algorithm, algorithm=algorithm, population=population, generations=generations)
        gens = result.generations
        assert gens["hv_ratio"].iloc[-1] == pytest.approx(1.0, abs=1e-12) and gens["igd"].iloc[-1] == pytest.approx(0.0, abs=1e-12)
        assert gens["hv_ratio"].between(0, 1 + 1e-12).all() and gens["hv_ratio"].is_monotonic_increasing
        # the benchmark is the search's own accuracy: the search's hypervolume is in the same space
        true_hv = gens["hypervolume"].iloc[-1] / gens["hv_ratio"].iloc[-1]
        assert np.allclose(gens["hypervolume"], gens["hv_ratio"] * true_hv)
        assert (result.pareto["regret"] >= 0).all()
        front = pd.read_csv(tmp_path / algorithm / "true_front.csv")
        assert set(front["arch"]) <= set(result.pareto["arch"])


def test_equivalent_codes_are_one_evaluation(bench, tmp_path):
    metrics, _ = metrics_for(bench)
    asked: list[str] = []
    counting = type("Counting", (), {"tables": metrics.tables, "bounds": metrics.bounds, "costs": metrics.costs,
                                     "__call__": lambda self, archs: asked.extend(map(str, archs)) or metrics(archs)})()  # fmt: skip
    _, result = run_search(bench, tmp_path, metrics=counting, algorithm="random", population=16, generations=8)
    history = result.history
    space = bench["space"]
    assert len(asked) == len(set(asked)) == len(history) == bench["n"]  # every distinct network once, nothing more
    assert all(Arch.parse(space, a).canonical() == Arch.parse(space, a) for a in history["arch"])
    assert result.generations["total_evaluated"].iloc[-1] == bench["n"] == result.generations["evaluated"].sum()
    assert (history["accuracy"] == history["true_accuracy"]).all()


def test_true_front_csv_equals_a_brute_force_front(bench, tmp_path):
    space = bench["space"]
    metrics, truth = metrics_for(bench)
    networks = [Arch(space, g) for g in itertools.product(*(range(n) for n in space.n_choices)) if space.canonical(g) == g]
    m = metrics(networks)
    limit = float(np.median(m["latency:cpu"]))
    run_search(bench, tmp_path, constraints=[f"latency <= {limit}"])
    points = np.column_stack([-m["accuracy"], m["latency:cpu"], -m["params"]])
    expected = {str(networks[i]) for i in brute_force_front(points, m["latency:cpu"] <= limit)}
    front = pd.read_csv(tmp_path / "s" / "true_front.csv", dtype={"code": str})
    assert set(front["arch"]) == expected and len(front) == len(expected)
    assert (front["latency_ms"] <= limit).all() and front["latency_ms"].is_monotonic_increasing
    assert np.allclose(front["accuracy"], truth.accuracy([Arch.parse(space, a) for a in front["arch"]]))
    assert [Arch.parse(space, c) for c in front["code"]] == [Arch.parse(space, a) for a in front["arch"]]


def test_regret_by_hand():
    lat = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    acc = np.array([50.0, 70.0, 60.0, 80.0, 75.0])
    feasible = np.array([True, True, True, False, True])  # the 80 % network breaks a constraint
    got = regret(lat, acc, lat, acc, feasible)
    assert got.tolist() == [0.0, 0.0, 10.0, 0.0, 0.0]  # 60 % at 3 ms: 70 % was reachable at 2 ms
    # a model between grid points, one faster than every network, and a tie in latency
    assert regret(np.array([2.5, 0.5, 2.0]), np.array([65.0, 40.0, 70.0]), lat, acc, feasible).tolist() == [5.0, 0.0, 0.0]
    assert regret(np.array([4.0]), np.array([80.0]), lat, acc, feasible).tolist() == [0.0]  # itself infeasible: never negative


def test_regret_is_zero_on_the_true_front_and_exact_elsewhere(bench, tmp_path):
    space = bench["space"]
    metrics, truth = metrics_for(bench)
    two = [{"name": "accuracy", "weight": 0.5}, {"name": "latency", "weight": 0.5}]
    _, covered = run_search(bench, tmp_path, "covered", algorithm="random", population=16, generations=8, objectives=two)
    assert covered.generations["hv_ratio"].iloc[-1] == pytest.approx(1.0)
    true_front = pd.read_csv(tmp_path / "covered" / "true_front.csv")
    assert set(covered.pareto["arch"]) == set(true_front["arch"]) and (covered.pareto["regret"] == 0).all()
    # a noisy estimator (the supernet's stand-in) and a small budget: regret against a brute force over every network
    noisy = ArchMetrics(space, {"cpu": bench["table"]}, lambda a: truth.accuracy(a) + np.sin(np.arange(len(a)) * 7.0) * 5)
    _, result = run_search(bench, tmp_path, "noisy", metrics=noisy, accuracy="supernet", objectives=two, generations=2)
    networks = truth.networks
    lat, acc = metrics.costs(networks)["latency:cpu"], truth.accuracy(networks)
    for _, row in result.pareto.iterrows():
        arch = Arch.parse(space, row["arch"])
        own_lat, own_acc = metrics.costs([arch])["latency:cpu"][0], truth.accuracy([arch])[0]
        best = max(a for a, x in zip(acc, lat, strict=True) if x <= own_lat + 1e-12)
        assert row["true_accuracy"] == pytest.approx(own_acc) and row["regret"] == pytest.approx(best - own_acc)
    gens = result.generations
    assert {"hv_ratio", "igd"} <= set(gens) and gens["hv_ratio"].between(0, 1).all() and (gens["igd"] >= 0).all()


def test_benchmark_accuracy_on_a_space_without_one_is_a_clear_error(tmp_path):
    space = get_space("moga", num_classes=10, resolution=32, variant="cifar")
    with pytest.raises(UserError, match=r"search\.accuracy: benchmark needs a space with a benchmark table; space 'moga' has none"):
        Search(space, SearchConfig(accuracy="benchmark"), FakeMetrics(space), tmp_path / "s", seed=0)


def test_benchmark_accuracy_cli_error_before_anything_runs(tmp_path, capsys):
    exp = write_experiment(tmp_path, tmp_path / "run")
    assert main(["run", str(exp), "search.accuracy=benchmark", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "search.accuracy: benchmark needs a space with a benchmark table" in err and "Traceback" not in err
    assert not (tmp_path / "run" / "lut").exists()  # refused before measuring anything


def test_spaces_without_a_benchmark_get_no_new_columns(tmp_path):
    space = get_space("moga", num_classes=10, resolution=32, variant="cifar")
    Search(space, SearchConfig(population=8, generations=2), FakeMetrics(space), tmp_path / "s", seed=0).run(progress=False)
    new = {"true_accuracy", "regret", "hv_ratio", "igd"}
    for name in ("history.csv", "pareto.csv", "hypervolume.csv"):
        assert not new & set(pd.read_csv(tmp_path / "s" / name).columns), name
    assert not (tmp_path / "s" / "true_front.csv").exists()


@pytest.mark.slow
def test_resume_with_benchmark_accuracy_gives_the_same_search(bench, tmp_path):
    full = run_search(bench, tmp_path, "full", generations=5)[1]
    partial = run_search(bench, tmp_path, "part", generations=3)[0]
    resumed = Search(bench["space"], partial.cfg.model_copy(update={"generations": 5}), partial.metrics, tmp_path / "part", 0, "h")
    result = resumed.run(resume=True, progress=False)
    pd.testing.assert_frame_equal(result.pareto, full.pareto)
    cols = ["generation", "evaluated", "total_evaluated", "hypervolume", "hv_ratio", "igd"]
    pd.testing.assert_frame_equal(result.generations[cols], full.generations[cols])


def test_benchmark_run_skips_the_supernet_stage(bench, tmp_path, capsys):
    space = {"name": str(bench["root"] / "space.yaml"), **SPACE_ARGS}
    exp = write_experiment(tmp_path, tmp_path / "run", space=space, search={"population": 8, "generations": 3, "accuracy": "benchmark"})
    assert main(["run", str(exp), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "[supernet] not needed, skipped: search.accuracy is benchmark (accuracies from the tinybench table)" in out
    assert "ground truth: median regret" in out
    run = tmp_path / "run"
    assert not (run / "supernet").exists() and "supernet" not in json.loads((run / "stages.json").read_text())
    assert {"true_accuracy", "regret"} <= set(pd.read_csv(run / "search" / "pareto.csv").columns)
    assert (run / "search" / "true_front.csv").exists() and (run / "report.html").exists()
    # the search stage does not depend on the supernet section: changing it changes nothing
    assert main(["run", str(exp), "supernet.steps=99", "--no-progress"]) == 0
    assert "[search] done earlier with this config, skipped" in capsys.readouterr().out
    # ... but the accuracy source is part of the search's hash
    assert main(["run", str(exp), "search.accuracy=supernet", "--no-progress"]) == 2
    assert "search.accuracy" in capsys.readouterr().err
