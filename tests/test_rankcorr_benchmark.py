"""``moga rank-corr --benchmark``: the sample, the equivalent-code averaging, the CLI end to end on the real
NAS-Bench-Macro space (a freshly initialised supernet saved as training would, 20 validation images), its
errors, and the scipy-based statistics against brute-force references with ties."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.stats
import torch

from lut.validate import kendall_tau
from moga.cli import main
from moga.experiment import Experiment
from moga.rankcorr import bootstrap_ci, spearman_rho, spearman_rho_along, top_k_overlap, top_k_overlap_along
from moga.rankcorr_benchmark import benchmark_dir, benchmark_sample, equivalent_archs, score_networks
from supernet.arch import Arch
from supernet.benchmark import load_benchmark
from supernet.errors import UserError
from supernet.evaluate import count_prefixes
from supernet.supernet import Supernet
from supernet.train import derive_seed, load_supernet, save_supernet
from tests.tiny_experiment import make_image_folder, write_experiment

NASBENCH = {"name": "nasbench_macro", "resolution": 32, "num_classes": 10, "width_mult": 1.0, "variant": "imagenet"}
BENCH_ARGS = ["--benchmark", "nasbench_macro", "--resamples", "100", "--no-progress"]


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("nasbench_macro")


@pytest.fixture(scope="module")
def nb_run(tmp_path_factory):
    """An experiment on the benchmark's exact space: 10 classes of 4 train images (2 held out as search_val),
    8 calibration images, and a randomly initialised supernet saved in the run dir (the cost of scoring does
    not depend on training; random weights give the paths different accuracies)."""
    root = tmp_path_factory.mktemp("rankcorr_benchmark")
    make_image_folder(root / "data", classes=tuple(f"c{i}" for i in range(10)), train=4, val=1)
    exp = write_experiment(
        root, root / "run", space=NASBENCH, data={"search_val_per_class": 2}, lut={"tables": {}},
        supernet={"eval": {"calib_images": 8, "calib_batch_size": 8, "images": 0, "batch_size": 20}},
    )  # fmt: skip
    xp = Experiment.load(exp)
    torch.manual_seed(0)
    save_supernet(xp.supernet_file, Supernet(xp.space), {"seed": xp.cfg.seed})
    return exp, xp


def group_of(space, code: str) -> list[str]:
    """Brute force: every code of the space whose canonical form is ``code``."""
    target = Arch.parse(space, code).genes
    return ["".join(map(str, g)) for g in itertools.product(*(range(n) for n in space.n_choices)) if space.canonical(g) == target]


def mean_pairwise_scipy_tau(columns: list[pd.Series]) -> float:
    return float(np.mean([scipy.stats.kendalltau(a, b).statistic for a, b in itertools.combinations(columns, 2)]))


# ----------------------------------------------------------------------------- sample and equivalents
def test_sample_is_distinct_canonical_and_seeded(bench):
    space = bench.space
    a, b, other = (benchmark_sample(bench, space, 50, seed) for seed in (3, 3, 4))
    codes = [x.code for x in a]
    assert codes == [x.code for x in b] != [x.code for x in other]
    assert len(set(codes)) == 50 and codes == sorted(codes)
    assert all(x.canonical() == x and x.code in bench.records for x in a)
    every = benchmark_sample(bench, space, None, 0)
    assert len(every) == len({x.code for x in every}) == 3969 == len(bench.records)
    assert all(x.canonical() == x for x in every)
    with pytest.raises(UserError, match="exceeds the 3969 distinct networks"):
        benchmark_sample(bench, space, 3970, 0)
    with pytest.raises(UserError, match="at least 3"):
        benchmark_sample(bench, space, 2, 0)


def test_equivalents_mean_averages_every_code_of_the_network(bench):
    space = bench.space
    assert sorted(group_of(space, "11110110")) == ["11101101", "11101110", "11110101", "11110110"]
    calls: list[list[str]] = []

    def fake_accuracy(archs):
        calls.append([a.code for a in archs])
        return [float(int(a.code)) for a in archs]

    archs = [Arch.parse(space, c) for c in ("11110110", "22212202", "12121212")]  # the second is not canonical
    values, paths = score_networks(archs, fake_accuracy, "mean")
    groups = [group_of(space, c) for c in ("11110110", "22212220", "12121212")]
    assert paths == [len(g) for g in groups] == [4, 2, 1]
    assert list(values) == pytest.approx([np.mean([int(c) for c in g]) for g in groups])
    assert len(calls) == 1 and sorted(calls[0]) == sorted(c for g in groups for c in g)  # one call: the trie shares all

    calls.clear()
    values, paths = score_networks(archs, fake_accuracy, "canonical")
    assert list(values) == [11110110.0, 22212220.0, 12121212.0] and paths == [1, 1, 1] and len(calls) == 1
    groups_all = equivalent_archs(space)
    assert len(groups_all) == 3969 and sum(map(len, groups_all.values())) == 3**8
    with pytest.raises(UserError, match="--equivalents"):
        score_networks(archs, fake_accuracy, "median")


# ----------------------------------------------------------------------------- end to end
@pytest.mark.slow
def test_benchmark_mode_end_to_end(nb_run, bench, capsys):
    exp, xp = nb_run
    assert main(["rank-corr", str(exp), *BENCH_ARGS, "--models", "20"]) == 0
    printed = capsys.readouterr().out
    for text in ("20 nasbench_macro networks", "estimate: accuracy", "FLOPs (no training)", "−skips", "ceiling", "networks/min"):
        assert text in printed, text
    out = benchmark_dir(xp, "nasbench_macro")
    assert out == xp.rankcorr_dir / "benchmark_nasbench_macro"
    assert not (xp.rankcorr_dir / "rankcorr.json").exists()  # the standalone rank-corr's files are elsewhere
    table = pd.read_csv(out / "rankcorr.csv", dtype={"code": str})
    assert list(table.columns) == [
        "arch", "code", "estimate", "supernet_acc", "supernet_neg_loss", "true_acc", "acc_seed0", "acc_seed1", "acc_seed2", "flops",
        "params", "skips", "paths",
    ]  # fmt: skip
    assert list(table["estimate"]) == list(table["supernet_acc"])  # the default estimate: each path's top-1
    space = xp.space
    expected = benchmark_sample(bench, space, 20, derive_seed(xp.cfg.seed, "rankcorr-benchmark", "nasbench_macro"))
    assert list(table["code"]) == [a.code for a in expected] and table["code"].is_unique
    for row in table.itertuples():
        rec = bench.records[row.code]
        assert Arch.parse(space, row.arch).code == row.code
        assert row.true_acc == rec.mean_acc and (row.acc_seed0, row.acc_seed1, row.acc_seed2) == rec.test_acc
        assert (row.flops, row.params, row.paths) == (rec.flops, rec.params, 1)
        assert row.skips == row.arch.count("skip")

    report = json.loads((out / "rankcorr.json").read_text())
    settings = (report["models"], report["equivalents"], report["all"], report["paths_scored"], report["top_k"])
    assert settings == (20, "canonical", False, 20, 2)
    tau = scipy.stats.kendalltau(table["supernet_acc"], table["true_acc"]).statistic
    assert report["kendall_tau"]["value"] == pytest.approx(tau, abs=1e-6)
    assert report["spearman_rho"]["value"] == pytest.approx(scipy.stats.spearmanr(table["supernet_acc"], table["true_acc"])[0], abs=1e-6)
    baselines = report["baselines"]
    for column in ("supernet_acc", "supernet_neg_loss", "flops", "params"):
        expect = scipy.stats.kendalltau(table[column], table["true_acc"]).statistic
        assert baselines[column]["kendall_tau"]["value"] == pytest.approx(expect, abs=1e-6), column
    assert baselines["neg_skips"]["kendall_tau"]["value"] == pytest.approx(
        scipy.stats.kendalltau(-table["skips"], table["true_acc"]).statistic
    )
    flops_tau = scipy.stats.kendalltau(table["flops"], table["true_acc"]).statistic
    assert report["tau_minus_flops"]["value"] == pytest.approx(tau - flops_tau, abs=1e-6)
    by_depth = [scipy.stats.kendalltau(g["supernet_acc"], g["true_acc"]).statistic for _, g in table.groupby("skips") if len(g) >= 10]
    want = np.nanmean(by_depth) if by_depth and not np.isnan(by_depth).all() else None
    assert report["within_depth_tau"] == (None if want is None else pytest.approx(want, abs=1e-6))
    ceiling = mean_pairwise_scipy_tau([table[f"acc_seed{j}"] for j in range(3)])
    assert report["seed_to_seed_tau"]["value"] == pytest.approx(ceiling, abs=1e-6)
    for stat in (report["kendall_tau"], baselines["flops"]["kendall_tau"], report["seed_to_seed_tau"]):
        lo, hi = stat["ci95"]
        assert lo <= stat["value"] <= hi
    scoring = report["scoring"]
    assert scoring["blocks_one_by_one"] == 20 * 8 and scoring["heads_run"] == 20
    assert scoring["blocks_run"] == count_prefixes([a.genes for a in expected]) < 160  # the trie shared prefixes
    assert scoring["wall_seconds"] > 0 and scoring["networks_per_min"] > 0
    assert report["evaluator"]["calib_images"] == 8 and report["evaluator"]["val_images"] == 20 and report["evaluator"]["use_trie"]
    assert (out / "rankcorr.png").stat().st_size > 0 and (out / "config.yaml").is_file()
    # per layer and choice: mean estimate and mean true accuracy of the networks taking it, minus the sample's mean
    effects = {(e["layer"], e["choice"]): e for e in report["choice_effects"]}
    first = table["arch"].str.split("-").str[0]
    for choice in ("skip", "k3e3", "k5e6"):
        taken = first == choice
        if taken.any():
            e = effects[(1, choice)]
            assert e["networks"] == taken.sum()
            assert e["true_effect"] == pytest.approx(table["true_acc"][taken].mean() - table["true_acc"].mean(), abs=1e-3)
            assert e["estimate_effect"] == pytest.approx(table["supernet_acc"][taken].mean() - table["supernet_acc"].mean(), abs=1e-3)
    assert sum(e["networks"] for e in report["choice_effects"] if e["layer"] == 8) == 20

    # the estimates are SubnetEvaluator's, BN recalibrated as configured
    net = load_supernet(xp.supernet_file, space=space)
    evaluator = xp.evaluator(net)
    assert list(table["supernet_acc"]) == pytest.approx(evaluator.evaluate(expected), abs=1e-9)
    losses = [float(torch.nn.functional.cross_entropy(z, evaluator.labels)) for z in evaluator.logits(expected)]
    assert list(table["supernet_neg_loss"]) == pytest.approx([-v for v in losses], abs=1e-5)
    assert table["supernet_acc"].nunique() > 1


@pytest.mark.slow
def test_benchmark_mode_mean_over_equivalent_codes(nb_run, bench, capsys):
    exp, xp = nb_run
    assert main(["rank-corr", str(exp), *BENCH_ARGS, "--models", "8", "--equivalents", "mean", "--top-k", "3"]) == 0
    assert "mean paths" in capsys.readouterr().out
    out = benchmark_dir(xp, "nasbench_macro")
    table = pd.read_csv(out / "rankcorr.csv", dtype={"code": str})
    report = json.loads((out / "rankcorr.json").read_text())
    space = xp.space
    groups = [group_of(space, code) for code in table["code"]]
    assert list(table["paths"]) == [len(g) for g in groups] and report["paths_scored"] == sum(map(len, groups))
    assert report["equivalents"] == "mean" and report["top_k"] == 3 and report["scoring"]["heads_run"] == sum(map(len, groups))
    assert max(map(len, groups)) > 1  # the sample has networks with several codes
    net = load_supernet(xp.supernet_file, space=space)
    evaluator = xp.evaluator(net)
    every = {c: acc for g in groups for c, acc in zip(g, evaluator.evaluate([Arch.parse(space, c) for c in g]), strict=True)}
    assert list(table["supernet_acc"]) == pytest.approx([np.mean([every[c] for c in g]) for g in groups], abs=1e-9)


def test_benchmark_mode_user_errors(nb_run, tmp_path, capsys):
    exp, _ = nb_run

    def error(*argv: str) -> str:
        assert main(["rank-corr", *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1, err
        return err

    assert "--seeds" in error(str(exp), *BENCH_ARGS, "--models", "5", "--seeds", "2")
    assert "exactly one of --models" in error(str(exp), *BENCH_ARGS, "--models", "5", "--all")
    assert "exactly one of --models" in error(str(exp), *BENCH_ARGS)
    assert "exceeds the 3969 distinct networks" in error(str(exp), *BENCH_ARGS, "--models", "4000")
    assert "--top-k" in error(str(exp), *BENCH_ARGS, "--models", "5", "--top-k", "6")
    assert "unknown benchmark 'nope'" in error(str(exp), "--benchmark", "nope", "--models", "5")
    assert "--benchmark" in error(str(exp), "--models", "5", "--all")
    assert "--benchmark" in error(str(exp), "--models", "5", "--equivalents", "mean")
    assert "--models K" in error(str(exp))
    err = error(str(exp), *BENCH_ARGS, "--models", "5", f"run_dir={tmp_path / 'empty'}")
    assert "supernet.pt" in err
    # a space that is not the benchmarked network is refused before anything is loaded
    foreign = write_experiment(tmp_path, tmp_path / "run", name="foreign.yaml", lut={"tables": {}})
    assert "describes space 'nasbench_macro', not 'tiny'" in error(str(foreign), *BENCH_ARGS, "--models", "5")
    narrow = write_experiment(tmp_path, tmp_path / "run", name="narrow.yaml", space={**NASBENCH, "width_mult": 0.5})
    assert "width 0.5" in error(str(narrow), *BENCH_ARGS, "--all")
    # a proxy supernet (reduced width) declaring the full network it estimates is accepted; another space is not
    assert "lut.resolution/num_classes/width_mult" in error(str(narrow), *BENCH_ARGS, "--all", "lut.width_mult=0.75")
    assert "--split and --all" in error(str(exp), *BENCH_ARGS, "--split", "dev", "--all")
    assert "exceeds the 300 networks of the dev split" in error(str(exp), *BENCH_ARGS, "--split", "dev", "--models", "301")
    assert "unknown proxy 'synflop'" in error(str(exp), *BENCH_ARGS, "--models", "5", "--zero-cost", "synflop")
    assert "--zero-cost needs --benchmark" in error(str(exp), "--models", "5", "--zero-cost", "all")


def test_split_is_fixed_disjoint_and_independent_of_the_experiment_seed(bench):
    from moga.rankcorr_benchmark import DEV_SIZE, split_sample

    dev, seed = split_sample(bench, bench.space, "dev", None)
    held, seed2 = split_sample(bench, bench.space, "heldout", None)
    assert seed == seed2 and len(dev) == DEV_SIZE == 300 and len(held) == 1000
    assert not {a.code for a in dev} & {a.code for a in held}
    first50 = [a.code for a in split_sample(bench, bench.space, "dev", 50)[0]]
    assert first50 == sorted(first50) and set(first50) <= {a.code for a in dev}
    assert len(split_sample(bench, bench.space, "heldout", 3669)[0]) == 3669  # every network outside dev
    with pytest.raises(UserError, match="--split"):
        split_sample(bench, bench.space, "test", None)


@pytest.mark.slow
def test_proxy_supernet_with_additive_estimate_on_the_dev_split(bench, tmp_path, capsys):
    """A half-width 16x16 proxy supernet estimates the full networks: FLOPs are the table's (full network), the
    estimate is the additive model of the proxy's minus-loss scores, the sample is the dev split."""
    from moga.rankcorr_benchmark import split_sample

    make_image_folder(tmp_path / "data", classes=tuple(f"c{i}" for i in range(10)), train=4, val=1)
    exp = write_experiment(
        tmp_path, tmp_path / "run", space={**NASBENCH, "width_mult": 0.25, "resolution": 16}, data={"search_val_per_class": 2},
        lut={"tables": {}, "width_mult": 1.0, "resolution": 32},
        supernet={"eval": {"calib_images": 8, "calib_batch_size": 8, "images": 0, "batch_size": 20, "score": "neg_loss", "additive_paths": 30}},
    )  # fmt: skip
    xp = Experiment.load(exp)
    torch.manual_seed(0)
    save_supernet(xp.supernet_file, Supernet(xp.space), {"seed": xp.cfg.seed})
    assert main(["rank-corr", str(exp), *BENCH_ARGS, "--split", "dev", "--models", "40"]) == 0
    assert "estimate: additive(neg_loss, 30 paths)" in capsys.readouterr().out
    report = json.loads((benchmark_dir(xp, "nasbench_macro", "dev") / "rankcorr.json").read_text())
    table = pd.read_csv(benchmark_dir(xp, "nasbench_macro", "dev") / "rankcorr.csv", dtype={"code": str})
    assert report["split"] == "dev" and report["trained_space"]["width_mult"] == 0.25 and report["described_space"]["resolution"] == 32
    assert list(table["code"]) == [a.code for a in split_sample(bench, bench.space, "dev", 40)[0]]
    assert list(table["flops"]) == [bench.records[c].flops for c in table["code"]]
    assert report["estimate"]["paths_fitted"] == 30 and report["scoring"]["heads_run"] == 40 + 30
    # the estimate is the additive model's: equal for equivalent networks, refit independently here
    from supernet.estimate import AdditiveModel, fit_paths
    from supernet.train import derive_seed

    net = load_supernet(xp.supernet_file, space=xp.space)
    fit = fit_paths(xp.space, 30, derive_seed(xp.cfg.seed, "additive-paths"))
    y = xp.evaluator(net, score="neg_loss").evaluate(fit)
    model = AdditiveModel(xp.space.n_choices).fit(np.array([a.genes for a in fit]), y)
    genes = np.array([Arch.parse(bench.space, c).genes for c in table["code"]])
    assert list(table["estimate"]) == pytest.approx(list(model.predict(genes)), abs=1e-9)


