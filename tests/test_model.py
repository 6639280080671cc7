"""Standalone models: exact published parameter counts, MACs, counting, ONNX parity."""

import numpy as np
import pytest
import torch

from supernet import ZOO, Arch, build_model, count, count_population, get_space, registered_spaces
from supernet.export import onnx_bytes, onnx_parity
from supernet.model import MobileNet, resolve_arch

PUBLISHED = {  # params, multiply-adds (M) of the authors' definitions at 224x224, 1000 classes
    "moga_a": (5_159_802, 304.0),
    "moga_b": (5_506_236, 248.6),
    "moga_c": (5_488_200, 221.1),
    "fairnas_a": (4_651_352, 388.1),
    "fairnas_b": (4_506_272, 345.3),
    "fairnas_c": (4_397_864, 321.0),
}


@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_matches_published_counts(name):
    params, madds = PUBLISHED[name]
    model = build_model(name)
    assert sum(p.numel() for p in model.parameters()) == params
    counted_params, macs = count(resolve_arch(name))
    assert counted_params == params
    assert abs(macs / 1e6 - madds) / madds < 0.005


def _torch_macs(model: torch.nn.Module, resolution: int) -> int:
    total = 0

    def hook(mod, inp, out):
        nonlocal total
        if isinstance(mod, torch.nn.Conv2d):
            total += out.numel() * mod.in_channels // mod.groups * mod.kernel_size[0] * mod.kernel_size[1]
        elif isinstance(mod, torch.nn.Linear):
            total += out.numel() * mod.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)]
    with torch.no_grad():
        model.eval()(torch.zeros(1, 3, resolution, resolution))
    for h in handles:
        h.remove()
    return total


@pytest.mark.parametrize("name", registered_spaces())
def test_counting_agrees_with_torch_on_random_archs(name):
    space = get_space(name, num_classes=10, resolution=32, variant="cifar")
    rng = np.random.default_rng(1)
    genomes = np.stack([Arch.random(space, rng).genome for _ in range(4)])
    vec_params, vec_macs = count_population(space, genomes)
    for g, vp, vm in zip(genomes, vec_params, vec_macs, strict=True):
        arch = Arch.from_genome(space, g)
        model = MobileNet(arch)
        params, macs = count(arch)
        assert params == vp == sum(p.numel() for p in model.parameters())
        assert macs == vm == _torch_macs(model, 32)


@pytest.mark.parametrize("name", registered_spaces())
def test_forward_shapes(name, cifar_space):
    space = get_space(name, num_classes=10, resolution=32, variant="cifar")
    model = MobileNet(Arch.random(space, np.random.default_rng(0)))
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("name", ["moga_a", "fairnas_b"])
def test_onnx_parity(name):
    space_name = ZOO[name][0]
    arch = resolve_arch(name, get_space(space_name, num_classes=10, resolution=64))
    model = MobileNet(arch).eval()
    with torch.no_grad():  # non-trivial BN statistics so the check is not vacuous
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    shape = (1, 3, 64, 64)
    assert onnx_parity(model, onnx_bytes(model, shape), shape) < 1e-4
