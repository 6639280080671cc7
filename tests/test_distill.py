"""In-place distillation in the fair step (``supernet.distill``): the loss, fairness, the teacher, bad input, fingerprint.

Everything runs on the tiny space (3 layers, choices (5, 4, 5)) at 16x16 on a CPU, in a few seconds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import supernet.step as step_module
from moga.cli import main
from supernet import UserError, get_space
from supernet.config import SupernetConfig
from supernet.data import load_dataset
from supernet.model import block_cost
from supernet.optim import Precision
from supernet.sampler import FairnessAudit, FairSampler, Genes
from supernet.space import SearchSpace
from supernet.step import supernet_step, teacher_genes
from supernet.supernet import Supernet
from supernet.train import NON_WEIGHT_KEYS, train_supernet, training_fingerprint
from tests.tiny_experiment import tiny_space_yaml, write_experiment

CPU = Precision(torch.device("cpu"), False)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> SearchSpace:
    path = tmp_path_factory.mktemp("spaces") / "tiny_dropout.yaml"
    path.write_text(tiny_space_yaml(dropout=0.2))  # head dropout on: the teacher draws its masks first
    return get_space(str(path), num_classes=10, resolution=16, variant="cifar")


@pytest.fixture(scope="module")
def data():
    return load_dataset("embedded", resolution=16, seed=0)


def _grads(net: Supernet) -> dict[str, torch.Tensor]:
    return {name: p.grad.clone() for name, p in net.named_parameters() if p.grad is not None}


def _step(space: SearchSpace, paths: list[Genes], seed: int = 1, **kw: object) -> tuple[dict[str, torch.Tensor], float, Supernet]:
    torch.manual_seed(0)
    net = Supernet(space).train()
    x, y = torch.randn(8, 3, 16, 16), torch.randint(0, 10, (8,))
    torch.manual_seed(seed)
    stats = supernet_step(net, x, y, paths, torch.nn.CrossEntropyLoss(label_smoothing=0.1), CPU, **kw)
    return _grads(net), stats.loss, net


# ----------------------------------------------------------------------------- the loss
def test_distill_zero_is_the_plain_fair_step_bit_for_bit(tiny, monkeypatch):
    paths = FairSampler(tiny.n_choices, seed=0).sample()
    plain, loss, _ = _step(tiny, paths)
    calls = []
    real = Supernet.forward_path
    monkeypatch.setattr(Supernet, "forward_path", lambda self, f, g: calls.append(g) or real(self, f, g))
    zero, loss0, _ = _step(tiny, paths, distill=0.0, teacher=teacher_genes(tiny))
    assert len(calls) == len(paths)  # no teacher forward
    assert plain.keys() == zero.keys() and loss == loss0
    assert all(torch.equal(plain[k], zero[k]) for k in plain)


def _reference(space: SearchSpace, paths: list[Genes], d: float, micro_batches: int) -> tuple[dict[str, torch.Tensor], float]:
    """The distilled step computed independently: full passes per path, the teacher by ``forward_path`` under no_grad."""
    torch.manual_seed(0)
    net = Supernet(space).train()
    x, y = torch.randn(8, 3, 16, 16), torch.randint(0, 10, (8,))
    teacher = tuple(int(np.argmax([block_cost(space.layer_shape(i, c))[1] for c in range(n)])) for i, n in enumerate(space.n_choices))
    criterion = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    torch.manual_seed(1)
    ces = []
    for xc, yc in zip(x.tensor_split(micro_batches), y.tensor_split(micro_batches), strict=True):
        with torch.no_grad():
            p = torch.softmax(net.forward_path(net.shared_features(xc), teacher), dim=1)
        for genes in paths:
            logits = net(xc, genes)
            ce = criterion(logits, yc)
            kl = (p * (p.log() - torch.log_softmax(logits, dim=1))).sum(1).mean()  # KL(teacher || path), batch mean
            (((1 - d) * ce + d * kl) / micro_batches).backward()
            ces.append(ce.item())
    shared = {id(q) for q in net.shared_parameters()}
    grads = {name: q.grad / (len(paths) if id(q) in shared else 1) for name, q in net.named_parameters() if q.grad is not None}
    return grads, float(np.mean(ces))


@pytest.mark.parametrize("micro_batches", [1, 2])
def test_distilled_gradients_equal_an_independent_computation(tiny, micro_batches):
    paths = FairSampler(tiny.n_choices, seed=0).sample()
    got, loss, _ = _step(tiny, paths, micro_batches=micro_batches, distill=0.5, teacher=teacher_genes(tiny))
    want, ce = _reference(tiny, paths, 0.5, micro_batches)
    assert got.keys() == want.keys()
    for name, grad in got.items():
        torch.testing.assert_close(grad, want[name], rtol=1e-5, atol=1e-6, msg=name)
    assert loss == pytest.approx(ce, rel=1e-6)  # the reported loss is the cross-entropy part
    plain, _, _ = _step(tiny, paths, micro_batches=micro_batches)
    assert any(not torch.allclose(plain[k], got[k]) for k in got)  # the KL term does change the gradients


def test_the_teacher_defaults_to_the_largest_path(tiny):
    paths = FairSampler(tiny.n_choices, seed=2).sample()
    given, _, _ = _step(tiny, paths, distill=0.3, teacher=teacher_genes(tiny))
    default, _, _ = _step(tiny, paths, distill=0.3)
    assert all(torch.equal(given[k], default[k]) for k in given)


# ----------------------------------------------------------------------------- fairness and the teacher
def test_every_choice_is_still_trained_exactly_once_per_step(tiny):
    """Forward passes with gradients enabled per choice block (each one backward contribution) equal the paths'
    use of it: the teacher's forward, without gradients, trains nothing."""
    torch.manual_seed(0)
    net = Supernet(tiny).train()
    trained = np.zeros((len(tiny.n_choices), max(tiny.n_choices)), dtype=np.int64)
    for layer, blocks in enumerate(net.layers):
        for choice, block in enumerate(blocks):

            def hook(_m, _i, _o, at=(layer, choice)) -> None:
                trained[at] += torch.is_grad_enabled()

            block.register_forward_hook(hook)
    sampler, audit = FairSampler(tiny.n_choices, seed=5), FairnessAudit(tiny.n_choices, strict=True)
    teacher = teacher_genes(tiny)
    for _ in range(3):
        paths = sampler.sample()
        audit.record(paths)  # raises if a step is not strictly fair
        before = trained.copy()
        supernet_step(
            net,
            torch.randn(8, 3, 16, 16),
            torch.randint(0, 10, (8,)),
            paths,
            torch.nn.CrossEntropyLoss(),
            CPU,
            distill=0.5,
            teacher=teacher,
        )
        step = trained - before
        for layer, n in enumerate(tiny.n_choices):
            assert step[layer, :n].tolist() == np.bincount([p[layer] for p in paths], minlength=n).tolist()
        assert step[0, :5].tolist() == [1] * 5 and step[2, :5].tolist() == [1] * 5  # full layers: each choice once
    assert audit.counts.tolist() == trained.tolist()