# ----------------------------------------------------------------------------- statistics vs brute force
def brute_tau_b(x, y) -> float:
    nx = ny = s = 0
    for i, j in itertools.combinations(range(len(x)), 2):
        dx, dy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
        nx += dx != 0
        ny += dy != 0
        s += dx * dy
    return s / math.sqrt(nx * ny) if nx and ny else math.nan


def brute_ranks(x) -> np.ndarray:
    return np.array([sum(v < xi for v in x) + (sum(v == xi for v in x) + 1) / 2 for xi in x])


def brute_rho(x, y) -> float:
    rx, ry = brute_ranks(x), brute_ranks(y)
    dx, dy = rx - rx.mean(), ry - ry.mean()
    denom = math.sqrt((dx * dx).sum() * (dy * dy).sum())
    return (dx * dy).sum() / denom if denom else math.nan


def test_scipy_statistics_equal_brute_force_with_ties():
    rng = np.random.default_rng(0)
    for trial in range(200):
        n = int(rng.integers(2, 25))
        x, y = rng.integers(0, 1 + trial % 5, n).astype(float), rng.integers(0, 4, n).astype(float)  # many ties
        tau, rho = kendall_tau(x, y), spearman_rho(x, y)
        for got, want in ((tau, brute_tau_b(x, y)), (rho, brute_rho(x, y))):
            assert (math.isnan(got) and math.isnan(want)) or got == pytest.approx(want, abs=1e-12), (x, y)
    assert math.isnan(kendall_tau([2.0], [1.0])) and math.isnan(kendall_tau([1, 2], [3, 3]))


