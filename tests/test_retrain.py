"""Retraining a picked architecture: the CLI's outputs, pick resolution and its errors, exact resume, EMA.

The quickstart experiment shrunk to width 0.25 at 16x16 with a few optimizer updates (``retrain.max_steps``);
library-level runs score a 200-image slice of the test split, so the whole file stays well under a minute.
"""

from __future__ import annotations

import dataclasses
import json

import pandas as pd
import pytest
import torch

from lut.build import build_table
from lut.measure import FakeBackend
from moga.cli import main
from moga.experiment import Experiment
from moga.retrain import arch_id, resolve_pick, update_summary
from supernet import Arch, UserError, count
from supernet.checkpoint import load_checkpoint
from supernet.config import RetrainConfig
from supernet.data import Split
from supernet.export import onnx_parity
from supernet.standalone import WeightEMA, load_standalone, train_standalone
from tests.tiny_experiment import QUICKSTART, SMALL_QUICKSTART

TINY = [
    *SMALL_QUICKSTART,
    "space.resolution=16",
    "retrain.epochs=1",
    "retrain.batch_size=16",
    "retrain.max_steps=3",
    "retrain.warmup_steps=1",
]
LIGHT = "k3e3-k3e3-k3e3-k3e3-k3e3-k3e3-k3e3-k3e3-k3e3-k3e3-k3e3-k3e3-k3e3-k3e3"  # the cheapest network
OTHER = "k5e3-k3e3-k3e3-k3e3-k3e3-k3e3-k3e3-k3e3-k3e3-k3e3-k3e3-k3e3-k3e3-k3e3"


@pytest.fixture
def experiment(tmp_path):
    """(experiment YAML, the Experiment, run dir) with a fake latency table and a two-row Pareto front."""
    run = tmp_path / "run"
    exp = tmp_path / "exp.yaml"
    exp.write_text(QUICKSTART.read_text() + f"\nrun_dir: {run}\n")
    xp = Experiment.load(exp, TINY)
    build_table(xp.lut_space, FakeBackend(), xp.table_path("cpu"), device="fake", progress=False)
    (run / "search").mkdir(parents=True)
    front = pd.DataFrame({"id": [0, 1], "arch": [LIGHT, OTHER], "accuracy": [41.5, 43.25], "latency_ms": [0.5, 0.6]})
    front.to_csv(run / "search" / "pareto.csv", index=False)
    return exp, xp, run


@pytest.fixture(scope="module")
def small_data():
    """The experiment's dataset with a 200-image test split: scoring is most of a tiny run's cost."""
    xp = Experiment.load(QUICKSTART, TINY)
    data = xp.dataset
    test = Split(data.test.images[::10], data.test.labels[::10])
    return dataclasses.replace(data, test=test), xp.space


def one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


# ----------------------------------------------------------------------------- the command
def test_retrain_pick_writes_result_onnx_and_summary(experiment, capsys):
    exp, xp, run = experiment
    assert main(["retrain", str(exp), "--pick", "1", *TINY, "--no-progress"]) == 0
    out = run / "retrain" / arch_id(OTHER)
    for name in ("result.json", "model.onnx", "model.pt", "last.pt", "curves.csv", "curves.png", "config.yaml"):
        assert (out / name).is_file(), name
    result = json.loads((out / "result.json").read_text())
    arch = Arch.parse(xp.space, OTHER)
    assert result["arch"] == OTHER and result["source"] == {"kind": "row", "value": "1"}
    assert result["supernet_acc"] == 43.25  # from pareto.csv
    assert (result["params"], result["macs"]) == count(arch)
    assert 0 <= result["test_acc"] <= 100 and "test_acc_raw" not in result  # EMA off
    assert set(result["latency_ms"]) == {"cpu"} and result["latency_ms"]["cpu"] > 0
    assert result["measured_latency_ms"] > 0 and result["measured_latency_setup"]["threads"] == 1
    assert result["steps"] == 3 and result["config_hash"] and result["onnx_max_abs_diff"] < 1e-4
    assert onnx_parity(load_standalone(out / "model.pt"), out / "model.onnx", (1, 3, 16, 16)) < 1e-4
    assert "test accuracy" in capsys.readouterr().out

    summary = pd.read_csv(run / "retrain" / "summary.csv")
    assert list(summary["arch_id"]) == [arch_id(OTHER)] and summary.loc[0, "source"] == "row 1"
    assert summary.loc[0, "latency_ms:cpu"] == pytest.approx(result["latency_ms"]["cpu"])

    # the same architecture named by its string: the finished model is reused, not retrained
    assert main(["retrain", str(exp), "--arch", OTHER, *TINY, "--no-progress"]) == 0
    assert "already retrained" in capsys.readouterr().out
    assert len(pd.read_csv(run / "retrain" / "summary.csv")) == 1
    # other training settings on a finished model: refused, not overwritten
    err = one_line_error(capsys, ["retrain", str(exp), "--pick", "1", *TINY, "retrain.lr=0.3"])
    assert "trained with other settings" in err and "retrain.lr" in err


