"""Architectures: the three views (genome, ``Arch``, string) and the one place that converts them.

The string has one token per searchable layer joined by ``-``, e.g. ``k5e6-k3e3se-skip-...``. The
parser is strict: an unknown token, a token the layer does not offer, or a wrong number of tokens
raises ``UserError`` naming the token and its 1-based position. In a space whose layers offer at most
10 choices, a code of one digit per layer (the choice index, as NAS-Bench-Macro writes ``22212220``) is
accepted too; ``Arch.code`` gives it back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from supernet.errors import UserError
from supernet.space import Choice, SearchSpace


@dataclass(frozen=True)
class Arch:
    """One architecture of a space: a choice index per searchable layer."""

    space: SearchSpace = field(compare=False, repr=False)
    genes: tuple[int, ...]

    def __post_init__(self) -> None:
        n = self.space.n_choices
        if len(self.genes) != len(n):
            raise UserError(f"space {self.space.name!r} has {len(n)} searchable layers, got {len(self.genes)} genes")
        for i, (g, m) in enumerate(zip(self.genes, n, strict=True)):
            if not 0 <= g < m:
                raise UserError(f"gene {g} at layer {i + 1} is out of range [0, {m}) for space {self.space.name!r}")

    @property
    def choices(self) -> tuple[Choice, ...]:
        return tuple(layer.choices[g] for layer, g in zip(self.space.layers, self.genes, strict=True))

    @property
    def genome(self) -> np.ndarray:
        return np.asarray(self.genes, dtype=np.int64)

    def __str__(self) -> str:
        return "-".join(c.token for c in self.choices)

    @property
    def code(self) -> str | None:
        """One digit per layer (the choice index), or None where a layer has more than 10 choices."""
        return "".join(map(str, self.genes)) if has_codes(self.space) else None

    def canonical(self) -> Arch:
        """The representative of the networks identical to this one (``SearchSpace.canonical``)."""
        return Arch(self.space, self.space.canonical(self.genes))

    @classmethod
    def from_genome(cls, space: SearchSpace, genome: Sequence[int] | np.ndarray) -> Arch:
        return cls(space, tuple(int(g) for g in genome))

    @classmethod
    def parse(cls, space: SearchSpace, text: str) -> Arch:
        text = text.strip()
        if text.isdigit() and len(text) == space.num_layers and has_codes(space):
            return cls(space, tuple(int(d) for d in text))  # out-of-range digits: __post_init__ names them
        if text.isdigit() and not has_codes(space):
            raise UserError(
                f"{text!r} looks like a digit code, but space {space.name!r} has layers with more than 10 choices and takes "
                "architecture strings only (NAS-Bench-Macro codes belong to space nasbench_macro)"
            )
        tokens = text.split("-")
        if len(tokens) != space.num_layers:
            raise UserError(
                f"architecture {text!r} has {len(tokens)} tokens; space {space.name!r} needs {space.num_layers} "
                f"(one per searchable layer, joined by '-'"
                + (f", or a code of {space.num_layers} digits, one choice index per layer)" if has_codes(space) else ")")
            )
        genes = []
        for pos, (token, layer) in enumerate(zip(tokens, space.layers, strict=True), start=1):
            offered = [c.token for c in layer.choices]
            if token not in offered:
                raise UserError(
                    f"invalid token {token!r} at position {pos} of {text!r}: layer {pos} of space {space.name!r} offers {', '.join(offered)}"
                )
            genes.append(offered.index(token))
        return cls(space, tuple(genes))

    @classmethod
    def random(cls, space: SearchSpace, rng: np.random.Generator) -> Arch:
        return cls(space, tuple(int(rng.integers(m)) for m in space.n_choices))


def has_codes(space: SearchSpace) -> bool:
    """Whether architectures of ``space`` can be written as digit codes (every layer has <= 10 choices)."""
    return max(space.n_choices) <= 10
