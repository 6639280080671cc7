"""``moga run`` end to end on a tiny config: every stage's outputs, skipping, refusing changed configs."""

import json

import pandas as pd
import pytest

from moga.cli import main
from moga.experiment import Experiment
from moga.pipeline import run_experiment
from supernet import UserError
from tests.tiny_experiment import QUICKSTART, SMALL_QUICKSTART

TINY = [
    *SMALL_QUICKSTART,
    "supernet.steps=2",
    "supernet.batch_size=16",
    "supernet.warmup_steps=1",
    "supernet.eval_paths=0",
    "supernet.eval.calib_images=32",
    "supernet.eval.images=64",
    "supernet.checkpoint_every=1",
    "search.population=8",
    "search.generations=2",
]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    exp = Experiment.load(QUICKSTART, [*TINY, f"run_dir={run_dir}"])
    run_experiment(exp, progress=False)
    return exp, run_dir


def test_every_stage_leaves_its_outputs(finished_run):
    _, run = finished_run
    for name in ["config.yaml", "stages.json", "report.html", "lut/cpu.json", "supernet/supernet.pt", "supernet/fairness.json",
                 "supernet/curves.csv", "search/history.csv", "search/pareto.csv", "search/pareto.png", "search/hypervolume.png"]:  # fmt: skip
        assert (run / name).exists(), name
    stages = json.loads((run / "stages.json").read_text())
    assert [stages[s]["status"] for s in ("lut", "supernet", "search")] == ["done"] * 3
    front = pd.read_csv(run / "search" / "pareto.csv")
    assert len(front) >= 1 and front["accuracy"].between(0, 100).all()
    html = (run / "report.html").read_text()
    assert "Pareto front" in html and "data:image/png;base64" in html


def test_second_run_skips_finished_stages(finished_run, capsys):
    exp, run = finished_run
    before = (run / "search" / "pareto.csv").read_bytes()
    run_experiment(Experiment(exp.cfg), progress=False)
    out = capsys.readouterr().out
    assert out.count("skipped") == 3
    assert (run / "search" / "pareto.csv").read_bytes() == before


def test_changed_config_is_refused_naming_the_key(finished_run):
    cfg = finished_run[0].cfg
    changed = cfg.model_copy(update={"supernet": cfg.supernet.model_copy(update={"steps": 3})})
    with pytest.raises(UserError, match=r"changed: supernet\.steps"):
        run_experiment(Experiment(changed), progress=False)


def test_front_cli(finished_run, capsys, tmp_path):
    _, run = finished_run
    assert main(["front", str(run), "--plot", str(tmp_path / "f.png")]) == 0
    out = capsys.readouterr().out
    assert "arch" in out and (tmp_path / "f.png").exists()
