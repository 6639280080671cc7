"""Search-space registry, architecture strings (strict parse + format) and the genome view."""

import numpy as np
import pytest

from supernet import ZOO, Arch, UserError, get_space, registered_spaces
from supernet.model import resolve_arch

SPACES = registered_spaces()


def test_registry_has_published_spaces():
    assert {"moga", "fairnas"} <= set(SPACES)
    moga, fairnas = get_space("moga"), get_space("fairnas")
    assert (moga.num_layers, set(moga.n_choices)) == (14, {12})
    assert (fairnas.num_layers, set(fairnas.n_choices)) == (19, {6})
    assert moga.size == 12**14


@pytest.mark.parametrize("name", SPACES)
@pytest.mark.parametrize("variant", ["imagenet", "cifar"])
def test_round_trip_random_archs(name, variant):
    space = get_space(name, num_classes=10, resolution=32 if variant == "cifar" else 224, variant=variant)
    rng = np.random.default_rng(0)
    for _ in range(200):
        arch = Arch.random(space, rng)
        text = str(arch)
        assert len(text.split("-")) == space.num_layers
        again = Arch.parse(space, text)
        assert again == arch
        assert Arch.from_genome(space, arch.genome) == arch


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("k3e6-" * 13 + "k9e6", "'k9e6' at position 14"),
        ("k3e6-" * 12 + "k3e6", "has 13 tokens"),
        ("k3e6-K3E6-" + "k3e6-" * 11 + "k3e6", "'K3E6' at position 2"),
        ("skip-" + "k3e6-" * 12 + "k3e6", "'skip' at position 1"),
        ("", "has 1 tokens"),
    ],
)
def test_parser_rejects_bad_strings(text, needle):
    with pytest.raises(UserError) as err:
        Arch.parse(get_space("moga"), text)
    assert needle in str(err.value)


def test_fairnas_rejects_se_and_moga_strings():
    with pytest.raises(UserError, match="position 1"):
        Arch.parse(get_space("fairnas"), "-".join(["k3e6se"] * 19))
    with pytest.raises(UserError, match="needs 19"):
        resolve_arch(ZOO["moga_a"][1], "fairnas")


def test_genome_out_of_range():
    with pytest.raises(UserError, match="out of range"):
        Arch.from_genome(get_space("moga"), [12] + [0] * 13)


def test_cifar_variant_strides():
    imagenet = get_space("moga")
    cifar = get_space("moga", resolution=32, variant="cifar")
    assert imagenet.stem.out_hw == 112 and cifar.stem.out_hw == 32
    assert cifar.layers[0].stride == 1 and cifar.layers[2].stride == 2
    assert cifar.head.in_hw == 4 and imagenet.head.in_hw == 7


def test_width_multiplier_rounds_to_eight():
    space = get_space("moga", width_mult=0.75)
    assert all(layer.out_channels % 8 == 0 for layer in space.layers)
    assert [layer.out_channels for layer in space.layers][:3] == [24, 24, 32]  # 18 -> 24, 30 -> 32


def test_user_defined_yaml_space_with_skip(tmp_path):
    # its own YAML, not the shared tiny space: the parser is under test, with the optional keys (stem kernel,
    # separable, fc_channels) left out and a stride-2 layer last
    path = tmp_path / "tiny.yaml"
    path.write_text(
        """
name: tiny
stem: {channels: 8, stride: 2, act: relu}
layers:
  out_channels: [16, 16, 24]
  strides: [2, 1, 2]
  acts: relu
choices: {kernels: [3, 5], expansions: [1, 4], skip: true}
head: {channels: 64, act: relu, dropout: 0.0}
"""
    )
    space = get_space(str(path), num_classes=3, resolution=32)
    assert space.n_choices == (4, 5, 4)  # only the stride-1, equal-width layer may skip
    arch = Arch.parse(space, "k5e4-skip-k3e1")
    assert str(arch) == "k5e4-skip-k3e1"


def test_bad_yaml_space_names_the_field(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(
        "name: bad\nstem: {channels: 8, act: gelu}\nlayers: {out_channels: [8], strides: [1], acts: relu}\n"
        "choices: {kernels: [3], expansions: [3]}\nhead: {channels: 16, act: relu}\n"
    )
    with pytest.raises(UserError, match=r"stem\.act"):
        get_space(str(path))


def test_unknown_space():
    with pytest.raises(UserError, match="unknown search space 'mogaa'"):
        get_space("mogaa")


def test_zoo_names_are_accepted_as_published() -> None:
    from supernet.model import resolve_arch

    assert resolve_arch("MoGA-A") == resolve_arch("moga_a")
    assert resolve_arch("FairNAS-C").space.name == "fairnas"
    with pytest.raises(UserError, match="unknown"):
        from supernet.zoo import zoo_entry

        zoo_entry("MoGA-Z")