def test_summary_rows_are_replaced_or_appended(tmp_path):
    def result(arch: str, acc: float) -> dict:
        return {
            "arch_id": arch_id(arch), "arch": arch, "source": {"kind": "zoo", "value": "x"}, "test_acc": acc,
            "supernet_acc": None, "params": 1, "macs": 2, "latency_ms": {"cpu": 0.5}, "measured_latency_ms": 0.6,
            "epochs": 1.0, "train_wall_s": 3.0, "config_hash": "abc",
        }  # fmt: skip

    path = tmp_path / "summary.csv"
    update_summary(path, result(LIGHT, 10.0))
    update_summary(path, result(OTHER, 20.0))
    table = update_summary(path, result(LIGHT, 30.0))
    assert list(table["arch_id"]) == [arch_id(OTHER), arch_id(LIGHT)]
    assert list(pd.read_csv(path)["test_acc"]) == [20.0, 30.0]
    assert list(table.columns[:7]) == ["arch_id", "source", "test_acc", "supernet_acc", "params", "macs", "latency_ms:cpu"]


def test_digests_that_look_like_numbers_stay_text(tmp_path):
    """A hex digest of digits only, or of digits and one e, is text: ``update_summary`` re-reads the summary, and
    the run report links ``retrain/<arch_id>/``."""
    from moga.report_sections import read_csv

    row = {
        "arch_id": "00123456", "arch": LIGHT, "source": {"kind": "zoo", "value": "x"}, "test_acc": 1.0, "supernet_acc": None,
        "params": 1, "macs": 2, "latency_ms": {}, "measured_latency_ms": 0.6, "epochs": 1.0, "train_wall_s": 3.0,
        "config_hash": "12345e678901",
    }  # fmt: skip
    path = tmp_path / "summary.csv"
    update_summary(path, row)
    table = update_summary(path, row | {"arch_id": "1234e567", "arch": OTHER})  # re-reads the first row
    assert list(table["arch_id"]) == ["00123456", "1234e567"] and list(table["config_hash"]) == ["12345e678901"] * 2
    report = read_csv(path)
    assert report is not None and list(report["arch_id"]) == ["00123456", "1234e567"]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--pick", "7"], "row 7 is not in"),
        (["--pick", "one"], "expects a row id"),
        (["--zoo", "fairnas_a"], "belongs to space 'fairnas'"),
        (["--zoo", "moga_z"], "unknown zoo model"),
        (["--arch", "k3e3-k9e9"], "has 2 tokens"),
    ],
)
def test_bad_picks_are_one_line_user_errors(experiment, capsys, args, needle):
    exp, _, _ = experiment
    assert needle in one_line_error(capsys, ["retrain", str(exp), *args, *TINY])


def test_pick_without_a_front_names_the_missing_file(experiment, capsys):
    exp, xp, run = experiment
    (run / "search" / "pareto.csv").unlink()
    err = one_line_error(capsys, ["retrain", str(exp), "--pick", "0", *TINY])
    assert "pareto.csv" in err and "moga search" in err
    with pytest.raises(UserError, match="exactly one"):
        resolve_pick(xp, row="0", arch=LIGHT)
    assert resolve_pick(xp, zoo="moga_c").supernet_acc is None  # unknown to a search that never ran


def test_arch_pick_finds_the_supernet_estimate_in_the_front(experiment):
    _, xp, _ = experiment
    pick = resolve_pick(xp, arch=LIGHT)
    assert (pick.kind, pick.supernet_acc, pick.label) == ("arch", 41.5, "arch")


