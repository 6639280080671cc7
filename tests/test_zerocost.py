"""Zero-cost proxies (``supernet.zerocost``) against hand computations on the tiny space."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from supernet import get_space
from supernet.arch import Arch
from supernet.errors import UserError
from supernet.model import MobileNet
from supernet.zerocost import ZERO_COST, zero_cost_scores

# tiny space: layers offer (k3e2, k3e2se, k5e2, k5e2se, skip), (k3e2, k3e2se, k5e2, k5e2se), (... , skip)
SMALL = (4, 0, 4)  # skip-k3e2-skip: as close to skip-only as the tiny space goes (layer 2 has no skip)
LARGE = (3, 3, 3)  # k5e2se everywhere


@pytest.fixture(scope="module")
def tiny(tiny_space_file):
    return get_space(str(tiny_space_file), num_classes=4, resolution=16, variant="cifar")


@pytest.fixture(scope="module")
def batch():
    g = torch.Generator().manual_seed(0)
    return torch.randn(8, 3, 16, 16, generator=g), torch.arange(8) % 4


def _model(arch: Arch, seed: int = 0) -> MobileNet:
    torch.manual_seed(seed)
    return MobileNet(arch)


def _weights(model: nn.Module) -> list[torch.Tensor]:
    return [m.weight for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]


def test_same_seed_is_bit_identical_and_another_seed_differs(tiny, batch):
    archs = [Arch(tiny, SMALL), Arch(tiny, LARGE), Arch(tiny, (0, 1, 2))]
    rng_before = torch.get_rng_state()
    a = zero_cost_scores(archs, *batch)
    assert torch.equal(torch.get_rng_state(), rng_before)  # the caller's RNG is left alone
    b = zero_cost_scores(archs, *batch)
    c = zero_cost_scores(archs, *batch, seed=1)
    assert list(a) == list(ZERO_COST)
    for name in ZERO_COST:
        assert a[name].dtype == np.float64 and a[name].shape == (3,) and np.isfinite(a[name]).all()
        assert np.array_equal(a[name], b[name]), name
        assert not np.array_equal(a[name], c[name]), name


def test_snip_and_grad_norm_equal_a_hand_computation(tiny, batch):
    images, labels = batch
    arch = Arch(tiny, (1, 3, 0))  # SE convs (with bias) and depthwise convs included
    model = _model(arch).train()
    weights = _weights(model)
    grads = torch.autograd.grad(F.cross_entropy(model(images), labels), weights)
    snip = sum(float((w.detach().double() * g.double()).abs().sum()) for w, g in zip(weights, grads, strict=True))
    grad_norm = sum(float(torch.linalg.vector_norm(g.double())) for g in grads)
    got = zero_cost_scores([arch], images, labels, ("snip", "grad_norm"))
    assert got["snip"][0] == pytest.approx(snip, rel=1e-9)
    assert got["grad_norm"][0] == pytest.approx(grad_norm, rel=1e-9)
    # synflow scores a copy: computing it alongside leaves the data-based proxies unchanged
    together = zero_cost_scores([arch], images, labels)
    assert together["snip"][0] == got["snip"][0] and together["grad_norm"][0] == got["grad_norm"][0]


def test_naswot_equals_slogdet_of_the_hand_kernel(tiny, batch):
    images, labels = batch
    arch = Arch(tiny, (3, 0, 1))
    model = _model(arch).train()
    codes: list[torch.Tensor] = []
    acts = [m for m in model.modules() if isinstance(m, nn.ReLU | nn.Hardswish)]
    assert acts and all(m.inplace is False for m in model.modules() if isinstance(m, nn.ReLU))
    hooks = [m.register_forward_hook(lambda _m, _i, out: codes.append((out > 0).flatten(1).double())) for m in acts]
    with torch.no_grad():
        model(images)
    for h in hooks:
        h.remove()
    c = torch.cat(codes, 1)
    k = c @ c.T + (1 - c) @ (1 - c).T
    expected = float(np.linalg.slogdet(k.numpy())[1])
    got = zero_cost_scores([arch], images, labels, ("naswot",))["naswot"][0]
    assert got == pytest.approx(expected, rel=1e-9, abs=1e-9)


def test_naswot_is_higher_for_distinct_images_than_for_one_image_repeated(tiny, batch):
    images, labels = batch
    archs = [Arch(tiny, SMALL), Arch(tiny, LARGE)]
    distinct = zero_cost_scores(archs, images, labels, ("naswot",))["naswot"]
    repeated = zero_cost_scores(archs, images[:1].expand_as(images).clone(), labels, ("naswot",))["naswot"]
    # every row of K is the same: singular, log|det| = -inf, reported as the lowest finite float64
    assert np.isfinite(repeated).all() and (repeated == -np.finfo(np.float64).max).all()
    assert (distinct > 0).all() and (distinct > repeated).all()


def test_synflow_equals_a_hand_computation_and_ignores_the_batch_content(tiny, batch):
    images, labels = batch
    arch = Arch(tiny, (1, 3, 0))
    net = _model(arch).double().eval()
    with torch.no_grad():
        for p in net.parameters():
            p.abs_()
    weights = _weights(net)
    grads = torch.autograd.grad(net(torch.ones(1, 3, 16, 16, dtype=torch.float64)).sum(), weights)
    expected = sum(float((w.detach() * g).abs().sum()) for w, g in zip(weights, grads, strict=True))
    got = zero_cost_scores([arch], images, labels, ("synflow",))["synflow"][0]
    assert got == pytest.approx(expected, rel=1e-12)
    other = zero_cost_scores([arch], torch.rand_like(images) * 7 - 3, labels.flip(0), ("synflow",))["synflow"][0]
    assert other == got


def test_synflow_is_larger_for_the_larger_network(tiny, batch):
    small, large = zero_cost_scores([Arch(tiny, SMALL), Arch(tiny, LARGE)], *batch, ("synflow",))["synflow"]
    assert large > 10 * small > 0


def test_unknown_proxy_name_is_a_user_error_naming_it(tiny, batch):
    with pytest.raises(UserError, match=r"unknown zero-cost proxy 'jacov' \(known: synflow, naswot, snip, grad_norm\)") as info:
        zero_cost_scores([Arch(tiny, SMALL)], *batch, ("snip", "jacov"))
    assert "\n" not in str(info.value)


def test_no_architectures_give_empty_arrays(batch):
    assert {k: v.shape for k, v in zero_cost_scores([], *batch).items()} == dict.fromkeys(ZERO_COST, (0,))
