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


def test_kernels_are_cropped_to_the_feature_map():
    """At 32x32 with ImageNet strides the last layers see 2x2 and 1x1 maps: a 7x7 there is built, counted
    and timed as the 3x3 (1x1) it computes; at 224 every kernel is the architecture's."""
    from dataclasses import replace

    from supernet.blocks import build_block

    small, large = get_space("moga", num_classes=10, resolution=32), get_space("moga")
    for space in (small, large):
        for i, hw in enumerate(space.layer_hw):
            for c, op in enumerate(space.layers[i].choices):
                assert space.layer_shape(i, c).kernel == min(op.kernel, 2 * hw - 1)
    assert {small.layer_shape(i, 11).kernel for i in range(14)} == {7, 3, 1}  # k7e6se on 8x8.., 2x2, 1x1 maps
    assert {large.layer_shape(i, 11).kernel for i in range(14)} == {7}

    # the cropped block computes exactly what the full-kernel block does with the same (centre) weights
    torch.manual_seed(0)
    for layer in (8, 13):  # 2x2 and 1x1 input maps
        shape = small.layer_shape(layer, 11)
        full, cropped = build_block(replace(shape, kernel=7)).eval(), build_block(shape).eval()
        state = full.state_dict()
        k, lo = shape.kernel, (7 - shape.kernel) // 2
        state["depthwise.conv.weight"] = state["depthwise.conv.weight"][:, :, lo : lo + k, lo : lo + k]
        cropped.load_state_dict(state)
        x = torch.randn(2, shape.in_ch, shape.in_hw, shape.in_hw)
        torch.testing.assert_close(cropped(x), full(x))

    # so kernel choices on those layers cost the same parameters and share one latency-table key
    k3, k7 = Arch.parse(small, "-".join(["k3e6"] * 14)), Arch.parse(small, "-".join(["k3e6"] * 12 + ["k7e6"] * 2))
    assert count(k3) == count(k7) and small.layer_shape(13, 2).key == small.layer_shape(13, 10).key
    assert count(Arch.parse(large, str(k3)))[0] < count(Arch.parse(large, str(k7)))[0]
