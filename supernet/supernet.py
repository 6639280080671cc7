"""The weight-sharing supernet. Each searchable layer holds one block per choice (the same classes as
the standalone networks); ``forward(x, genes)`` is told the path explicitly, there is no hidden
"active subnet" state."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from supernet.arch import Arch
from supernet.blocks import build_block, init_weights
from supernet.model import MobileNet
from supernet.space import SearchSpace


class Supernet(nn.Module):
    def __init__(self, space: SearchSpace):
        super().__init__()
        self.space = space
        self.stem = build_block(space.stem)
        self.separable = build_block(space.separable) if space.separable else nn.Identity()
        self.layers = nn.ModuleList(
            nn.ModuleList(build_block(space.layer_shape(i, c)) for c in range(n)) for i, n in enumerate(space.n_choices)
        )
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
