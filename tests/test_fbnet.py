"""The FBNet space of HW-NAS-Bench: structure and counts against the benchmark's definition
(``lut/assets/hw_nas_bench_fbnet/README.md``), grouped 1x1 convs with channel shuffle, and training."""

from __future__ import annotations

import pytest
import torch

from supernet import Arch, UserError, get_space
from supernet.blocks import ChannelShuffle, InvertedResidual
from supernet.config import SupernetConfig
from supernet.data import load_dataset
from supernet.model import MobileNet, count, count_population
from supernet.space import parse_token
from supernet.supernet import Supernet
from supernet.train import train_supernet

STAGES = [(1, 16), (4, 24), (4, 32), (4, 64), (4, 112), (4, 184), (1, 352)]
CANDIDATES = [(3, 1, 1), (3, 1, 2), (3, 3, 1), (3, 6, 1), (5, 1, 1), (5, 1, 2), (5, 3, 1), (5, 6, 1), None]  # (k, e, g); None: skip
SETTINGS = {  # space -> (resolution, classes, stem stride, stage strides, head)
    "fbnet": (224, 1000, 2, [1, 2, 2, 2, 1, 2, 1], 1984),
    "fbnet_cifar": (32, 100, 1, [1, 1, 2, 2, 1, 2, 1], 1504),
}


def readme_counts(name: str, genes: list[int]) -> tuple[int, int]:
    """(parameters, multiply-adds) of an FBNet network, written from the benchmark's definition alone."""
    res, classes, stem_stride, strides, head = SETTINGS[name]
    conv = lambda cin, cout, k, hw, g=1: (cout * cin // g * k * k, cout * cin // g * k * k * hw * hw)  # noqa: E731
    hw = res // stem_stride
    parts = [conv(3, 16, 3, hw), (32, 0)]
    cin, layer = 16, 0
    for (n, cout), stage_stride in zip(STAGES, strides, strict=True):
        for i in range(n):
            s = stage_stride if i == 0 else 1
            out_hw = hw // s
            cand = CANDIDATES[genes[layer]]
            if cand is None:
                if s != 1 or cin != cout:
                    parts += [conv(cin, cout, 1, out_hw), (2 * cout, 0)]
            else:
                k, e, g = cand
                mid = cin * e
                parts += [conv(cin, mid, 1, hw, g), (2 * mid, 0), conv(mid, mid, k, out_hw, mid), (2 * mid, 0)]
                parts += [conv(mid, cout, 1, out_hw, g), (2 * cout, 0)]
            cin, hw, layer = cout, out_hw, layer + 1
    parts += [conv(352, head, 1, hw), (2 * head, 0), (head * classes + classes, head * classes)]
    return sum(p for p, _ in parts), sum(m for _, m in parts)


def fbnet(name: str, **kw: object):
    res, classes, *_ = SETTINGS[name]
    return get_space(name, **{"num_classes": classes, "resolution": res, "variant": "imagenet", **kw})  # type: ignore[arg-type]


ARCHS = ["0" * 22, "1" * 22, "8" * 22, "7" * 22, "0123456780123456781234", "8888888888888888888885"]


@pytest.mark.parametrize("name", SETTINGS)
def test_counts_follow_the_benchmarks_definition(name: str) -> None:
    space = fbnet(name)
    assert space.num_layers == 22 and set(space.n_choices) == {9}
    for code in ARCHS:
        arch = Arch.parse(space, code)
        assert count(arch) == readme_counts(name, list(arch.genes)), code
    genomes = torch.randint(0, 9, (50, 22), generator=torch.Generator().manual_seed(0)).numpy()
    params, macs = count_population(space, genomes)
    assert [(int(p), int(m)) for p, m in zip(params, macs, strict=True)] == [readme_counts(name, list(g)) for g in genomes]


@pytest.mark.parametrize("code", ["0" * 22, "1" * 22, "0123456780123456781234"])
def test_built_models_have_the_counted_parameters_and_logits(code: str) -> None:
    space = fbnet("fbnet_cifar")
    model = MobileNet(Arch.parse(space, code))
    assert sum(p.numel() for p in model.parameters()) == count(Arch.parse(space, code))[0]
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 100)