# ----------------------------------------------------------------------------- training
def _cfg(**kw: object) -> RetrainConfig:
    return RetrainConfig(**{"epochs": 1, "batch_size": 16, "max_steps": 4, "warmup_steps": 1, "checkpoint_every": 2, **kw})


def test_resume_is_bitwise_identical(small_data, tmp_path, monkeypatch):
    data, space = small_data
    arch, cfg = Arch.parse(space, LIGHT), _cfg(ema=0.9)
    straight = train_standalone(arch, data, cfg, tmp_path / "straight", progress=False)

    import supernet.standalone as standalone

    real = standalone.standalone_step

    def crashing_step(*args, **kwargs):
        step, calls = real(*args, **kwargs), []

        def crash_in_step_3(x, y):
            calls.append(1)
            if len(calls) == 3:
                raise KeyboardInterrupt  # after the step-2 checkpoint
            return step(x, y)

        return crash_in_step_3

    monkeypatch.setattr(standalone, "standalone_step", crashing_step)
    with pytest.raises(KeyboardInterrupt):
        train_standalone(arch, data, cfg, tmp_path / "resumed", progress=False)
    monkeypatch.setattr(standalone, "standalone_step", real)
    assert load_checkpoint(tmp_path / "resumed" / "last.pt")["step"] == 2
    with pytest.raises(UserError, match="pass --resume"):
        train_standalone(arch, data, cfg, tmp_path / "resumed", progress=False)
    resumed = train_standalone(arch, data, cfg, tmp_path / "resumed", resume=True, progress=False)

    a, b = (torch.load(tmp_path / run / "model.pt", weights_only=True) for run in ("straight", "resumed"))
    for part in ("model", "raw_model"):  # EMA weights and the raw ones
        assert a[part].keys() == b[part].keys()
        assert all(torch.equal(a[part][k], b[part][k]) for k in a[part]), part
    assert resumed["test_acc"] == straight["test_acc"] and resumed["final_loss"] == straight["final_loss"]


def test_ema_weights_are_evaluated_and_saved(small_data, tmp_path):
    data, space = small_data
    arch = Arch.parse(space, LIGHT)
    plain = train_standalone(arch, data, _cfg(max_steps=2), tmp_path / "plain", progress=False)
    assert "test_acc_raw" not in plain and plain["ema"] == 0.0
    assert not torch.load(tmp_path / "plain" / "model.pt", weights_only=True)["raw_model"]

    averaged = train_standalone(arch, data, _cfg(max_steps=2, ema=0.5), tmp_path / "ema", progress=False)
    assert {"test_acc", "test_acc_raw"} <= set(averaged)
    ema, raw = load_standalone(tmp_path / "ema" / "model.pt"), load_standalone(tmp_path / "ema" / "model.pt", raw=True)
    weight = "layers.0.project.conv.weight"
    assert not torch.equal(ema.state_dict()[weight], raw.state_dict()[weight])
    # raw weights of the EMA run = the plain run's weights: the average never feeds back into training
    plain_raw = load_standalone(tmp_path / "plain" / "model.pt").state_dict()
    assert all(torch.equal(v, plain_raw[k]) for k, v in raw.state_dict().items())


def test_weight_ema_update_rule():
    model = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema = WeightEMA(model, decay=0.5)
    with torch.no_grad():
        model.weight.fill_(3.0)
    ema.update(model)  # warm-up: decay min(0.5, 2 / 11)
    d = 2 / 11
    assert torch.allclose(ema.shadow["weight"], torch.full((1, 2), d * 1.0 + (1 - d) * 3.0))
    for _ in range(20):
        ema.update(model)
    assert ema.updates == 21 and torch.allclose(ema.shadow["weight"], torch.full((1, 2), 3.0), atol=1e-5)
    restored = WeightEMA(model, decay=0.5)
    restored.load_state_dict(ema.state_dict())
    assert restored.updates == 21 and torch.equal(restored.shadow["weight"], ema.shadow["weight"])
    # the averaged copy carries the shadow; the live model is untouched
    assert torch.equal(ema.averaged(model).weight, ema.shadow["weight"]) and float(model.weight.detach()[0, 0]) == 3.0
