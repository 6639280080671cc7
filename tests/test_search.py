"""Weighted NSGA-II search with a fake evaluator: outputs, determinism, resume, constraints."""

import numpy as np
import pandas as pd
import pytest

from moga.config import SearchConfig
from moga.operators import MutationController
from moga.search import Search
from supernet import UserError, get_space
from supernet.io import read_json
from tests.fakes import FakeMetrics

SPACE = get_space("moga", num_classes=10, resolution=32, variant="cifar")


def make_search(tmp_path, name="s", seed=0, **overrides):
    cfg = SearchConfig(population=16, generations=5, **overrides)
    return Search(SPACE, cfg, FakeMetrics(SPACE), tmp_path / name, seed=seed, config_hash="h")


def test_outputs(tmp_path):
    result = make_search(tmp_path).run(progress=False)
    out = tmp_path / "s"
    for name in ("history.csv", "pareto.csv", "hypervolume.csv", "pareto.png", "pareto_pairs.png", "hypervolume.png", "state.json"):
        assert (out / name).exists(), name
    history, front = pd.read_csv(out / "history.csv"), pd.read_csv(out / "pareto.csv")
    assert history["arch"].is_unique and len(history) == result.history.shape[0]
    assert list(front.columns[:3]) == ["id", "generation", "arch"] and list(front["id"]) == list(range(len(front)))
    assert {"accuracy", "latency_ms", "params", "macs", "rank", "crowding", "generation", "feasible"} <= set(front.columns)
    assert front["latency_ms"].is_monotonic_increasing and (front["rank"] == 0).all()
    # the front is non-dominated: no row beats another on all three objectives
    F = np.column_stack([-front["accuracy"], front["latency_ms"], -front["params"]])
    for i in range(len(F)):
        assert not np.any(np.all(F[i] >= F, axis=1) & np.any(F[i] > F, axis=1))
    hv = pd.read_csv(out / "hypervolume.csv")["hypervolume"]
    assert len(hv) == 5 and hv.is_monotonic_increasing and hv.iloc[-1] > 0


def test_same_seed_same_front_different_seed_differs(tmp_path):
    a = make_search(tmp_path, "a", seed=1).run(progress=False).pareto
    b = make_search(tmp_path, "b", seed=1).run(progress=False).pareto
    c = make_search(tmp_path, "c", seed=2).run(progress=False).pareto
    pd.testing.assert_frame_equal(a, b)
    assert set(a["arch"]) != set(c["arch"])


def test_each_architecture_evaluated_once(tmp_path):
    search = make_search(tmp_path)
    result = search.run(progress=False)
    assert search.metrics.calls == len(result.history)


@pytest.mark.slow
def test_resume_after_kill_gives_same_front(tmp_path):
    full = make_search(tmp_path, "full").run(progress=False).pareto
    # simulate a run killed after generation 3: a 3-generation state in the directory
    partial = make_search(tmp_path, "part")
    partial.cfg = partial.cfg.model_copy(update={"generations": 3})
    partial.run(progress=False)
    resumed = make_search(tmp_path, "part")
    with pytest.raises(UserError, match="--resume"):
        resumed.run(progress=False)
    result = resumed.run(resume=True, progress=False)
    pd.testing.assert_frame_equal(result.pareto, full)
    assert resumed.metrics.calls == len(result.history) - len(pd.read_csv(tmp_path / "full" / "history.csv").query("generation <= 3"))


def test_equal_weights_reproduce_plain_nsga2(tmp_path):
    equal = [{"name": n, "weight": 1.0} for n in ("accuracy", "latency", "params")]
    weighted = make_search(tmp_path, "w", objectives=equal, weighted_crowding=True).run(progress=False)
    plain = make_search(tmp_path, "p", objectives=equal, weighted_crowding=False).run(progress=False)
    pd.testing.assert_frame_equal(weighted.history, plain.history)


def test_unsatisfiable_constraint_is_refused_up_front(tmp_path):
    with pytest.raises(UserError, match="cannot be met"):
        make_search(tmp_path, constraints=["latency <= 0.01"])


def test_constraints_filter_the_front(tmp_path):
    metrics = FakeMetrics(SPACE)
    lo, hi = metrics.bounds["latency:cpu"]
    budget = lo + 0.3 * (hi - lo)
    result = make_search(tmp_path, constraints=[f"latency <= {budget}"]).run(progress=False)
    assert (result.pareto["latency_ms"] <= budget).all()
    assert (~result.history["feasible"]).any()


def test_random_search_and_two_objectives(tmp_path):
    r = make_search(tmp_path, "r", algorithm="random").run(progress=False)
    assert len(r.history) == 16 * 5
    two = make_search(tmp_path, "two", objectives=[{"name": "accuracy", "weight": 1}, {"name": "latency", "weight": 1}])
    res = two.run(progress=False)
    assert res.pareto["accuracy"].is_monotonic_increasing  # on a 2-D front sorted by latency


def test_homogeneous_initial_population(tmp_path):
    """``search.initial=homogeneous`` (default): generation 1 holds all twelve one-choice networks; ``random`` does not."""
    result = make_search(tmp_path, "h").run(progress=False)  # the default
    first = set(result.history.query("generation == 1")["arch"])
    tokens = [c.token for c in SPACE.layers[0].choices]
    assert {"-".join([t] * SPACE.num_layers) for t in tokens} <= first and len(first) == 16
    plain = make_search(tmp_path, "p", initial="random").run(progress=False)
    assert not {"-".join([t] * SPACE.num_layers) for t in tokens} & set(plain.history.query("generation == 1")["arch"])


@pytest.mark.parametrize(
    ("objectives", "message"),
    [
        ([{"name": "acuracy"}], "unknown metric 'acuracy'"),
        ([{"name": "latency:phone"}], "unknown latency table 'phone'"),
        ([{"name": "accuracy", "weight": 1}, {"name": "accuracy", "weight": 1}], "listed twice"),
    ],
)
def test_bad_objectives(tmp_path, objectives, message):
    with pytest.raises(UserError, match=message):
        make_search(tmp_path, objectives=objectives)


def test_the_loop_trains_the_controller_on_its_offspring(tmp_path):
    """Generation 1 is sampled, not mutated; every later one rewards each offspring by its source and trains the
    controller once on those it proposed (``reinforced_ratio`` of them), the policy saved with the state."""
    result = make_search(tmp_path, reinforced_ratio=0.5).run(progress=False)
    gens = result.generations
    assert gens[["controller_n", "random_n"]].iloc[0].isna().all()
    later = gens.iloc[1:]
    assert ((later["controller_n"] + later["random_n"]) == 16).all() and (later["controller_n"] > 0).all()
    assert later[["controller_mean_reward", "random_mean_reward"]].apply(lambda r: r.between(-0.5, 1.0)).all().all()
    controller = read_json(tmp_path / "s" / "state.json", "state")["controller"]
    assert controller["n_updates"] == 4 and np.any(np.array(controller["logits"]) != MutationController(np.array(SPACE.n_choices)).logits)
    never = make_search(tmp_path, "never", reinforced_ratio=0.0).run(progress=False).generations
    assert (never["controller_n"].iloc[1:] == 0).all() and read_json(tmp_path / "never" / "state.json", "state")["controller"][
        "n_updates"
    ] == 0
