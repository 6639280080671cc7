"""Rank correlation: the statistics against hand-computed values, the bootstrap, the latency-spread sample,
and ``moga rank-corr`` end to end with K=3 on a tiny space and a supernet trained for two steps."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from lut.validate import kendall_tau
from moga.cli import main
from moga.experiment import Experiment
from moga.rankcorr import (
    average_ranks,
    bootstrap_ci,
    mean_pairwise_tau,
    rank_statistics,
    seed_repeatability,
    spearman_rho,
    spread_archs,
    top_k_overlap,
)
from supernet import Arch, count_population, get_space
from supernet.standalone import train_standalone
from supernet.train import load_supernet, train_supernet


# ----------------------------------------------------------------------------- statistics
def test_statistics_match_hand_computed_values():
    x, y = [1, 2, 3, 4], [1, 3, 2, 4]  # one discordant pair of six; rank differences 0, 1, 1, 0
    assert kendall_tau(x, y) == pytest.approx((5 - 1) / 6)
    assert spearman_rho(x, y) == pytest.approx(1 - 6 * 2 / (4 * (16 - 1)))
    assert top_k_overlap(x, y, 2) == 0.5  # top-2 by x: items 2, 3; by y: items 3, 1
    assert top_k_overlap(x, y, 4) == 1.0
    assert kendall_tau(x, x[::-1]) == pytest.approx(-1) and spearman_rho(x, x[::-1]) == pytest.approx(-1)


def test_statistics_with_ties():
    x, y = [1, 1, 2, 3], [1, 2, 2, 3]
    # τ-b: 4 concordant pairs, none discordant, one tie in each variable: 4 / sqrt(5 * 5)
    assert kendall_tau(x, y) == pytest.approx(0.8)
    assert list(average_ranks([10, 20, 10, 30])) == [1.5, 3.0, 1.5, 4.0]
    # ranks [1.5, 1.5, 3, 4] and [1, 2.5, 2.5, 4]: covariance 3.75, variances 4.5 and 4.5
    assert spearman_rho(x, y) == pytest.approx(3.75 / 4.5)
    assert math.isnan(spearman_rho([1, 1, 1], [1, 2, 3])) and math.isnan(kendall_tau([1, 1, 1], [1, 2, 3]))
    assert top_k_overlap([5, 5, 1], [1, 5, 5], 1) == 0.0  # ties go to the lower index: {0} vs {1}
    with pytest.raises(ValueError, match="1 <= k <= 3"):
        top_k_overlap([1, 2, 3], [1, 2, 3], 4)


def test_bootstrap_interval_contains_the_estimate_and_is_seeded():
    rng = np.random.default_rng(1)
    x = rng.normal(size=20)
    y = x + rng.normal(scale=0.7, size=20)
    for stat in (kendall_tau, spearman_rho):
        lo, hi = bootstrap_ci(stat, (x, y), resamples=500, seed=3)
        assert lo <= stat(x, y) <= hi and hi - lo < 1
        assert bootstrap_ci(stat, (x, y), resamples=500, seed=3) == (lo, hi)
        assert bootstrap_ci(stat, (x, y), resamples=500, seed=4) != (lo, hi)
    stats = rank_statistics(x, y, k=5, resamples=200, seed=0)
    assert stats["top_k"] == 5 and stats["bootstrap"]["resamples"] == 200
    for name in ("kendall_tau", "spearman_rho", "top_k_overlap"):
        lo, hi = stats[name]["ci95"]
        assert lo <= stats[name]["value"] <= hi, name


def test_seed_to_seed_tau_is_the_mean_over_pairs_of_runs():
    a, b, c = [1.0, 2.0, 3.0, 4.0], [1.0, 3.0, 2.0, 4.0], [4.0, 3.0, 2.0, 1.0]
    assert mean_pairwise_tau(np.array(a), np.array(a)) == pytest.approx(1)
    # pairs: (a, b) 4/6, (a, c) -1, (b, c) -4/6
    assert mean_pairwise_tau(np.array(a), np.array(b), np.array(c)) == pytest.approx((4 / 6 - 1 - 4 / 6) / 3)
    rep = seed_repeatability([a, b], resamples=300, seed=0)
    assert rep["value"] == pytest.approx(4 / 6, abs=1e-6)
    lo, hi = rep["ci95"]
    assert -1 <= lo <= rep["value"] <= hi <= 1
    with pytest.raises(ValueError, match="at least two"):
        mean_pairwise_tau(np.array(a))


def test_undefined_statistics_are_null_not_nan():
    stats = rank_statistics([50.0, 50.0, 50.0], [60.0, 61.0, 62.0], k=1, resamples=50)
    assert stats["kendall_tau"] == {"value": None, "ci95": [None, None]}
    json.dumps(stats, allow_nan=False)  # valid JSON


def test_spread_sample_spans_the_cost_range_deterministically(cifar_space):
    def macs(genomes: np.ndarray) -> np.ndarray:
        return count_population(cifar_space, genomes)[1].astype(float)

    archs = spread_archs(cifar_space, 5, seed=7, cost=macs, pool=200)
    again = spread_archs(cifar_space, 5, seed=7, cost=macs, pool=200)
    assert [str(a) for a in archs] == [str(a) for a in again] and len({str(a) for a in archs}) == 5
    values = macs(np.stack([a.genome for a in archs]))
    assert list(values) == sorted(values)
    from lut.validate import random_archs

    pool = macs(np.stack([a.genome for a in random_archs(cifar_space, 200, 7)]))
    assert (values[0], values[-1]) == (pool.min(), pool.max())  # the extremes of the pool


# ----------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_space_file):
    """An experiment on the shared tiny space (100 codes) with a supernet trained for two steps."""
    root = tmp_path_factory.mktemp("rankcorr")
    exp = root / "exp.yaml"
    exp.write_text(
        json.dumps(
            {
                "name": "tiny",
                "run_dir": str(root / "run"),
                "space": {"name": str(tiny_space_file), "resolution": 16},
                "data": {"search_val_per_class": 10},
                "supernet": {"steps": 2, "batch_size": 16, "warmup_steps": 1, "eval_paths": 0, "eval": {"calib_images": 32, "images": 64}},
                "lut": {"tables": {}},  # no latency table: the sample is spread over multiply-adds
                "retrain": {"epochs": 1, "max_steps": 2, "batch_size": 16, "warmup_steps": 1},
            }
        )
    )
    xp = Experiment.load(exp)
    train_supernet(xp.space, xp.dataset, xp.cfg.supernet, xp.supernet_dir, progress=False)
    return exp, xp


@pytest.mark.slow
def test_rank_corr_end_to_end_and_resumable(tiny_run, capsys):
    exp, xp = tiny_run
    assert main(["rank-corr", str(exp), "--models", "3", "--resamples", "200", "--no-progress"]) == 0
    out = xp.rankcorr_dir
    assert "Kendall τ" in capsys.readouterr().out
    table = pd.read_csv(out / "rankcorr.csv", dtype={"arch_id": str})
    assert list(table.columns) == ["arch_id", "arch", "macs", "supernet_acc", "standalone_acc"]
    assert len(table) == 3 and list(table["macs"]) == sorted(table["macs"]) and table.notna().all().all()
    report = json.loads((out / "rankcorr.json").read_text())
    assert report["models"] == 3 and report["top_k"] == 1 and report["ordered_by"] == "macs"
    assert report["recipe"]["epochs"] == 1 and not report["recipe"]["init_from_supernet"]
    expected = rank_statistics(table["supernet_acc"], table["standalone_acc"], 1, resamples=200, seed=xp.cfg.seed)
    for name in ("kendall_tau", "spearman_rho", "top_k_overlap"):
        assert report[name] == expected[name], name
    assert (out / "rankcorr.png").stat().st_size > 0
    for arch_id in table["arch_id"]:
        assert (out / arch_id / "model.pt").is_file()

    # a rerun skips every finished model and reproduces the report
    assert main(["rank-corr", str(exp), "--models", "3", "--resamples", "200", "--no-progress"]) == 0
    assert capsys.readouterr().err.count("already trained") == 3
    assert json.loads((out / "rankcorr.json").read_text()) == report

    # --seeds 2 reuses those runs as seed 0, trains each model once more and averages the two
    assert main(["rank-corr", str(exp), "--models", "3", "--seeds", "2", "--resamples", "200", "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert captured.err.count("already trained") == 3 and "standalone vs standalone (2 seeds)" in captured.out
    two = pd.read_csv(out / "rankcorr.csv", dtype={"arch_id": str})
    assert list(two["standalone_acc_seed0"]) == list(table["standalone_acc"])
    assert np.allclose(two["standalone_acc"], (two["standalone_acc_seed0"] + two["standalone_acc_seed1"]) / 2, atol=1e-4)
    for arch_id in table["arch_id"]:
        assert (out / f"{arch_id}-seed1" / "model.pt").is_file()
    report2 = json.loads((out / "rankcorr.json").read_text())
    assert report2["seeds"] == 2 and "mean of 2 seeds" in report2["standalone_acc"]
    tau = kendall_tau(two["standalone_acc_seed0"], two["standalone_acc_seed1"])
    assert report2["seed_to_seed_tau"]["value"] == (None if math.isnan(tau) else pytest.approx(tau, abs=1e-6))
    assert main(["rank-corr", str(exp), "--models", "3", "--seeds", "0"]) == 2
    assert "--seeds" in capsys.readouterr().err


def test_rank_corr_user_errors(tiny_run, capsys, tmp_path):
    exp, _ = tiny_run
    assert main(["rank-corr", str(exp), "--models", "2"]) == 2
    assert ">= 3" in capsys.readouterr().err
    assert main(["rank-corr", str(exp), "--models", "3", "--top-k", "4"]) == 2
    assert "--top-k" in capsys.readouterr().err
    assert main(["rank-corr", str(exp), "--models", "3", f"run_dir={tmp_path / 'empty'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert "no " in err and "supernet.pt" in err and len(err.splitlines()) == 1


def test_init_from_supernet_starts_from_the_extracted_weights(tiny_run, tmp_path):
    _, xp = tiny_run
    net = load_supernet(xp.supernet_file)
    arch = Arch(xp.space, (1, 2, 3))
    recipe = xp.cfg.retrain.model_copy(update={"init_from_supernet": True, "max_steps": 1, "lr": 1e-12, "weight_decay": 0.0})
    result = train_standalone(arch, xp.dataset, recipe, tmp_path, supernet=net, progress=False)
    assert result["init"] == "supernet"
    trained = torch.load(tmp_path / "model.pt", weights_only=True)
    assert trained["fingerprint"]["init"].startswith("supernet:")
    start = net.extract(arch).state_dict()
    weights = [k for k in start if k.endswith("weight")]
    assert all(torch.allclose(trained["model"][k], start[k], atol=1e-6) for k in weights)
    other = get_space("moga", num_classes=10, resolution=16, variant="cifar")
    from supernet.errors import UserError

    with pytest.raises(UserError, match="does not fit"):
        train_standalone(Arch.random(other, np.random.default_rng(0)), xp.dataset, recipe, tmp_path / "x", supernet=net)


def test_the_sample_is_ordered_by_the_first_table_when_it_exists(tiny_run, tmp_path, capsys):
    from lut.build import build_table
    from lut.measure import FakeBackend
    from moga.rankcorr import latency_measure

    exp, _ = tiny_run
    xp = Experiment.load(exp, ["lut.tables={cpu: {backend: fake}}", f"run_dir={tmp_path}"])
    assert latency_measure(xp)[0] == "macs" and "no latency table" in capsys.readouterr().err
    table, _ = build_table(xp.lut_space, FakeBackend(), xp.table_path("cpu"), device="fake", progress=False)
    name, cost = latency_measure(xp)
    archs = [Arch(xp.space, (0, 1, 0)), Arch(xp.space, (3, 2, 4))]
    assert name == "latency_ms:cpu"
    assert list(cost(np.stack([a.genome for a in archs]))) == pytest.approx([table.predict(a) for a in archs])
