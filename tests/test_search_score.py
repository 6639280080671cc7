"""A search whose supernet scores paths by minus their validation loss (``supernet.eval.score: neg_loss``) says so:
its estimate is the ``neg_loss`` column (never ``accuracy``) of the history, the front, ``moga front`` and the report,
normalised by ``[-2 ln C, 0]``; an accuracy constraint on it is refused; the default search is unchanged."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from moga.cli import main
from moga.config import SearchConfig
from moga.front import annotate, best_under, filter_front, format_front, knee_index, read_front, score_column
from moga.metrics import ArchMetrics, score_of, shared_across_ranks
from moga.objectives import estimate_bounds, parse_search
from moga.report_results import pick_roles, results
from moga.search import Search
from moga.truefront import GroundTruth, hypervolume
from supernet import UserError, get_space
from supernet.arch import Arch
from supernet.config import EvalConfig
from supernet.estimate import Estimator
from supernet.io import read_json
from tests.fakes import FakeMetrics
from tests.test_search_benchmark import bench  # noqa: F401  (the tinybench fixture)

SPACE = get_space("moga", num_classes=10, resolution=32, variant="cifar")


def neg_loss_of(accuracy: np.ndarray) -> np.ndarray:
    """A loss-like stand-in: FakeMetrics' accuracies (about 20..99 %) as values in about -1.7 .. -0.9."""
    return accuracy / 100.0 - 1.9


class NegLossMetrics(FakeMetrics):
    """FakeMetrics whose estimate is a neg loss, as ``ArchMetrics`` of a ``score: neg_loss`` estimator reports it."""

    score = "neg_loss"

    def __call__(self, archs):
        out = super().__call__(archs)
        out["neg_loss"] = neg_loss_of(out.pop("accuracy"))
        return out


def run(tmp_path, metrics, name="search", seed=0, **overrides):
    cfg = SearchConfig(population=16, generations=4, **overrides)
    return Search(SPACE, cfg, metrics, tmp_path / name, seed=seed, config_hash="h").run(progress=False)


def test_a_neg_loss_search_writes_neg_loss_and_no_accuracy(tmp_path):
    result = run(tmp_path, NegLossMetrics(SPACE))
    out = tmp_path / "search"
    history, front = pd.read_csv(out / "history.csv"), pd.read_csv(out / "pareto.csv")
    for table in (history, front, result.history, result.pareto):
        assert "neg_loss" in table and "accuracy" not in table and "true_accuracy" not in table
    assert history["neg_loss"].between(-2.0, -0.8).all()
    assert all("neg_loss" in r and "accuracy" not in r for r in read_json(out / "state.json")["records"].values())
    assert (out / "pareto.png").exists()
    # non-dominated on (neg_loss max, latency min, params max)
    F = np.column_stack([-front["neg_loss"], front["latency_ms"], -front["params"]])
    for i in range(len(F)):
        assert not np.any(np.all(F[i] >= F, axis=1) & np.any(F[i] > F, axis=1))
    # the hypervolume normalises the neg loss by [-2 ln 10, 0] (and the others by their exact ranges)
    lo, hi = estimate_bounds("neg_loss", 10)
    assert (lo, hi) == (-2 * math.log(10), 0.0)
    (lat_lo, lat_hi), (p_lo, p_hi) = NegLossMetrics(SPACE).bounds["latency:cpu"], NegLossMetrics(SPACE).bounds["params"]
    points = np.column_stack(
        [
            (-front["neg_loss"] + hi) / (hi - lo),
            (front["latency_ms"] - lat_lo) / (lat_hi - lat_lo),
            (p_hi - front["params"]) / (p_hi - p_lo),
        ]
    )
    assert result.generations["hypervolume"].iloc[-1] == pytest.approx(hypervolume(points), rel=1e-9)


def test_only_the_name_changes_for_the_same_ranking(tmp_path):
    """neg_loss is an increasing affine map of the fake accuracy: dominance and (range-normalised) crowding are the
    same, so the search evaluates the same architectures and finds the same front."""
    acc = run(tmp_path, FakeMetrics(SPACE), "acc")
    loss = run(tmp_path, NegLossMetrics(SPACE), "loss")
    assert list(loss.history["arch"]) == list(acc.history["arch"])
    assert list(loss.pareto["arch"]) == list(acc.pareto["arch"])
    assert np.allclose(loss.pareto["neg_loss"], neg_loss_of(acc.pareto["accuracy"]))


