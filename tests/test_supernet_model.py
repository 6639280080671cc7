"""The supernet is told its path; any path extracts into a standalone network with identical outputs."""

import numpy as np
import pytest
import torch

from supernet import Arch, get_space, registered_spaces
from supernet.supernet import Supernet, align_choices


@pytest.mark.parametrize("name", registered_spaces())
def test_extracted_path_has_identical_outputs(name):
    space = get_space(name, num_classes=10, resolution=32, variant="cifar")
    net = Supernet(space)
    with torch.no_grad():  # distinct BN statistics per choice, so a wrong copy would show
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.3, 0.3)
                m.running_var.uniform_(0.5, 1.5)
    net.eval()
    x = torch.randn(3, 3, 32, 32)
    rng = np.random.default_rng(0)
    for _ in range(3):
        arch = Arch.random(space, rng)
        standalone = net.extract(arch).eval()
        with torch.no_grad():
            torch.testing.assert_close(standalone(x), net(x, arch.genes), rtol=0, atol=0)


def test_paths_differ_and_share_stem():
    space = get_space("moga", num_classes=10, resolution=32, variant="cifar")
    net = Supernet(space).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        a, b = net(x, [0] * 14), net(x, [5] * 14)
        assert (a - b).abs().max() > 0.1 * a.abs().max()
        feats = net.shared_features(x)
        torch.testing.assert_close(net.forward_path(feats, [5] * 14), b)


def test_supernet_holds_every_choice_once():
    space = get_space("moga", num_classes=10, resolution=32, variant="cifar")
    net = Supernet(space)
    assert [len(layer) for layer in net.layers] == list(space.n_choices)


@pytest.mark.parametrize("name", ["moga", "fairnas"])
def test_aligned_choices_start_as_one_function_and_then_train_apart(name):
    space = get_space(name, num_classes=10, resolution=32, width_mult=0.25, variant="cifar")
    torch.manual_seed(0)
    net = Supernet(space).train()
    align_choices(net)
    x = torch.randn(8, 3, 32, 32)
    features = net.shared_features(x)
    for blocks in net.layers:  # in training mode every choice of a layer computes the same function
        outs = [b(features) for b in blocks]
        for out in outs[1:]:
            torch.testing.assert_close(out, outs[0], rtol=1e-3, atol=1e-3)
        features = outs[0]
    # the weights differ in shape and the choices get gradients of their own: nothing is tied
    paths = [(c,) * len(space.n_choices) for c in range(space.n_choices[0])]
    for genes in paths:
        net(x, genes).logsumexp(1).sum().backward()
    grads = [b.project.conv.weight.grad for b in net.layers[3]]
    assert all(g is not None and g.abs().sum() > 0 for g in grads)
    assert not torch.equal(grads[0], grads[1][:, : grads[0].shape[1]])
