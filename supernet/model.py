"""Standalone networks for any architecture, and parameter / multiply-add counting from the shape walk."""

from __future__ import annotations

import difflib

import numpy as np
import torch
from torch import nn

from supernet.arch import Arch
from supernet.blocks import build_block, build_layer, init_weights
from supernet.errors import UserError
from supernet.space import IMAGENET, BlockShape, SearchSpace, get_space
from supernet.zoo import ZOO, zoo_entry, zoo_name


class MobileNet(nn.Module):
    """stem -> [separable] -> searchable layers -> head. It never needs to know which blocks it holds."""

    def __init__(self, arch: Arch):
        super().__init__()
        space = arch.space
        self.arch = str(arch)
        self.stem = build_block(space.stem)
        self.separable = build_block(space.separable) if space.separable else nn.Identity()
        self.layers = nn.Sequential(*(build_layer(space, i, g) for i, g in enumerate(arch.genes)))
        self.head = build_block(space.head, space.dropout)
        init_weights(self)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(self.separable(self.stem(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def resolve_arch(arch: str | Arch, space: str | SearchSpace = "moga", **space_kwargs: object) -> Arch:
    """An ``Arch`` from an ``Arch``, a zoo name or an architecture string of ``space``."""
    if isinstance(arch, Arch):
        return arch
    if zoo_name(arch) is not None:
        space_name, arch = zoo_entry(arch)
        if isinstance(space, SearchSpace):
            if space.name != space_name:
                raise UserError(f"zoo model belongs to space {space_name!r}, not {space.name!r}")
        else:
            space = space_name
    if not isinstance(space, SearchSpace):
        space = get_space(space, **space_kwargs)  # type: ignore[arg-type]
    try:
        return Arch.parse(space, arch)
    except UserError:
        tokens = {c.token for layer in space.layers for c in layer.choices}
        if "-" in arch or arch.isdigit() or arch.strip() in tokens:  # meant as an architecture string: its error says why
            raise
        close = difflib.get_close_matches(arch.lower().replace("-", "_"), ZOO, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(ZOO)})"
        raise UserError(f"unknown zoo model {arch!r}{hint}, and not an architecture string of space {space.name!r} either") from None


def build_model(
    arch: str | Arch,
    space: str = "moga",
    num_classes: int = IMAGENET.num_classes,
    resolution: int = IMAGENET.resolution,
    width_mult: float = IMAGENET.width_mult,
    variant: str = IMAGENET.variant,
) -> MobileNet:
    """A freshly initialised standalone network. ``arch`` is a string, a zoo name or an ``Arch``."""
    return MobileNet(resolve_arch(arch, space, num_classes=num_classes, resolution=resolution, width_mult=width_mult, variant=variant))


# ----------------------------------------------------------------------------- counting
def _conv(cin: int, cout: int, k: int, out_hw: int, groups: int = 1, bias: bool = False) -> tuple[int, int]:
    params = cout * (cin // groups) * k * k + (cout if bias else 0)
    return params, params * out_hw * out_hw - (cout * out_hw * out_hw if bias else 0)


def _bn(c: int) -> tuple[int, int]:
    return 2 * c, 0


def block_cost(b: BlockShape) -> tuple[int, int]:
    """(parameters, multiply-adds) of one block; multiply-adds count convs and linears per output element."""
    parts: list[tuple[int, int]] = []
    if b.kind == "stem":
        parts = [_conv(b.in_ch, b.out_ch, b.kernel, b.out_hw), _bn(b.out_ch)]
    elif b.kind == "separable":
        parts = [_conv(b.in_ch, b.in_ch, b.kernel, b.out_hw, b.in_ch), _bn(b.in_ch), _conv(b.in_ch, b.out_ch, 1, b.out_hw), _bn(b.out_ch)]
    elif b.kind == "ir":
        if b.has_expand:
            parts += [_conv(b.in_ch, b.mid_ch, 1, b.in_hw, b.groups), _bn(b.mid_ch)]
        parts += [_conv(b.mid_ch, b.mid_ch, b.kernel, b.out_hw, b.mid_ch), _bn(b.mid_ch)]
        if b.se_ch:
            parts += [_conv(b.mid_ch, b.se_ch, 1, 1, bias=True), _conv(b.se_ch, b.mid_ch, 1, 1, bias=True)]
        parts += [_conv(b.mid_ch, b.out_ch, 1, b.out_hw, b.groups), _bn(b.out_ch)]
    elif b.kind == "skip" and not b.is_identity:
        parts = [_conv(b.in_ch, b.out_ch, 1, b.out_hw), _bn(b.out_ch)]
    elif b.kind == "head":
        parts = [_conv(b.in_ch, b.mid_ch, 1, b.in_hw), _bn(b.mid_ch)]
        width = b.mid_ch
        if b.fc_ch:
            parts.append(_conv(width, b.fc_ch, 1, 1))
            width = b.fc_ch
        parts.append((width * b.out_ch + b.out_ch, width * b.out_ch))
    return sum(p for p, _ in parts), sum(m for _, m in parts)


def count(arch: Arch) -> tuple[int, int]:
    """(parameters, multiply-adds) of a whole network."""
    costs = [block_cost(b) for b in arch.space.walk(arch.genes)]
    return sum(p for p, _ in costs), sum(m for _, m in costs)


def cost_tables(space: SearchSpace) -> tuple[int, int, list[np.ndarray], list[np.ndarray]]:
    """Fixed-part cost plus per-layer, per-choice tables, for vectorised counting over populations."""
    fixed = [block_cost(b) for b in [space.stem, space.separable, space.head] if b is not None]
    params = [np.array([block_cost(space.layer_shape(i, c))[0] for c in range(n)]) for i, n in enumerate(space.n_choices)]
    macs = [np.array([block_cost(space.layer_shape(i, c))[1] for c in range(n)]) for i, n in enumerate(space.n_choices)]
    return sum(p for p, _ in fixed), sum(m for _, m in fixed), params, macs


def count_population(space: SearchSpace, genomes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised (parameters, multiply-adds) for an (N, L) array of genomes."""
    fp, fm, params, macs = cost_tables(space)
    g = np.asarray(genomes)
    p = fp + sum(params[i][g[:, i]] for i in range(g.shape[1]))
    m = fm + sum(macs[i][g[:, i]] for i in range(g.shape[1]))
    return np.asarray(p, dtype=np.int64), np.asarray(m, dtype=np.int64)
