"""The weight-sharing supernet. Each searchable layer holds one block per choice (the same classes as
the standalone networks); ``forward(x, genes)`` is told the path explicitly, there is no hidden
"active subnet" state."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from supernet.arch import Arch
from supernet.blocks import InvertedResidual, SqueezeExcite, build_block, build_layer, centre, init_weights
from supernet.model import MobileNet
from supernet.space import SearchSpace


class Supernet(nn.Module):
    def __init__(self, space: SearchSpace):
        super().__init__()
        self.space = space
        self.stem = build_block(space.stem)
        self.separable = build_block(space.separable) if space.separable else nn.Identity()
        self.layers = nn.ModuleList(nn.ModuleList(build_layer(space, i, c) for c in range(n)) for i, n in enumerate(space.n_choices))
        self.head = build_block(space.head, space.dropout)
        init_weights(self)

    def shared_features(self, x: torch.Tensor) -> torch.Tensor:
        """Stem (+ separable block): the part every path shares, computed once per batch."""
        return self.separable(self.stem(x))

    def forward_layers(self, x: torch.Tensor, genes: Sequence[int], start: int = 0) -> torch.Tensor:
        """Searchable layers ``start..`` of the path ``genes`` (genes indexes all layers)."""
        for i in range(start, len(genes)):
            x = self.layers[i][genes[i]](x)
        return x

    def forward_path(self, features: torch.Tensor, genes: Sequence[int]) -> torch.Tensor:
        """Logits of one path from the shared features."""
        return self.head(self.forward_layers(features, genes))

    def forward(self, x: torch.Tensor, genes: Sequence[int]) -> torch.Tensor:
        return self.forward_path(self.shared_features(x), genes)

    def shared_parameters(self) -> list[nn.Parameter]:
        """Parameters every path uses (stem, separable block, head)."""
        return [*self.stem.parameters(), *self.separable.parameters(), *self.head.parameters()]

    def extract(self, arch: Arch) -> MobileNet:
        """A standalone network for ``arch`` carrying the supernet's weights and BN statistics."""
        if arch.space.name != self.space.name or arch.space.n_choices != self.space.n_choices:
            raise ValueError(f"architecture of space {arch.space.name!r} does not fit a {self.space.name!r} supernet")
        model = MobileNet(Arch(self.space, arch.genes))
        state = {}
        for key, value in self.state_dict().items():
            if key.startswith("layers."):
                _, layer, choice, rest = key.split(".", 3)
                if int(choice) != arch.genes[int(layer)]:
                    continue
                key = f"layers.{layer}.{rest}"
            state[key] = value.clone()
        model.load_state_dict(state)
        return model.to(next(self.parameters()).device)


@torch.no_grad()
def align_choices(net: Supernet) -> None:
    """Start every choice of a layer as the same function (in training mode), so every path starts as
    the same network and the supernet first learns like one network; the choices then drift apart as
    each is trained by its own paths. Strict fairness is untouched: this only sets initial weights.

    Per layer, from one random draw: choice ``c`` takes the first ``mid_c`` expansion filters; its
    depthwise kernel is the shared smallest kernel in the centre of zeros (a 7x7 starts as the 3x3); projection
    columns beyond the smallest expansion start at zero (the extra channels grow in); squeeze-excite
    gates start constant (expand weights zero), a uniform scale that the projection's BN removes. Choices with
    grouped 1x1 convs (FBNet's ``k3e1g2``) have other weight shapes and keep their own initialisation.
    """
    for blocks in net.layers:
        irs = [b for b in blocks if isinstance(b, InvertedResidual) and isinstance(b.shuffle, nn.Identity)]  # grouped: own init
        if len(irs) < 2 or any(isinstance(b.expand, nn.Identity) for b in irs):
            continue  # nothing to align, or a choice without an expansion conv (its channels are its input's)
        widest = max(irs, key=lambda b: b.depthwise.conv.weight.shape[0])
        mid_max = widest.depthwise.conv.weight.shape[0]
        mid_min = min(b.depthwise.conv.weight.shape[0] for b in irs)
        expand = widest.expand.conv.weight.clone()
        project = widest.project.conv.weight.clone()
        project[:, mid_min:] = 0
        small = min(b.depthwise.conv.init_kernel for b in irs)  # 3 in the MoGA and FairNAS spaces
        kernel = torch.empty(mid_max, 1, small, small, device=expand.device)
        nn.init.kaiming_normal_(kernel, mode="fan_out")
        for b in irs:
            mid, k = b.depthwise.conv.weight.shape[0], b.depthwise.conv.weight.shape[-1]
            b.expand.conv.weight.copy_(expand[:mid])
            b.project.conv.weight.copy_(project[:, :mid])
            b.depthwise.conv.weight.zero_()
            centre(b.depthwise.conv.weight, min(k, small)).copy_(centre(kernel[:mid], min(k, small)))  # built cropped: its centre
            if isinstance(b.se, SqueezeExcite):
                b.se.expand.weight.zero_()
