"""Building blocks. One class per block kind, built from a ``BlockShape``; the supernet's choice
blocks and the standalone networks use the same classes, so weights copy by parameter name."""

from __future__ import annotations

import torch
from torch import nn

from supernet.depthwise import DepthwiseConv2d
from supernet.space import BlockShape, SearchSpace


def make_act(name: str) -> nn.Module:
    return {
        "relu": nn.ReLU,
        "relu6": nn.ReLU6,
        "hswish": nn.Hardswish,
        "swish": nn.SiLU,
        "identity": nn.Identity,
    }[name]()


class ConvBNAct(nn.Sequential):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, act: str = "identity"):
        super().__init__()
        if groups > 1 and groups == cin == cout:
            self.conv: nn.Conv2d = DepthwiseConv2d(cin, kernel, stride)
        else:
            self.conv = nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.act = make_act(act)


class SqueezeExcite(nn.Module):
    """Pool, 1x1 reduce (bias), activation, 1x1 expand (bias), h-sigmoid gate, multiply."""

    def __init__(self, channels: int, reduced: int, act: str):
        super().__init__()
        self.reduce = nn.Conv2d(channels, reduced, 1)
        self.act = make_act(act)
        self.expand = nn.Conv2d(reduced, channels, 1)
        self.gate = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        return x * self.gate(self.expand(self.act(self.reduce(s))))


class ChannelShuffle(nn.Module):
    """ShuffleNet's channel shuffle: (groups, C / groups) channels -> (C / groups, groups), so the next grouped
    conv sees channels of every group (a reshape and a transpose, exported to ONNX as such)."""

    def __init__(self, groups: int):
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        return x.view(n, self.groups, c // self.groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class InvertedResidual(nn.Module):
    """1x1 expand (grouped + channel shuffle when ``groups`` > 1), kxk depthwise (stride), optional SE,
    1x1 project (grouped alike); residual when shapes allow."""

    def __init__(self, shape: BlockShape):
        super().__init__()
        mid, g = shape.mid_ch, shape.groups
        self.residual = shape.residual
        self.expand = ConvBNAct(shape.in_ch, mid, 1, groups=g, act=shape.act) if shape.has_expand else nn.Identity()
        self.shuffle = ChannelShuffle(g) if g > 1 else nn.Identity()
        self.depthwise = ConvBNAct(mid, mid, shape.kernel, shape.stride, groups=mid, act=shape.act)
        self.se = SqueezeExcite(mid, shape.se_ch, shape.act) if shape.se_ch else nn.Identity()
        self.project = ConvBNAct(mid, shape.out_ch, 1, groups=g)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.se(self.depthwise(self.shuffle(self.expand(x)))))
        return x + y if self.residual else y


class Separable(nn.Sequential):
    """Depthwise kxk + BN + act, then pointwise 1x1 + BN (no residual)."""

    def __init__(self, shape: BlockShape):
        super().__init__()
        self.depthwise = ConvBNAct(shape.in_ch, shape.in_ch, shape.kernel, groups=shape.in_ch, act=shape.act)
        self.pointwise = ConvBNAct(shape.in_ch, shape.out_ch, 1)


class Head(nn.Module):
    """1x1 conv + BN + act, global pool, [1x1 conv (no BN) + act], dropout, linear classifier."""

    def __init__(self, shape: BlockShape, dropout: float):
        super().__init__()
        self.conv = ConvBNAct(shape.in_ch, shape.mid_ch, 1, act=shape.act)
        width = shape.mid_ch
        if shape.fc_ch:
            self.fc = nn.Sequential(nn.Conv2d(width, shape.fc_ch, 1, bias=False), make_act(shape.act))
            width = shape.fc_ch
        else:
            self.fc = nn.Identity()
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(width, shape.out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.fc(self.conv(x).mean((2, 3), keepdim=True))
        return self.classifier(self.dropout(torch.flatten(x, 1)))


def build_block(shape: BlockShape, dropout: float = 0.0) -> nn.Module:
    if shape.kind == "stem":
        return ConvBNAct(shape.in_ch, shape.out_ch, shape.kernel, shape.stride, act=shape.act)
    if shape.kind == "separable":
        return Separable(shape)
    if shape.kind == "ir":
        return InvertedResidual(shape)
    if shape.kind == "skip":  # where the layer changes stride or channels: a projection, as NAS-Bench-Macro builds it
        return nn.Identity() if shape.is_identity else ConvBNAct(shape.in_ch, shape.out_ch, 1, shape.stride, act=shape.act)
    if shape.kind == "head":
        return Head(shape, dropout)
    raise ValueError(f"unknown block kind {shape.kind!r}")


def build_layer(space: SearchSpace, layer: int, choice: int) -> nn.Module:
    """Searchable layer ``layer`` under ``choice``. A depthwise kernel built cropped to the feature map
    (``SearchSpace.layer_shape``) remembers the size the choice names, so it is initialised as that
    kernel's centre: the network starts, and trains, as the uncropped one would."""
    block = build_block(space.layer_shape(layer, choice))
    if isinstance(block, InvertedResidual):
        block.depthwise.conv.init_kernel = space.layers[layer].choices[choice].kernel  # type: ignore[union-attr]
    return block


def centre(weight: torch.Tensor, k: int) -> torch.Tensor:
    """The central ``k`` x ``k`` taps of a (..., K, K) kernel."""
    lo = (weight.shape[-1] - k) // 2
    return weight[..., lo : lo + k, lo : lo + k]


@torch.no_grad()
def init_weights(module: nn.Module) -> None:
    """Kaiming-normal convs, zero biases, unit BN, small-normal linear (MobileNet practice)."""
    for m in module.modules():
        if isinstance(m, DepthwiseConv2d) and m.init_kernel > m.kernel_size[0]:
            full = m.weight.new_empty(*m.weight.shape[:2], m.init_kernel, m.init_kernel)
            nn.init.kaiming_normal_(full, mode="fan_out")  # the same draws as the uncropped kernel
            m.weight.copy_(centre(full, m.kernel_size[0]))
        elif isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)
