"""Subnet accuracy estimates: the trie walk equals one-by-one evaluation and extract()+recalibration exactly.

A random-weight supernet of the shared tiny space (squeeze-excite, residual, stride and skip choices) on small
synthetic images keeps this fast; one test runs the full MoGA space. Untrained kaiming-initialised paths
have vanishing activations with the initial BN statistics, so the comparisons use recalibrated BN (which
normalises) and compare logits, not just accuracies near chance.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from supernet import Arch, get_space
from supernet.data import Dataset, Split
from supernet.evaluate import SubnetEvaluator, count_prefixes, extract_recalibrated
from supernet.supernet import Supernet
from tests.tiny_experiment import tiny_space_yaml

RES = 8
CALIB, CALIB_BATCH, BATCH = 96, 40, 32  # uneven chunks: the cumulative average is exercised


def _dataset(n_train: int = 200, n_val: int = 80, classes: int = 10) -> Dataset:
    g = torch.Generator().manual_seed(0)

    def split(n: int) -> Split:
        labels = torch.arange(n) % classes
        # Class-dependent brightness, so a network's predictions are not pure noise.
        images = torch.randint(0, 200, (n, 3, RES, RES), generator=g, dtype=torch.uint8) + (labels * 5).view(-1, 1, 1, 1).to(torch.uint8)
        return Split(images, labels)

    names = [f"c{i}" for i in range(classes)]
    return Dataset(split(n_train), split(n_val), split(n_val), names, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), RES, "cifar")


@pytest.fixture(scope="module")
def tiny_fc_space_file(tmp_path_factory) -> str:
    """The shared tiny space with an fc layer and dropout in the head, which extract() must carry over too."""
    path = tmp_path_factory.mktemp("spaces") / "tiny_fc.yaml"
    path.write_text(tiny_space_yaml(fc_channels=48, dropout=0.2))
    return str(path)


def _net(space_name: str) -> Supernet:
    torch.manual_seed(0)
    space = get_space(space_name, num_classes=10, resolution=RES, variant="cifar")
    net = Supernet(space)
    with torch.no_grad():  # distinct trained-like statistics per block, so a wrong restore would show
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.3, 0.3)
                m.running_var.uniform_(0.5, 1.5)
    return net.eval()


def _population(space, n: int = 16, seed: int = 0) -> list[Arch]:
    """Offspring of a small pool (crossover + mutation): many shared prefixes, plus a duplicate."""
    rng = np.random.default_rng(seed)
    pool = [Arch.random(space, rng).genome for _ in range(3)]
    pop = []
    for _ in range(n - 1):
        a, b = rng.choice(len(pool), 2, replace=False)
        child = np.where(rng.random(space.num_layers) < 0.5, pool[a], pool[b])
        mutate = rng.random(space.num_layers) < 1 / space.num_layers
        child[mutate] = [rng.integers(m) for m in np.array(space.n_choices)[mutate]]
        pop.append(Arch.from_genome(space, child))
    return [*pop, pop[0]]


def _evaluator(net: Supernet, data: Dataset, **kwargs) -> SubnetEvaluator:
    settings = {"calib_images": CALIB, "batch_size": BATCH, "calib_batch_size": CALIB_BATCH, **kwargs}
    return SubnetEvaluator(net, data, **settings)


@pytest.fixture(scope="module")
def data() -> Dataset:
    return _dataset()


@pytest.fixture(scope="module")
def net(tiny_fc_space_file) -> Supernet:
    return _net(tiny_fc_space_file)


def test_trie_equals_one_by_one_exactly(net, data):
    pop = _population(net.space, n=16)
    trie, single = _evaluator(net, data), _evaluator(net, data, use_trie=False)
    for a, b in zip(trie.logits(pop), single.logits(pop), strict=True):
        assert torch.equal(a, b)
    assert trie.evaluate(pop) == single.evaluate(pop)
    distinct = list({a.genes for a in pop})
    assert trie.blocks_run == 2 * count_prefixes(distinct)  # logits() once, evaluate() once
    assert single.blocks_run == 2 * len(distinct) * net.space.num_layers
    assert trie.blocks_run < single.blocks_run
    # One path at a time streams chunk by chunk and stores nothing; the trie keeps its branch points only.
    assert single.peak_activation_bytes == 0 < trie.peak_activation_bytes


def test_trie_equals_one_by_one_on_the_moga_space(data):
    net = _net("moga")
    pop = _population(net.space, n=4)
    settings = {"calib_images": 32, "calib_batch_size": 12, "eval_images": 24}
    trie, single = _evaluator(net, data, **settings), _evaluator(net, data, use_trie=False, **settings)
    for a, b in zip(trie.logits(pop), single.logits(pop), strict=True):
        assert torch.equal(a, b)
    assert trie.blocks_run < single.blocks_run


def _reference_logits(net: Supernet, data: Dataset, arch: Arch, channels_last: bool) -> torch.Tensor:
    """The straightforward path: extract, reset + recalibrate the path's BNs (not the stem's), evaluate."""
    model = net.extract(arch).eval()
    for part in (model.layers, model.head):
        for m in part.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.reset_running_stats()
                m.momentum = None
        part.train()
    calib = data.calibration_batch(CALIB, seed=0, channels_last=channels_last)
    with torch.no_grad():
        for i in range(0, CALIB, CALIB_BATCH):
            model(calib[i : i + CALIB_BATCH])
        model.eval()
        return torch.cat([model(x) for x, _ in data.loader("search_val", BATCH, train=False, channels_last=channels_last)])


@pytest.mark.parametrize("channels_last", [False, True])
def test_equals_extract_and_recalibrate(net, data, channels_last):
    ev = _evaluator(net, data, channels_last=channels_last)
    pop = _population(net.space, n=2, seed=1)
    for arch, logits in zip(pop, ev.logits(pop), strict=True):
        ref = _reference_logits(net, data, arch, channels_last)
        # Bit-identical on CPU: the same modules run on the same chunks in the same order.
        torch.testing.assert_close(logits, ref, rtol=0, atol=0)
        assert logits.std() > 1e-3  # recalibrated BN keeps the signal alive: a meaningful comparison
        model = extract_recalibrated(net, arch, data.calibration_batch(CALIB, 0, channels_last), CALIB_BATCH)
        with torch.no_grad():
            val = data.loader("search_val", BATCH, train=False, channels_last=channels_last)
            torch.testing.assert_close(torch.cat([model(x) for x, _ in val]), ref, rtol=0, atol=0)
    torch.testing.assert_close(ev.labels, data.search_val.labels, rtol=0, atol=0)


def test_cache_hits_are_not_recomputed(net, data):
    ev = _evaluator(net, data)
    pop = _population(net.space, n=6, seed=2)
    first = ev.evaluate(pop)
    blocks, heads = ev.blocks_run, ev.heads_run
    assert heads == len({a.genes for a in pop})
    assert ev.evaluate(list(reversed(pop))) == list(reversed(first))
    assert (ev.blocks_run, ev.heads_run) == (blocks, heads)
    new = Arch.random(net.space, np.random.default_rng(99))
    ev.evaluate([*pop, new])
    assert ev.heads_run == heads + 1
    assert ev.blocks_run - blocks == net.space.num_layers  # only the new path runs
    assert all(0.0 <= acc <= 100.0 for acc, _ in ev.cache.values())


def test_recalibration_off_uses_running_stats(net, data):
    ev = _evaluator(net, data, calib_images=0)
    pop = _population(net.space, n=3, seed=3)
    with torch.no_grad():
        val = torch.cat([x for x, _ in data.loader("search_val", BATCH, train=False)])
        for arch, logits in zip(pop, ev.logits(pop), strict=True):
            torch.testing.assert_close(logits, net(val, arch.genes), rtol=1e-5, atol=1e-6)
    recalibrated = _evaluator(net, data).logits(pop[:1])[0]
    assert not torch.allclose(recalibrated, ev.logits(pop[:1])[0])


def test_supernet_state_is_restored(data, tiny_fc_space_file):
    net = _net(tiny_fc_space_file).train()  # also a non-eval mode to restore
    net.head.eval()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    flags = {name: m.training for name, m in net.named_modules()}
    momenta = {name: m.momentum for name, m in net.named_modules() if isinstance(m, torch.nn.BatchNorm2d)}
    _evaluator(net, data).evaluate(_population(net.space, n=4, seed=4))
    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert flags == {name: m.training for name, m in net.named_modules()}
    assert momenta == {name: m.momentum for name, m in net.named_modules() if isinstance(m, torch.nn.BatchNorm2d)}


def test_deterministic_across_instances(net, data):
    pop = _population(net.space, n=5, seed=5)
    a, b = _evaluator(net, data), _evaluator(net, data)
    assert a.evaluate(pop) == b.evaluate(pop)
    for x, y in zip(a.logits(pop), b.logits(pop), strict=True):
        assert torch.equal(x, y)
    other_seed = _evaluator(net, data, seed=1).logits(pop[:1])[0]  # other calibration images
    assert not torch.equal(other_seed, a.logits(pop[:1])[0])


def test_eval_images_is_a_seeded_subset_across_classes(net, data):
    ev = _evaluator(net, data, eval_images=40)
    assert len(ev.labels) == 40
    assert len(set(ev.labels.tolist())) == 10
    assert torch.equal(ev.labels, _evaluator(net, data, eval_images=40).labels)


def test_score_neg_loss_is_minus_the_cross_entropy_of_the_same_logits(net, data):
    import torch.nn.functional as F

    pop = _population(net.space, n=3, seed=6)
    acc_ev, loss_ev = _evaluator(net, data), _evaluator(net, data, score="neg_loss")
    accs, neg_losses = acc_ev.evaluate(pop), loss_ev.evaluate(pop)
    labels = loss_ev.labels
    for acc, neg_loss, logits in zip(accs, neg_losses, acc_ev.logits(pop), strict=True):
        assert acc == 100.0 * int((logits.argmax(1) == labels).sum()) / len(labels)
        assert neg_loss == pytest.approx(-float(F.cross_entropy(logits, labels)), abs=1e-6)
        assert neg_loss < 0
    assert loss_ev.scores(pop)[:, 0].tolist() == accs  # one pass keeps both
    assert loss_ev.settings()["score"] == "neg_loss"
    with pytest.raises(ValueError, match="unknown score"):
        _evaluator(net, data, score="loss")


def test_rejects_architectures_of_another_space(net, data):
    other = get_space("moga", num_classes=10, resolution=RES, variant="cifar")
    with pytest.raises(ValueError, match="does not fit"):
        _evaluator(net, data).evaluate([Arch.random(other, np.random.default_rng(0))])


def test_from_config_and_progress_bar(net, data):
    from supernet.config import EvalConfig

    cfg = EvalConfig(calib_images=CALIB, calib_batch_size=CALIB_BATCH, images=40, batch_size=BATCH, channels_last=False)
    ev = SubnetEvaluator.from_config(net, data, cfg, progress=True)
    assert (ev.calib_images, ev.calib_batch_size, ev.batch_size, ev.channels_last) == (CALIB, CALIB_BATCH, BATCH, False)
    assert ev.settings()["val_images"] == 40
    pop = _population(net.space, n=2, seed=7)
    assert ev.evaluate(pop) == _evaluator(net, data, eval_images=40, channels_last=False).evaluate(pop)


def test_rejects_sync_batchnorm(net, data):
    import copy

    synced = torch.nn.SyncBatchNorm.convert_sync_batchnorm(copy.deepcopy(net))
    with pytest.raises(ValueError, match="SyncBatchNorm"):
        SubnetEvaluator(synced, data)