def test_vectorised_statistics_equal_the_row_by_row_ones():
    rng = np.random.default_rng(1)
    x, y = rng.integers(0, 4, (300, 9)).astype(float), rng.integers(0, 3, (300, 9)).astype(float)
    x[0] = 2.0  # a constant row: ρ undefined
    rho = spearman_rho_along(x, y)
    assert math.isnan(rho[0])
    assert np.allclose(rho[1:], [spearman_rho(a, b) for a, b in zip(x[1:], y[1:], strict=True)], equal_nan=True, atol=1e-12)
    assert np.allclose(spearman_rho_along(x.T, y.T, axis=0)[1:], rho[1:], equal_nan=True)
    for k in (1, 3, 9):
        assert list(top_k_overlap_along(x, y, k)) == [top_k_overlap(a, b, k) for a, b in zip(x, y, strict=True)]


def test_bootstrap_leaves_undefined_resamples_out():
    x = np.array([0.0, 0.0, 0.0, 0.0, 1.0, 0.0])  # a third of the resamples miss the 1: τ undefined there
    y = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    seen: list[float] = []

    def tau(rows: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
        assert np.array_equal(a, x[rows.astype(int)]) and np.array_equal(b, y[rows.astype(int)])  # paired rows
        seen.append(brute_tau_b(a, b))
        return kendall_tau(a, b)

    lo, hi = bootstrap_ci(tau, (np.arange(6.0), x, y), resamples=400, seed=5)
    values = np.array(seen)
    assert len(values) == 400 and 50 < np.isnan(values).sum() < 350
    assert (lo, hi) == pytest.approx(tuple(np.percentile(values[~np.isnan(values)], [2.5, 97.5])))
    assert bootstrap_ci(kendall_tau, (x, y), resamples=400, seed=5) == (lo, hi)  # seeded: the same resamples
    z = np.array([3.0, 1.0, 2.0, 6.0, 5.0, 4.0])  # no undefined resample: scipy's own percentile interval
    seen.clear()

    def logged(rows: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
        seen.append(kendall_tau(a, b))
        return seen[-1]

    lo, hi = bootstrap_ci(logged, (np.arange(6.0), z, y), 300, seed=2)
    assert not np.isnan(seen).any() and (lo, hi) == pytest.approx(tuple(np.percentile(seen, [2.5, 97.5])))


def test_supernet_eval_takes_benchmark_codes(nb_run, capsys):
    """``moga supernet eval --arch CODE``: the code is the same architecture as its string."""
    exp, xp = nb_run
    string = str(Arch.parse(xp.space, "22212202"))
    assert main(["supernet", "eval", str(exp), "--arch", "22212202", "--arch", string]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert f"22212202 ({string})" in lines[0] and lines[1].split()[0] == lines[0].split()[0]  # same accuracy
    assert main(["supernet", "eval", str(exp), "--arch", "22212203"]) == 2
    assert "out of range" in capsys.readouterr().err


def test_the_shipped_experiment_is_a_proxy_of_the_benchmarked_network(bench):
    """experiments/nasbench_macro.yaml trains a reduced proxy and declares the full network the table describes."""
    xp = Experiment.load(Path(__file__).parents[1] / "experiments" / "nasbench_macro.yaml")
    assert (xp.space.width_mult, xp.space.resolution) == (0.25, 16) and xp.lut_space == bench.space
    bench.check_space(xp.lut_space, proxy=xp.space)
    assert (xp.cfg.supernet.eval.score, xp.cfg.supernet.eval.additive_paths) == ("neg_loss", 600)
    forgot = Experiment.load(Path(__file__).parents[1] / "experiments" / "nasbench_macro.yaml", ["lut.width_mult=0.25"])
    with pytest.raises(UserError, match=r"width 0\.25.*lut\.resolution/num_classes/width_mult to the full network"):
        bench.check_space(forgot.lut_space, proxy=forgot.space)
    without = Experiment.load(
        Path(__file__).parents[1] / "experiments" / "nasbench_macro.yaml", ["lut.width_mult=null", "lut.resolution=null"]
    )
    with pytest.raises(UserError, match=r"or, to train a reduced proxy, lut\.resolution"):
        bench.check_space(without.lut_space, proxy=without.space)
