"""HW-NAS-Bench's FBNet block tables imported as moga tables: every block mapped, reference totals reproduced,
one table per device and metric with its header, energy objectives, declared mismatches (``lut.*``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lut.published import FORMATS, block_rows, import_published, read_rows
from lut.table import LatencyTable
from moga.cli import main
from moga.config import load_config
from moga.experiment import DECLARED, Experiment
from moga.metrics import ArchMetrics
from moga.objectives import make_objectives, resolve_metric
from supernet import Arch, UserError, get_space

FMT = FORMATS["hw-nas-bench-fbnet"]
ASSET = FMT.shipped
REFERENCE = json.loads((ASSET.parent / "reference_totals.json").read_text())
EXPERIMENT = Path(__file__).parents[1] / "experiments" / "fbnet_devices.yaml"
SETTINGS = {"cifar100": ("fbnet_cifar", 32, 100), "ImageNet": ("fbnet", 224, 1000)}


def space_of(dataset: str, **kw: object):
    name, res, classes = SETTINGS[dataset]
    return get_space(name, **{"num_classes": classes, "resolution": res, "variant": "imagenet", **kw})  # type: ignore[arg-type]


def test_the_license_and_source_travel_with_the_table() -> None:
    assert "MIT License" in (ASSET.parent / "LICENSE").read_text()
    assert "HW-NAS-Bench" in (ASSET.parent / "README.md").read_text()


@pytest.mark.parametrize("dataset", SETTINGS)
def test_whole_network_sums_reproduce_the_reference_totals(dataset: str) -> None:
    space = space_of(dataset)
    tables = import_published(space, FMT)
    rows = read_rows(ASSET, FMT)
    mapped = block_rows(space, FMT, rows, "test")
    records = [r for r in REFERENCE if r["dataset"] == dataset]
    assert len(records) == 3
    for rec in records:
        arch = Arch(space, tuple(rec["arch"]))
        for name, table in tables.items():
            metric, column = name, table.header["column"]
            want = rec[metric]
            # the benchmark's own sum, in its order (stem + 22 blocks + head conv + pool + FC): bit-identical
            total = 0.0
            for block in space.walk(arch.genes):
                for row in [] if block.is_identity else mapped[block.key]:
                    total += rows[row][column]
            assert total == want, (name, rec["arch"])
            # the moga table (its head entry pre-sums three rows): equal up to float rounding of the order
            assert table.predict_raw(arch) == pytest.approx(want, rel=1e-15, abs=0)


def test_every_block_of_the_walk_is_mapped_and_a_missing_row_is_named(tmp_path: Path) -> None:
    space = space_of("cifar100")
    rows = read_rows(ASSET, FMT)
    mapped = block_rows(space, FMT, rows, "test")
    walked = {b.key for code in ("0" * 22, "8" * 22, "5" * 22) for b in space.walk(Arch.parse(space, code).genes) if not b.is_identity}
    assert walked <= set(mapped) and len(mapped) == 104
    lines = ASSET.read_text().splitlines()
    cut = tmp_path / "cut.csv"
    cut.write_text("\n".join(line for line in lines if not line.startswith("ConvBlock_H8_W8_Cin64_Cout64_exp6_kernel5")) + "\n")
    with pytest.raises(UserError, match=r"1 block\(s\) of space 'fbnet_cifar' .*ir:8x8x64-64:k5e6:s1:se0:relu \(needs ConvBlock_H8_W8"):
        import_published(space, FMT, cut)
    with pytest.raises(UserError, match="not in the table"):  # the benchmark publishes no reduced-width network
        import_published(space_of("cifar100", width_mult=0.5), FMT)
    with pytest.raises(UserError, match="cannot be imported: HW-NAS-Bench's blocks are ReLU"):
        import_published(get_space("moga", num_classes=100, resolution=32), FMT)


def test_cli_imports_one_table_per_device_and_metric(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "tables"
    args = ["lut", "import", "--format", "hw-nas-bench-fbnet", "--space", "fbnet", "--resolution", "224", "--num-classes", "1000"]
    assert main([*args, "--out", str(out)]) in (0, None)
    names = sorted(p.stem for p in out.glob("*.json"))
    assert names == sorted(FMT.table_name(c) for c in FMT.columns) and len(names) == 8
    tx2 = LatencyTable.load(out / "edgegpu_latency.json")
    h = tx2.header
    assert (h["device"], h["runtime"], h["metric"], h["unit"], h["column"]) == (
        "jetson-tx2",
        "tensorrt",
        "latency",
        "ms",
        "edgegpu_latency_ms",
    )
    assert "HW-NAS-Bench" in h["source"] and (h["space"], h["resolution"], h["num_classes"]) == ("fbnet", 224, 1000)
    energy = LatencyTable.load(out / "edgegpu_energy.json").header
    assert (energy["metric"], energy["unit"]) == ("energy", "mJ")
    one = tmp_path / "one"
    main([*args, "--out", str(one), "--column", "pixel3_latency_ms"])
    assert [p.name for p in one.glob("*.json")] == ["pixel3_latency.json"]
    assert (
        main(
            [
                "lut",
                "import",
                "x.csv",
                "--out",
                str(tmp_path / "t.json"),
                "--space",
                "fbnet",
                "--resolution",
                "224",
                "--num-classes",
                "1000",
            ]
        )
        == 2
    )
    assert "needs --device, --runtime, --provider" in capsys.readouterr().err


def test_energy_tables_are_objectives_by_their_own_name() -> None:
    space = space_of("cifar100")
    tables = import_published(space, FMT, columns=["edgegpu_latency_ms", "edgegpu_energy_mJ"])
    metrics = ArchMetrics(space, tables, None)
    assert metrics.tables == ["edgegpu_latency"] and metrics.others == {"edgegpu_energy": "energy"}
    out = metrics.costs([Arch.parse(space, "0" * 22)])
    assert out["energy:edgegpu_energy"][0] == pytest.approx(REFERENCE[0]["edgegpu_energy"], rel=1e-15)
    assert resolve_metric("energy:edgegpu_energy", metrics.tables, metrics.others) == "energy:edgegpu_energy"
    (obj,) = make_objectives([("energy:edgegpu_energy", 1.0, None)], metrics.tables, metrics.others)
    assert not obj.maximize
    with pytest.raises(UserError, match="holds energy, not latency: name it energy:edgegpu_energy"):
        resolve_metric("latency:edgegpu_energy", metrics.tables, metrics.others)
    with pytest.raises(UserError, match="names no energy table"):
        resolve_metric("energy:edgegpu_latency", metrics.tables, metrics.others)


def test_a_table_for_another_head_or_width_must_be_declared(tmp_path: Path) -> None:
    table = import_published(space_of("cifar100"), FMT, columns=["pixel3_latency_ms"])["pixel3_latency"]
    exp = Experiment.load(EXPERIMENT)
    table.check_space(exp.lut_space, declared=DECLARED)  # declared: trains 10 classes at width 0.25, 16x16
    s = exp.cfg.space
    assert (s.num_classes, s.width_mult, s.resolution) == (10, 0.25, 16)
    for key, shown in (("num_classes", "num classes 100"), ("width_mult", "width mult 1.0"), ("resolution", "resolution 32")):
        space = Experiment.load(EXPERIMENT, [f"lut.{key}=null"]).lut_space
        with pytest.raises(UserError, match=rf"measured for {shown}, the experiment uses .* declare it: lut.{key}: "):
            table.check_space(space, declared=DECLARED)
    trained = get_space("fbnet_cifar", num_classes=10, resolution=16, width_mult=0.25)
    assert [lay.choices for lay in exp.lut_space.layers] == [lay.choices for lay in trained.layers]  # one genome, both networks


def test_published_tables_in_an_experiment(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="published must be <format>:<column>"):
        load_config(EXPERIMENT, ["lut.tables.tx2.published=edgegpu"])
    with pytest.raises(UserError, match="not both"):
        load_config(EXPERIMENT, ["lut.tables.tx2.path=x.json"])
    from moga.pipeline import build_experiment_tables

    tables = build_experiment_tables(Experiment.load(EXPERIMENT, [f"run_dir={tmp_path}"]))
    assert {n: t.header["device"] for n, t in tables.items()} == {"tx2": "jetson-tx2", "pixel3": "pixel-3"}
    with open(tmp_path / "lut" / "tx2.json") as f:
        assert json.load(f)["header"]["column"] == "edgegpu_latency_ms"


def test_a_search_minimises_an_energy_objective(tmp_path: Path) -> None:
    from moga.config import SearchConfig
    from moga.search import Search

    space = space_of("cifar100")
    tables = import_published(space, FMT, columns=["edgegpu_latency_ms", "edgegpu_energy_mJ"])
    metrics = ArchMetrics(space, tables, lambda archs: [float(sum(a.genes)) for a in archs])
    cfg = SearchConfig(population=8, generations=2, objectives=[{"name": "accuracy"}, {"name": "energy:edgegpu_energy"}])
    result = Search(space, cfg, metrics, tmp_path, seed=0).run(progress=False)
    assert "energy:edgegpu_energy" in result.pareto.columns and "latency_ms" in result.history.columns
    front = result.pareto.sort_values("energy:edgegpu_energy")
    assert front["accuracy"].is_monotonic_increasing  # a front of max accuracy vs min energy
