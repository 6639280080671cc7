"""The ``Experiment``: one resolved config owning its spaces, data, run paths, tables, supernet and identities; and
the package floors (supernet <- lut <- moga) it keeps."""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest

from moga.config import load_config
from moga.experiment import IDENTITY_SECTIONS, Experiment
from supernet import Arch
from supernet.errors import UserError

ROOT = Path(__file__).parents[1]


def _imports(package: str) -> set[str]:
    """The top-level packages the modules of ``package`` import."""
    found = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module.split(".")[0])
    return found


def test_no_import_runs_back_up_the_floors():
    assert not {"lut", "moga"} & _imports("supernet")
    assert "moga" not in _imports("lut")  # lut knows no experiment config: moga.experiment resolves it


def test_paths_and_the_config_it_writes(finished_tiny, tmp_path):
    root, run = finished_tiny
    exp = Experiment.load(root / "finished.yaml", ["search.dir=search_b"])
    assert (exp.run, exp.supernet_file, exp.search_dir) == (run, run / "supernet" / "supernet.pt", run / "search_b")
    assert (exp.front_file, exp.table_path("cpu"), exp.rankcorr_dir) == (
        run / "search_b" / "pareto.csv",
        run / "lut" / "cpu.json",
        run / "rankcorr",
    )
    exp.write_config(tmp_path)
    assert Experiment.load(tmp_path / "config.yaml").cfg == exp.cfg  # what it writes loads back as the same experiment


def test_identities_change_with_exactly_the_sections_each_output_depends_on(finished_tiny):
    yaml = finished_tiny[0] / "finished.yaml"
    exp = Experiment.load(yaml)
    edits = {
        "seed": "seed=1",
        "space": "space.width_mult=0.5",
        "data": "data.search_val_per_class=3",
        "supernet": "supernet.steps=3",
        "lut": "lut.validate_nets=2",
        "search": "search.population=6",
        "retrain": "retrain.epochs=2",
    }
    for output, sections in IDENTITY_SECTIONS.items():
        for section, edit in edits.items():
            changed = Experiment.load(yaml, [edit]).identity(output) != exp.identity(output)
            assert changed == (section in sections), (output, edit)
    assert Experiment.load(yaml, ["supernet.eval.calib_images=7"]).identity("supernet") != exp.identity("supernet")
    # a search that reads no supernet accuracy does not depend on the supernet or the data
    no_accuracy = Experiment.load(yaml, ["search.objectives=[{name: latency}, {name: params}]"])
    assert not no_accuracy.needs_supernet and "supernet" not in no_accuracy.identity_sections("search")
    other = Experiment.load(yaml, ["search.objectives=[{name: latency}, {name: params}]", "supernet.steps=3"])
    assert other.identity("search") == no_accuracy.identity("search")


@pytest.mark.parametrize(
    ("overrides", "reads", "needs"),
    [
        ([], True, True),
        (["search.objectives=[{name: latency}]", "search.constraints=['accuracy >= 5']"], True, True),
        (["search.objectives=[{name: latency}]", "search.constraints=['latency <= 5']"], False, False),
        (["search.objectives=[{name: latency}]", "search.constraints=['accuracyish <= 5']"], False, False),  # no prefix match
        (["search.accuracy=benchmark"], True, False),
    ],
)
def test_what_reads_accuracy(finished_tiny, overrides, reads, needs):
    exp = Experiment.load(finished_tiny[0] / "finished.yaml", overrides)
    assert (exp.reads_accuracy, exp.needs_supernet) == (reads, needs)


def test_tables_are_read_one_way(finished_tiny, tmp_path):
    root, _ = finished_tiny
    exp = Experiment.load(root / "finished.yaml")
    assert set(exp.tables()) == set(exp.built_tables()) == {"cpu"}
    assert exp.table("cpu").entries == exp.tables()["cpu"].entries
    with pytest.raises(UserError, match="names no latency table 'gpu'"):
        exp.table_names("gpu")
    empty = Experiment(exp.cfg.model_copy(update={"run_dir": str(tmp_path)}))
    assert empty.table("cpu") is None and empty.built_tables() == {}
    with pytest.raises(UserError, match=r"is not in .*run `moga lut build` to measure it"):
        empty.tables()
    # one set of checks for every reader: a table measured with other settings is refused wherever it is read
    threads = Experiment(load_config(root / "finished.yaml", ["lut.tables={cpu: {backend: onnxruntime-cpu}}"]))
    with pytest.raises(UserError, match=r"measured with other settings than lut\.tables\.cpu"):
        threads.built_tables()


def test_one_supernet_loader_with_one_set_of_checks(finished_tiny, tmp_path):
    root, run = finished_tiny
    exp = Experiment.load(root / "finished.yaml")
    net = exp.supernet("a test")
    assert net.space.name == exp.space.name and not net.training
    (accuracy,) = exp.evaluator(net).evaluate([Arch(exp.space, (0,) * len(exp.space.layers))])
    assert 0 <= accuracy <= 100
    with pytest.raises(UserError, match=r"no trained supernet at .*: retrain.init_from_supernet needs one"):
        Experiment.load(root / "finished.yaml", [f"run_dir={tmp_path}"]).supernet("retrain.init_from_supernet")
    # another data seed would score training images as held-out ones: refused for every reader (retrain too)
    copy = tmp_path / "copy"
    shutil.copytree(run / "supernet", copy / "supernet")
    with pytest.raises(UserError, match="trained with seed 0"):
        Experiment.load(root / "finished.yaml", [f"run_dir={copy}", "seed=1"]).supernet("retrain.init_from_supernet")


def test_runs_made_before_the_config_was_regrouped_keep_their_identities():
    """The hashes ``moga`` 0b069a1 recorded for the quickstart (before ``supernet.eval`` and ``retrain.nesterov``):
    a finished run of that version is still recognised, not refused as another config's."""
    exp = Experiment.load(ROOT / "experiments" / "quickstart.yaml")
    recorded = {"lut": "dd6f90a38412", "supernet": "a095dd7a840d", "search": "f37effc21dc9", "retrain": "9956671ae615"}
    assert {k: exp.identity(k) for k in recorded} == recorded
    assert exp.identity("rankcorr") == "7e79734b1bf5" and exp.identity("rankcorr-benchmark") == recorded["supernet"]
    # a setting those runs could not have had changes the identity
    assert Experiment.load(ROOT / "experiments" / "quickstart.yaml", ["retrain.nesterov=false"]).identity("retrain") != recorded["retrain"]
    layout = Experiment.load(ROOT / "experiments" / "quickstart.yaml", ["supernet.eval.channels_last=false"])
    assert layout.identity("supernet") != recorded["supernet"]
