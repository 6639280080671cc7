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
    small, large = get_space("moga", num_classes=10, resolution=32), get_space("moga")
    for space in (small, large):
        for i, hw in enumerate(space.layer_hw):
            for c, op in enumerate(space.layers[i].choices):
                assert space.layer_shape(i, c).kernel == min(op.kernel, 2 * hw - 1)
    assert {small.layer_shape(i, 11).kernel for i in range(14)} == {7, 3, 1}  # k7e6se on 8x8.., 2x2, 1x1 maps
    assert {large.layer_shape(i, 11).kernel for i in range(14)} == {7}

    # so kernel choices on those layers cost the same parameters and share one latency-table key
    k3, k7 = Arch.parse(small, "-".join(["k3e6"] * 14)), Arch.parse(small, "-".join(["k3e6"] * 12 + ["k7e6"] * 2))
    assert count(k3) == count(k7) and small.layer_shape(13, 2).key == small.layer_shape(13, 10).key
    assert count(Arch.parse(large, str(k3)))[0] < count(Arch.parse(large, str(k7)))[0]


def _uncropped(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every space build the kernels its choices name (moga before the crop)."""
    from dataclasses import replace

    from supernet.space import SearchSpace

    crop = SearchSpace.layer_shape
    monkeypatch.setattr(SearchSpace, "layer_shape", lambda self, i, c: replace(crop(self, i, c), kernel=self.layers[i].choices[c].kernel))


def _same_up_to_the_crop(cropped: torch.nn.Module, full: torch.nn.Module) -> int:
    """Every parameter equal, a cropped kernel equal to the centre of the full one; returns how many were cropped."""
    from supernet.blocks import centre

    full_params, n = dict(full.named_parameters()), 0
    for name, p in cropped.named_parameters():
        q = full_params[name]
        if q.shape != p.shape:
            q, n = centre(q, p.shape[-1]), n + 1
        torch.testing.assert_close(p, q, msg=name)
    return n


def test_cropped_networks_start_and_train_as_uncropped_ones(monkeypatch):
    """A kernel built cropped starts as the centre of the kernel its choice names (same random draws), so a
    network computes and learns exactly what the uncropped one did: the crop changes cost, not training."""
    from supernet.blocks import init_weights
    from supernet.supernet import Supernet, align_choices

    space = get_space("moga", num_classes=10, resolution=32, width_mult=0.25)
    arch = Arch.random(space, np.random.default_rng(0))
    arch = Arch.parse(space, "-".join([*str(arch).split("-")[:12], "k7e3se", "k5e6"]))  # a 7x7 and a 5x5 on 1x1 maps
    nets = {}
    for name in ("cropped", "full"):
        with monkeypatch.context() as m:
            if name == "full":
                _uncropped(m)
            model, net = (
                MobileNet(arch),
                Supernet(space if name == "cropped" else get_space("moga", num_classes=10, resolution=32, width_mult=0.25)),
            )
        torch.manual_seed(0)
        init_weights(model)
        torch.manual_seed(1)
        init_weights(net)
        align_choices(net)
        nets[name] = model, net
    (model, net), (ref, ref_net) = nets["cropped"], nets["full"]
    assert _same_up_to_the_crop(model, ref) >= 2 and _same_up_to_the_crop(net, ref_net) > 50

    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    for m in (model, ref):
        torch.manual_seed(2)  # the same dropout mask
        torch.nn.functional.cross_entropy(m(x), y).backward()
        torch.optim.SGD(m.parameters(), lr=0.5).step()
    torch.testing.assert_close(model.eval()(x), ref.eval()(x))
    _same_up_to_the_crop(model, ref)
