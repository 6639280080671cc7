"""Supernet training: strict fairness, the shared-feature fair step, exact resume, DDP, the CLI.

Everything runs on a tiny space (3 layers, 4-5 choices, one layer without ``skip`` so the padded
permutation is exercised) at 16x16, so the whole file stays well under a minute and a half on a CPU.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from moga.cli import main
from supernet import Arch, UserError, get_space
from supernet.checkpoint import load_checkpoint
from supernet.config import SupernetConfig
from supernet.data import load_dataset
from supernet.optim import Precision
from supernet.sampler import FairnessAudit, FairSampler, UniformSampler
from supernet.step import supernet_step
from supernet.supernet import Supernet
from supernet.train import load_supernet, train_supernet
from tests.tiny_experiment import tiny_space_yaml

FAST = {"batch_size": 16, "warmup_steps": 2, "eval": {"images": 100, "calib_images": 50}, "eval_paths": 2, "lr": 0.2}


@pytest.fixture(scope="module")
def space_files(tmp_path_factory: pytest.TempPathFactory) -> dict[float, Path]:
    root = tmp_path_factory.mktemp("spaces")
    files = {}
    for dropout in (0.0, 0.2):
        files[dropout] = root / f"tiny_d{dropout}.yaml"
        files[dropout].write_text(tiny_space_yaml(dropout=dropout))
    return files


@pytest.fixture(scope="module")
def tiny(space_files: dict[float, Path]):
    return get_space(str(space_files[0.2]), num_classes=10, resolution=16, variant="cifar")


@pytest.fixture(scope="module")
def data():
    return load_dataset("embedded", resolution=16, seed=0)


def test_tiny_space_has_a_padded_layer(tiny):
    assert tiny.n_choices == (5, 4, 5)  # the stride-2 layer offers no skip


# ----------------------------------------------------------------------------- samplers
def test_fair_sampler_trains_every_choice_once_per_step():
    n_choices = (12, 12, 13, 5)
    sampler, audit = FairSampler(n_choices, seed=1), FairnessAudit(n_choices, strict=True)
    for _ in range(50):
        paths = sampler.sample()
        assert len(paths) == 13
        for layer, n in enumerate(n_choices):
            counts = np.bincount([p[layer] for p in paths], minlength=n)
            lo, hi = 13 // n, -(-13 // n)
            assert counts.min() >= lo and counts.max() <= hi  # padded layers: floor or ceil(m/n)
        assert audit.record(paths) <= 1
    totals = audit.counts
    for layer, n in enumerate(n_choices):  # ... and cumulatively within one update of each other
        assert totals[layer, :n].max() - totals[layer, :n].min() <= 1
    assert totals[2, :13].tolist() == [50] * 13


def test_fair_sampler_is_seeded_and_resumable():
    a, b = FairSampler((12,) * 3 + (5,), seed=7), FairSampler((12,) * 3 + (5,), seed=7)
    assert a.sample() == b.sample()
    state = a.state_dict()
    expected = [a.sample() for _ in range(3)]
    c = FairSampler((12,) * 3 + (5,), seed=123)
    c.load_state_dict(state)
    assert [c.sample() for _ in range(3)] == expected
    assert FairSampler((12,) * 3 + (5,), seed=8).sample() != expected[0]


def test_strict_audit_rejects_an_unfair_step():
    audit = FairnessAudit((3, 3), strict=True)
    audit.record([(0, 1), (1, 2), (2, 0)])
    with pytest.raises(RuntimeError, match="strict fairness broken at layer 2"):
        audit.record([(0, 1), (1, 1), (2, 0)])


def test_uniform_sampler_draws_one_path():
    sampler = UniformSampler((12, 12, 5), seed=0)
    paths = [sampler.sample() for _ in range(200)]
    assert all(len(p) == 1 for p in paths)
    firsts = np.bincount([p[0][2] for p in paths], minlength=5)
    assert firsts.min() > 20  # uniform over the layer's choices


# ----------------------------------------------------------------------------- the fair step
@pytest.mark.parametrize("shared_grad", ["sum", "mean"])
def test_fair_step_gradients_equal_m_full_passes(tiny, shared_grad):
    """Shared features once + m path backward passes == m full forward/backward passes (train-mode BN,
    dropout on: the head draws its masks in the same order in both)."""
    torch.manual_seed(0)
    net = Supernet(tiny).train()
    x, y = torch.randn(8, 3, 16, 16), torch.randint(0, 10, (8,))
    paths = FairSampler(tiny.n_choices, seed=0).sample()
    criterion = torch.nn.CrossEntropyLoss(label_smoothing=0.1)

    torch.manual_seed(1)
    supernet_step(net, x, y, paths, criterion, Precision(torch.device("cpu"), False), shared_grad)
    fair = {name: p.grad.clone() for name, p in net.named_parameters() if p.grad is not None}

    net.zero_grad(set_to_none=True)
    torch.manual_seed(1)
    for genes in paths:
        criterion(net(x, genes), y).backward()
    shared = {id(p) for p in net.shared_parameters()}
    m = len(paths) if shared_grad == "mean" else 1
    reference = {name: p.grad / (m if id(p) in shared else 1) for name, p in net.named_parameters() if p.grad is not None}

    assert fair.keys() == reference.keys()
    assert len(fair) == len([p for p in net.parameters()])  # every choice block was trained (skip has none)
    for name, grad in fair.items():
        torch.testing.assert_close(grad, reference[name], rtol=1e-5, atol=1e-6, msg=name)


def test_uniform_step_trains_exactly_one_path(tiny):
    torch.manual_seed(0)
    net = Supernet(tiny).train()
    genes = UniformSampler(tiny.n_choices, seed=3).sample()
    supernet_step(
        net,
        torch.randn(4, 3, 16, 16),
        torch.randint(0, 10, (4,)),
        genes,
        torch.nn.CrossEntropyLoss(),
        Precision(torch.device("cpu"), False),
    )
    for layer, blocks in enumerate(net.layers):
        for choice, block in enumerate(blocks):
            grads = [p.grad for p in block.parameters()]
            assert all(g is not None for g in grads) == (choice == genes[0][layer]) or not grads


# ----------------------------------------------------------------------------- training runs
def _train(space, data, out: Path, resume: bool = False, **kw):
    cfg = SupernetConfig(**{**FAST, **kw})
    return train_supernet(space, data, cfg, out, seed=0, resume=resume, progress=False)


def test_fairness_json_counts_are_equal_and_checked_every_step(tiny, data, tmp_path):
    _train(tiny, data, tmp_path, steps=4, eval_paths=0, checkpoint_every=10)
    report = json.loads((tmp_path / "fairness.json").read_text())
    assert report["sampler"] == "fair" and report["strict"] and report["steps"] == 4
    assert len(report["step_spread"]) == 4 and report["max_step_spread"] <= 1  # recorded per step
    full, padded = report["layers"][0]["counts"], report["layers"][1]["counts"]
    assert set(full.values()) == {4} and len(full) == 5  # 5 paths per step, every choice once per step
    assert sum(padded.values()) == 20 and max(padded.values()) - min(padded.values()) <= 1


def test_uniform_training_counts_one_path_per_step(tiny, data, tmp_path):
    _train(tiny, data, tmp_path, steps=3, sampler="uniform", eval_paths=0)
    report = json.loads((tmp_path / "fairness.json").read_text())
    assert not report["strict"]
    assert all(sum(layer["counts"].values()) == 3 for layer in report["layers"])


def test_resume_is_bitwise_identical(tiny, data, tmp_path, monkeypatch):
    settings = {"steps": 6, "checkpoint_every": 3, "eval_every": 3}
    straight = _train(tiny, data, tmp_path / "straight", **settings)

    import supernet.train as train_module

    real_step, calls = train_module.supernet_step, []

    def crash_in_step_4(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt  # after the step-3 checkpoint
        return real_step(*args, **kwargs)

    monkeypatch.setattr(train_module, "supernet_step", crash_in_step_4)
    with pytest.raises(KeyboardInterrupt):
        _train(tiny, data, tmp_path / "resumed", **settings)
    monkeypatch.setattr(train_module, "supernet_step", real_step)
    assert load_checkpoint(tmp_path / "resumed" / "last.pt")["step"] == 3
    with pytest.raises(UserError, match="pass --resume"):
        _train(tiny, data, tmp_path / "resumed", **settings)
    resumed = _train(tiny, data, tmp_path / "resumed", resume=True, **settings)

    a, b = straight.state_dict(), resumed.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    for name in ("fairness.json", "curves.csv"):
        lines = [(tmp_path / run / name).read_text().splitlines() for run in ("straight", "resumed")]
        if name == "curves.csv":  # timing columns differ; losses, accuracies and learning rates may not
            lines = [[",".join(r.split(",")[:4] + r.split(",")[6:]) for r in run] for run in lines]
        assert lines[0] == lines[1], name
    final = load_supernet(tmp_path / "resumed" / "supernet.pt")
    assert all(torch.equal(v, final.state_dict()[k]) for k, v in b.items())


def test_corrupt_checkpoint_is_a_user_error_naming_the_file(tiny, data, tmp_path):
    _train(tiny, data, tmp_path, steps=2, eval_paths=0)
    last = tmp_path / "last.pt"
    last.write_bytes(last.read_bytes()[: len(last.read_bytes()) // 2])
    with pytest.raises(UserError, match=r"last\.pt: corrupt or truncated checkpoint"):
        _train(tiny, data, tmp_path, steps=2, eval_paths=0, resume=True)
    (tmp_path / "supernet.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match=r"supernet\.pt: corrupt"):
        load_supernet(tmp_path / "supernet.pt")


# ----------------------------------------------------------------------------- CLI and DDP
def _experiment(tmp_path: Path, space_file: Path, run_dir: Path, **supernet: object) -> Path:
    cfg = {
        "name": "tiny",
        "run_dir": str(run_dir),
        "space": {"name": str(space_file), "resolution": 16},
        "supernet": {**FAST, "steps": 3, **supernet},
    }
    path = tmp_path / f"{run_dir.name}.yaml"
    path.write_text(json.dumps(cfg))  # JSON is YAML
    return path


def test_cli_train_writes_run_files_and_eval_prints_accuracy(tmp_path, space_files, capsys):
    exp = _experiment(tmp_path, space_files[0.2], tmp_path / "run")
    assert main(["supernet", "train", str(exp), "--no-progress"]) == 0
    out = tmp_path / "run" / "supernet"
    for name in ("fairness.json", "curves.csv", "curves.png", "supernet.pt", "last.pt", "config.yaml"):
        assert (out / name).is_file(), name
    header, *rows = (out / "curves.csv").read_text().splitlines()
    assert header == "step,loss,train_acc,lr,images_per_s,elapsed_s,val_acc,val_acc_best" and len(rows) == 3
    assert rows[-1].split(",")[6]  # the final random-path validation
    assert "supernet (fair): 3 steps in" in capsys.readouterr().err  # the summary line
    assert main(["supernet", "train", str(exp), "supernet.lr=0.3"]) == 2  # a finished run is not overwritten
    assert "use another run_dir" in capsys.readouterr().err

    arch = str(Arch(get_space(str(space_files[0.2]), num_classes=10, resolution=16, variant="cifar"), (4, 1, 0)))
    assert main(["supernet", "eval", str(exp), "--arch", arch]) == 0
    line = capsys.readouterr().out.strip()
    assert line.endswith("BN recalibrated on 50 training images]") and arch in line
    assert 0.0 <= float(line.split("%")[0]) <= 100.0
    assert main(["supernet", "eval", str(exp), "--zoo", "moga_a"]) == 2  # another space's model


@pytest.mark.slow
def test_ddp_two_processes_match_single_process_micro_batches(tmp_path, space_files, tiny, data):
    """2 gloo ranks, each on its half of every global batch, == 1 process with 2 micro-batches (the same
    per-shard BN statistics, gradients averaged). Dropout off: masks are per rank by design."""
    exp = _experiment(tmp_path, space_files[0.0], tmp_path / "ddp", steps=3, eval_paths=0)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [*torchrun, "-m", "moga", "supernet", "train", str(exp), "--no-progress"], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    ddp = load_supernet(tmp_path / "ddp" / "supernet" / "supernet.pt").state_dict()

    space = get_space(str(space_files[0.0]), num_classes=10, resolution=16, variant="cifar")
    single = _train(space, data, tmp_path / "single", steps=3, eval_paths=0, micro_batches=2).state_dict()
    whole = _train(space, data, tmp_path / "whole", steps=3, eval_paths=0).state_dict()
    params = [name for name, _ in Supernet(space).named_parameters()]
    torch.manual_seed(0)  # train_supernet's initialisation
    init = Supernet(space).state_dict()
    worst = max(float((ddp[k] - single[k]).abs().max()) for k in params)
    moved = max(float((ddp[k] - init[k]).abs().max()) for k in params)
    bn_effect = max(float((whole[k] - single[k]).abs().max()) for k in params)
    # Measured: 6e-8 apart, weights moved 8e-2, whole-batch BN statistics change them by 5e-3.
    assert worst < 1e-5 and moved > 1e-2, (worst, moved)
    assert bn_effect > 100 * worst, (bn_effect, worst)  # the test sees per-shard BN statistics: not vacuous
    shutil.rmtree(tmp_path / "ddp")