def test_blocks_are_the_benchmarks_candidates() -> None:
    space = fbnet("fbnet_cifar")
    assert [c.token for c in space.layers[0].choices] == ["k3e1", "k3e1g2", "k3e3", "k3e6", "k5e1", "k5e1g2", "k5e3", "k5e6", "skip"]
    g2 = MobileNet(Arch.parse(space, "1" * 22)).layers[0]
    assert isinstance(g2, InvertedResidual) and isinstance(g2.shuffle, ChannelShuffle)
    assert g2.expand.conv.groups == 2 and g2.project.conv.groups == 2 and g2.residual
    e1 = MobileNet(Arch.parse(space, "0" * 22)).layers[0]
    assert e1.expand.conv.weight.shape == (16, 16, 1, 1)  # the expansion conv exists at e = 1
    skips = MobileNet(Arch.parse(space, "8" * 22)).layers
    assert isinstance(skips[2], torch.nn.Identity)  # stride 1, 24 -> 24: identity
    first = skips[1]  # 16 -> 24 channels: 1x1 conv + BN + ReLU
    assert first.conv.kernel_size == (1, 1) and isinstance(first.act, torch.nn.ReLU)
    shape = space.layer_shape(0, 1)
    assert shape.key == "ir:32x32x16-16:k3e1g2:s1:se0:relu:e1conv"


def test_channel_shuffle_interleaves_the_groups() -> None:
    x = torch.arange(6.0).view(1, 6, 1, 1)
    assert ChannelShuffle(2)(x).flatten().tolist() == [0, 3, 1, 4, 2, 5]


def test_group_tokens_parse_and_bad_groups_are_refused(tmp_path) -> None:
    assert parse_token("k5e1g2").groups == 2 and parse_token("k5e1g2").token == "k5e1g2"
    with pytest.raises(ValueError, match="not a choice token"):
        parse_token("k3e1g1")
    text = (tmp_path / "x.yaml").open("w")
    text.write(
        "name: g\nstem: {channels: 16, act: relu}\nlayers: {out_channels: [16, 24], strides: [1, 1], acts: relu}\n"
        "choices: [k3e1g2]\nhead: {channels: 64, act: relu}\n"
    )
    text.close()
    with pytest.raises(UserError, match="needs its expansion conv"):
        get_space(str(tmp_path / "x.yaml"), num_classes=10, resolution=32)


def test_supernet_and_standalone_train_on_the_fbnet_space(tmp_path) -> None:
    space = fbnet("fbnet_cifar", num_classes=10, resolution=16, width_mult=0.25)
    data = load_dataset("embedded", resolution=16, seed=0)
    cfg = SupernetConfig(steps=2, batch_size=8, warmup_steps=0, eval={"images": 20, "calib_images": 16}, eval_paths=1, checkpoint_every=1)
    net = train_supernet(space, data, cfg, tmp_path / "sn", seed=0, resume=False, progress=False)
    assert isinstance(net, Supernet)
    model = net.extract(Arch.parse(space, "1" * 22))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(4, 3, 16, 16), torch.randint(0, 10, (4,))
    before = [p.detach().clone() for p in model.parameters()]
    torch.nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_a_grouped_block_exports_to_onnx_and_runs_alike() -> None:
    import numpy as np
    import onnxruntime as ort

    from lut.measure import block_job
    from supernet.export import onnx_bytes

    job = block_job(fbnet("fbnet_cifar").layer_shape(5, 5))  # k5e1g2, stride 2, 24 -> 32 channels
    module = job.module().eval()
    x = torch.randn(*job.input_shape)
    session = ort.InferenceSession(onnx_bytes(module, job.input_shape), providers=["CPUExecutionProvider"])
    out = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    assert np.allclose(out, module(x).detach().numpy(), atol=1e-5)