def toy_neg_loss_front() -> pd.DataFrame:
    # tests/test_front.py's toy front with its accuracy as a neg loss: the knee is still at latency 3
    lat = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    neg_loss = [-1.60, -1.35, -1.20, -1.17, -1.15, -1.14]
    return pd.DataFrame({"id": range(6), "arch": [f"a{i}" for i in range(6)], "neg_loss": neg_loss, "latency_ms": lat,
                         "params": [4e6 + i * 1e5 for i in range(6)], "macs": [2e8] * 6})  # fmt: skip


def test_moga_front_picks_by_neg_loss():
    front = toy_neg_loss_front()
    assert score_column(front) == "neg_loss"
    assert knee_index(front, "latency_ms") == 2
    assert best_under(front, "latency_ms", [2.5, 4.0]) == {2.5: 1, 4.0: 3}
    marked, _ = annotate(front, [2.5, 4.0])
    assert list(marked["mark"]) == ["", "best<=2.5", "knee", "best<=4", "", ""]
    shown = filter_front(front, max_latency=5.0, min_accuracy=None, sort="neg_loss")
    assert list(shown["id"]) == [4, 3, 2, 1, 0]  # larger (less loss) first
    text = format_front(annotate(shown)[0])
    assert "neg_loss" in text.splitlines()[0] and "accuracy" not in text and "-1.1500" in text
    with pytest.raises(UserError, match=r"no accuracy column \(its search scored networks by neg_loss, minus the mean validation"):
        filter_front(front, None, 50.0, None)


