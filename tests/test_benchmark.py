"""NAS-Bench-Macro inside moga: the exact space, its codes, canonical networks and the shipped table."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
import torch

from supernet.arch import Arch
from supernet.benchmark import BENCHMARKS, load_benchmark
from supernet.errors import UserError
from supernet.model import MobileNet, count, count_population
from supernet.space import get_space


@pytest.fixture(scope="module")
def raw() -> dict:
    with gzip.open(BENCHMARKS["nasbench_macro"].file, "rt") as f:
        return json.load(f)


@pytest.fixture(scope="module")
def space():
    return load_benchmark("nasbench_macro").space


def test_counts_equal_the_benchmark_for_every_code(raw, space) -> None:
    codes = sorted(raw)
    assert len(codes) == 3**8
    genomes = np.array([[int(d) for d in c] for c in codes])
    params, flops = count_population(space, genomes)
    assert (params == np.array([raw[c]["params"] for c in codes])).all()
    assert (flops == np.array([raw[c]["flops"] for c in codes])).all()


@pytest.mark.parametrize("code", ["00000000", "11111111", "22222222", "12121212", "02012100", "20000200"])
def test_built_models_have_the_benchmarks_parameters(raw, space, code) -> None:
    model = MobileNet(Arch.parse(space, code))
    assert sum(p.numel() for p in model.parameters()) == raw[code]["params"] == count(model_arch := Arch.parse(space, code))[0]
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    assert str(model_arch).split("-")[0] == {"0": "skip", "1": "k3e3", "2": "k5e6"}[code[0]]


def test_skip_on_a_stage_start_is_a_projection_without_activation(space) -> None:
    first, second = MobileNet(Arch.parse(space, "00000000")).layers[:2]
    assert isinstance(first.conv, torch.nn.Conv2d) and first.conv.stride == (2, 2) and first.conv.kernel_size == (1, 1)
    assert isinstance(first.act, torch.nn.Identity)
    assert isinstance(second, torch.nn.Identity)
    shape = space.layer_shape(0, 0)
    assert not shape.is_identity and shape.key == "skip:32x32x32-64:k1:s2:identity"
    assert space.layer_shape(1, 0).is_identity


def test_codes_and_strings_round_trip(space) -> None:
    arch = Arch.parse(space, "22212220")
    assert arch.code == "22212220"
    assert str(arch) == "k5e6-k5e6-k5e6-k3e3-k5e6-k5e6-k5e6-skip"
    assert Arch.parse(space, str(arch)) == arch
    with pytest.raises(UserError, match="out of range"):
        Arch.parse(space, "22212223")
    with pytest.raises(UserError, match="8 digits"):
        Arch.parse(space, "2221222")
    assert Arch.parse(get_space("moga"), "k3e3-" * 13 + "k3e3").code is None  # 12 choices a layer: no codes


def test_canonical_moves_identities_to_the_end_of_their_stage(space) -> None:
    assert Arch.parse(space, "22212202").canonical().code == "22212220"
    assert Arch.parse(space, "00000000").canonical().code == "00000000"
    assert Arch.parse(space, "10010201").canonical().code == "10010210"  # stage starts (layers 1, 3, 6) never move
    distinct = {space.canonical(g) for g in np.ndindex(*space.n_choices)}
    assert len(distinct) == 3969
    # equivalent codes are the same function: equal outputs with the same weights
    a, b = MobileNet(Arch.parse(space, "22212220")).eval(), MobileNet(Arch.parse(space, "22212202")).eval()
    b.load_state_dict({k.replace("layers.6.", "layers.7.") if k.startswith("layers.6.") else k: v for k, v in a.state_dict().items()})
    x = torch.randn(2, 3, 32, 32)
    assert torch.allclose(a(x), b(x))


def test_table_lookup(space) -> None:
    bench = load_benchmark("nasbench_macro")
    best = bench.lookup(Arch.parse(space, "22212202"))
    assert best.code == "22212220" and best.mean_acc == pytest.approx(93.1267, abs=1e-3) and len(best.test_acc) == 3
    assert best.mean_acc == pytest.approx(np.mean(best.test_acc))
    assert len(bench.distinct()) == len(bench.records) == 3969
    assert all(a.canonical() == a for a in bench.distinct()[:50])


def test_foreign_space_or_setting_is_refused() -> None:
    bench = load_benchmark("nasbench_macro")
    with pytest.raises(UserError, match="describes space 'nasbench_macro', not 'moga'"):
        bench.lookup(Arch.parse(get_space("moga"), "k3e3-" * 13 + "k3e3"))
    wrong = get_space("nasbench_macro", num_classes=10, resolution=32, variant="cifar")
    with pytest.raises(UserError, match="variant cifar"):
        bench.check_space(wrong)
    with pytest.raises(UserError, match="unknown benchmark"):
        load_benchmark("nasbench201")


def test_missing_entry_is_named(space) -> None:
    bench = load_benchmark("nasbench_macro")
    trimmed = type(bench)(bench.name, bench.info, {k: v for k, v in bench.records.items() if k != "22212220"})
    with pytest.raises(UserError, match=r"no entry for k5e6\S* \(code 22212220\)"):
        trimmed.lookup(Arch.parse(space, "22212202"))


def test_arch_show_takes_codes_and_shows_trained_accuracy(capsys) -> None:
    from moga.cli import main

    assert main(["arch", "show", "22212202", "--space", "nasbench_macro", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["params"] == 1_985_514 and info["macs"] == 85_164_544 and info["resolution"] == 32  # the benchmark's setting
    assert info["code"] == "22212202" and info["benchmark"]["network"] == "22212220"
    assert info["benchmark"]["mean_acc"] == pytest.approx(93.1267, abs=1e-3)
    assert main(["arch", "show", "02012100", "--space", "nasbench_macro"]) == 0
    out = capsys.readouterr().out
    assert "skip (1x1 conv)" in out and "trained test accuracy 89.20%" in out
    # another resolution: the same code, no trained accuracy claimed
    assert main(["arch", "show", "02012100", "--space", "nasbench_macro", "--resolution", "64", "--json"]) == 0
    assert "benchmark" not in json.loads(capsys.readouterr().out)
    assert main(["arch", "show", "22212202"]) == 2  # the MoGA space takes no digit codes
    assert "belong to space nasbench_macro" in capsys.readouterr().err


def test_retrain_of_a_code_records_the_benchmark_accuracy(tmp_path, capsys) -> None:
    """``moga retrain --arch CODE`` on the benchmark space: the result carries the table's trained accuracy beside
    its own, and a search that read accuracies from the table claims no supernet estimate."""
    import pandas as pd

    from moga.cli import main
    from tests.tiny_experiment import make_image_folder, write_experiment

    make_image_folder(tmp_path / "data", classes=tuple(f"c{i}" for i in range(10)), train=2, val=1)
    space = {"name": "nasbench_macro", "resolution": 32, "num_classes": 10, "width_mult": 1.0, "variant": "imagenet"}
    exp = write_experiment(tmp_path, tmp_path / "run", space=space, data={"search_val_per_class": 1}, search={"accuracy": "benchmark"})
    overrides = ["retrain.max_steps=1", "retrain.batch_size=10", "retrain.epochs=1"]
    assert main(["retrain", str(exp), "--arch", "22212202", "--no-progress", *overrides]) == 0
    out = capsys.readouterr().out
    assert "benchmark's trained accuracy 93.13%" in out
    result = json.loads(next((tmp_path / "run" / "retrain").glob("*/result.json")).read_text())
    assert result["benchmark_acc"] == pytest.approx(93.1267, abs=1e-3) and result["supernet_acc"] is None
    summary = pd.read_csv(tmp_path / "run" / "retrain" / "summary.csv")
    assert summary["benchmark_acc"].iloc[0] == pytest.approx(93.1267, abs=1e-3)


def test_a_table_that_is_not_the_published_one_is_refused(tmp_path, monkeypatch) -> None:
    import dataclasses

    import supernet.benchmark as sb

    fake = tmp_path / "table.json.gz"
    with gzip.open(fake, "wt") as f:
        json.dump({"00000000": {"test_acc": [1, 2, 3], "mean_acc": 2, "std": 1, "params": 1, "flops": 1}}, f)
    monkeypatch.setitem(sb.BENCHMARKS, "forged", dataclasses.replace(sb.BENCHMARKS["nasbench_macro"], file=fake))
    with pytest.raises(UserError, match="not the published file"):
        sb.load_benchmark("forged")
    broken = tmp_path / "broken.json.gz"
    broken.write_bytes(b"not gzip")
    monkeypatch.setitem(sb.BENCHMARKS, "broken", dataclasses.replace(sb.BENCHMARKS["nasbench_macro"], file=broken))
    with pytest.raises(UserError, match="cannot read benchmark table"):
        sb.load_benchmark("broken")


def test_a_space_naming_an_unknown_benchmark_is_refused(tmp_path) -> None:
    from supernet.space import SPACE_DIR

    path = tmp_path / "typo.yaml"
    path.write_text((SPACE_DIR / "nasbench_macro.yaml").read_text().replace("benchmark: nasbench_macro", "benchmark: nasbench_micro"))
    with pytest.raises(UserError, match="unknown benchmark 'nasbench_micro'"):
        get_space(str(path))