def test_the_teacher_is_the_path_with_the_most_multiply_adds(tiny):
    macs = [[block_cost(tiny.layer_shape(i, c))[1] for c in range(n)] for i, n in enumerate(tiny.n_choices)]
    expected = tuple(max(range(len(row)), key=lambda c, row=row: (row[c], -c)) for row in macs)
    assert teacher_genes(tiny) == expected == (3, 3, 3)  # k5e2se on every layer
    names = [tiny.layers[i].choices[g].token for i, g in enumerate(expected)]
    assert names == ["k5e2se"] * 3


def test_teacher_ties_go_to_the_lowest_index(tiny, monkeypatch):
    tables = (0, 0, [], [np.array([5, 9, 9, 1]), np.array([7, 7]), np.array([0, 0, 0])])
    monkeypatch.setattr(step_module, "cost_tables", lambda space: tables)
    assert teacher_genes(tiny) == (1, 0, 0)


# ----------------------------------------------------------------------------- bad input, fingerprint
def test_distill_with_the_uniform_sampler_is_a_user_error(tiny, data, tmp_path):
    cfg = SupernetConfig(sampler="uniform", distill=0.5, steps=1, batch_size=8)
    with pytest.raises(UserError, match=r"^supernet\.distill: in-place distillation is defined for the fair sampler only"):
        train_supernet(tiny, data, cfg, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()  # refused before anything is written


def test_cli_distill_with_uniform_is_one_line_and_exit_2(tmp_path, capsys):
    run = tmp_path / "run"
    exp = write_experiment(tmp_path, run, "exp.yaml")
    capsys.readouterr()
    assert main(["supernet", "train", str(exp), "supernet.sampler=uniform", "supernet.distill=0.5", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("moga: error: supernet.distill: ") and "fair sampler only" in err, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert not [p for p in (run / "supernet").rglob("*") if p.is_file()]  # nothing trained or written


def test_fingerprint_is_unchanged_at_zero_and_changes_with_distill(tiny, data):
    def old_fingerprint(cfg: SupernetConfig) -> dict:
        """What ``training_fingerprint`` recorded before ``distill`` existed."""
        dump = cfg.model_dump(mode="json")
        return {k: v for k, v in dump.items() if k not in NON_WEIGHT_KEYS and k != "distill"}

    base = training_fingerprint(tiny, data, SupernetConfig(), 0)
    assert "distill" not in base["supernet"] and base["supernet"] == old_fingerprint(SupernetConfig())
    assert training_fingerprint(tiny, data, SupernetConfig(distill=0.0), 0) == base
    half = training_fingerprint(tiny, data, SupernetConfig(distill=0.5), 0)
    assert half != base and half["supernet"]["distill"] == 0.5
    assert {k: v for k, v in half["supernet"].items() if k != "distill"} == base["supernet"]


# ----------------------------------------------------------------------------- a short run
def _run(space: SearchSpace, data, out: Path, distill: float) -> Supernet:
    cfg = SupernetConfig(steps=3, batch_size=16, warmup_steps=1, eval_paths=0, checkpoint_every=10, distill=distill)
    return train_supernet(space, data, cfg, out, seed=0, progress=False)


def test_a_distilled_run_is_deterministic_and_fair(tiny, data, tmp_path):
    import json

    a, b = _run(tiny, data, tmp_path / "a", 0.5), _run(tiny, data, tmp_path / "b", 0.5)
    plain = _run(tiny, data, tmp_path / "plain", 0.0)
    sa, sb, sp = a.state_dict(), b.state_dict(), plain.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sp[k]) for k in sa)
    report = json.loads((tmp_path / "a" / "fairness.json").read_text())
    assert report["strict"] and report["steps"] == 3 and set(report["layers"][0]["counts"].values()) == {3}
    rows = (tmp_path / "a" / "curves.csv").read_text().splitlines()[1:]
    assert len(rows) == 3 and all(float(r.split(",")[1]) > 0 for r in rows)