def test_moga_front_on_a_neg_loss_run(tmp_path, capsys):
    run(tmp_path, NegLossMetrics(SPACE))
    front = read_front(tmp_path)
    assert "neg_loss" in front and "accuracy" not in front
    assert main(["front", str(tmp_path), "--sort", "neg_loss", "--budget", str(float(front["latency_ms"].median()))]) == 0
    printed = capsys.readouterr().out
    assert "knee" in printed and "neg_loss" in printed.splitlines()[0]
    assert main(["front", str(tmp_path), "--min-accuracy", "40"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--min-accuracy cannot apply" in err and "neg_loss" in err


def test_the_report_names_the_estimate(tmp_path):
    run(tmp_path / "run", NegLossMetrics(SPACE))
    res = results(tmp_path / "run", {})
    assert res is not None
    for table in (res.picks, res.front):
        assert "−val loss (supernet)" in table.columns and not any("accura" in c for c in table.columns)
    roles = " · ".join(row[0] for row in res.picks.rows)
    assert "lowest-loss" in roles and "accurate" not in roles and "accura" not in res.pick_note + " ".join(res.extra)
    front = toy_neg_loss_front()
    assert pick_roles(front, "latency_ms")[5] == ["lowest-loss"]  # the slowest: no budget reaches it


def test_an_accuracy_constraint_on_a_neg_loss_estimate_is_refused(tmp_path):
    with pytest.raises(UserError, match=r"constraint 'accuracy >= 40': the search's accuracy estimate is neg_loss") as err:
        Search(SPACE, SearchConfig(constraints=["accuracy >= 40"]), NegLossMetrics(SPACE), tmp_path / "s", seed=0)
    assert "\n" not in str(err.value) and "supernet.eval.score: neg_loss" in str(err.value)
    # what `moga run` checks before training a supernet: the config's score
    with pytest.raises(UserError, match="not an accuracy in %"):
        parse_search(SearchConfig(constraints=["accuracy >= 40"]), ["cpu"], None, "neg_loss")
    # other constraints stay, the objective keeps its config name and becomes the neg_loss metric, maximised
    objectives, constraints = parse_search(SearchConfig(constraints=["latency <= 9"]), ["cpu"], None, "neg_loss")
    assert objectives[0].metric == "neg_loss" and objectives[0].maximize and constraints[0].metric == "latency:cpu"
    # with search.accuracy: benchmark the values are the table's accuracies, whatever the supernet's score
    bench_cfg = SearchConfig(accuracy="benchmark", constraints=["accuracy >= 40"])
    assert parse_search(bench_cfg, ["cpu"], None, "neg_loss")[1][0].metric == "accuracy"
    with pytest.raises(UserError, match="unknown metric 'neg_loss'"):  # one name in configs: accuracy
        parse_search(SearchConfig(constraints=["neg_loss >= -1"]), ["cpu"], None, "neg_loss")


def test_arch_metrics_learns_the_score_from_the_estimator():
    estimator = Estimator(None, EvalConfig(score="neg_loss"))
    assert score_of(estimator) == "neg_loss" and score_of(shared_across_ranks(estimator)) == "neg_loss"
    assert score_of(shared_across_ranks(Estimator(None, EvalConfig()))) == "accuracy"
    assert score_of(None) == score_of(lambda archs: []) == "accuracy"

    def fake_neg_loss(archs):
        return [-1.0 - 0.01 * i for i in range(len(archs))]

    fake_neg_loss.score = "neg_loss"
    metrics = ArchMetrics(SPACE, {}, shared_across_ranks(fake_neg_loss))
    assert metrics.score == "neg_loss" and metrics.bounds["neg_loss"] == (-2 * math.log(10), 0.0) and "accuracy" not in metrics.bounds
    rng = np.random.default_rng(0)
    archs = [Arch.from_genome(SPACE, [int(rng.integers(n)) for n in SPACE.n_choices]) for _ in range(3)]
    values = metrics(archs)
    assert "neg_loss" in values and "accuracy" not in values and values["neg_loss"][0] == -1.0
    default = ArchMetrics(SPACE, {}, lambda archs: [50.0] * len(archs))
    assert default.score == "accuracy" and default.bounds["accuracy"] == (0.0, 100.0) and "accuracy" in default(archs)


def test_default_output_columns_are_unchanged(tmp_path):
    run(tmp_path, FakeMetrics(SPACE))
    history, front = pd.read_csv(tmp_path / "search" / "history.csv"), pd.read_csv(tmp_path / "search" / "pareto.csv")
    metrics = ["accuracy", "latency_ms", "params", "macs"]
    assert list(history.columns) == ["generation", "arch", *metrics, "cv", "feasible", "rank", "crowding"]
    assert list(front.columns) == ["id", "generation", "arch", *metrics, "feasible", "rank", "crowding"]
    assert score_column(front) == "accuracy"


def test_a_neg_loss_search_on_a_benchmark_keeps_true_accuracies(bench, tmp_path):  # noqa: F811
    """On a benchmarked space the ground truth stays true accuracy: ``true_accuracy``, ``regret``, ``hv_ratio``,
    ``true_front.csv``; the re-scored front replaces the neg loss by the true accuracy."""
    space = bench["space"]
    truth = GroundTruth.for_space(space, required=True)

    def estimate(archs):  # increasing in the true accuracy: once every code is seen the front is the true one
        return truth.accuracy(archs) / 100.0 - 1.5

    metrics = ArchMetrics(space, {"cpu": bench["table"]}, estimate, score="neg_loss")
    cfg = SearchConfig(accuracy="supernet", algorithm="random", population=16, generations=8)
    result = Search(space, cfg, metrics, tmp_path / "s", seed=0, config_hash="h").run(progress=False)
    front = pd.read_csv(tmp_path / "s" / "pareto.csv")
    assert {"neg_loss", "true_accuracy", "regret"} <= set(front) and "accuracy" not in front
    assert np.allclose(front["neg_loss"], front["true_accuracy"] / 100.0 - 1.5) and (front["regret"] >= 0).all()
    gens = result.generations
    assert gens["hv_ratio"].between(0, 1 + 1e-12).all() and gens["hv_ratio"].iloc[-1] == pytest.approx(1.0, abs=1e-12)
    true_front = pd.read_csv(tmp_path / "s" / "true_front.csv")
    assert "accuracy" in true_front and true_front["accuracy"].between(*truth.accuracy_range).all()


def test_a_proxy_supernets_front_lists_the_deployed_networks_costs() -> None:
    """Trained at a quarter width and 16x16, searched for the full 32x32 network: params and multiply-adds are the
    full network's (what ``lut.*`` declares and a user retrains), not the proxy's."""
    from supernet.model import MobileNet, count_population

    proxy = get_space("nasbench_macro", num_classes=10, resolution=16, width_mult=0.25)
    full = get_space("nasbench_macro", num_classes=10, resolution=32, width_mult=1.0)
    archs = [Arch(proxy, (0, 1, 2, 1, 0, 2, 1, 2)), Arch(proxy, (2,) * 8)]
    costs = ArchMetrics(proxy, {}, None, latency_space=full).costs(archs)
    genomes = np.stack([a.genome for a in archs])
    assert costs["params"].tolist() == count_population(full, genomes)[0].tolist()
    assert costs["macs"].tolist() == count_population(full, genomes)[1].tolist()
    built = [sum(p.numel() for p in MobileNet(Arch(full, a.genes)).parameters()) for a in archs]
    assert costs["params"].tolist() == built  # what the user retrains
    assert (costs["params"] > 4 * count_population(proxy, genomes)[0]).all()  # the proxy's are far smaller
