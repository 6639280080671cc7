"""Search spaces as data: YAML skeletons in a registry, resolved for a task, and the one shape walk.

A space file names the fixed parts (stem, separable block, head), each searchable layer's output
channels / stride / activation, and the choice set: either the product kernels x expansions x squeeze-excite
(optionally with a skip choice where a layer keeps its shape), or an explicit list of tokens
(``[skip, k3e3, k5e6]``: every layer offers exactly these, in this order; a ``skip`` on a layer that changes
stride or channels is the projection 1x1 conv (with the stride) + BN + ``layers.skip_act``; ``k3e1g2``: both 1x1
convs in 2 groups with a channel shuffle; ``layers.expand_e1`` keeps the expansion conv at expansion 1, as FBNet). A space may name
its ``benchmark`` (trained accuracies of every network, ``supernet.benchmark``). ``get_space`` resolves it
for a number of classes, an input resolution, a width multiplier and a stride variant.
``SearchSpace.layer_shape`` is the single place where shapes are derived: model building, parameter/MAC
counting and latency-table keys all consume it.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from supernet.errors import UserError
from supernet.readers import read_yaml

SPACE_DIR = Path(__file__).parent / "spaces"
ACTIVATIONS = ("relu", "relu6", "hswish", "swish", "identity")
VARIANTS = ("imagenet", "cifar")


@dataclass(frozen=True)
class SpaceSettings:
    """What ``get_space`` resolves a space for: input resolution, classes, width multiplier, stride variant."""

    resolution: int
    num_classes: int
    width_mult: float
    variant: str

    def kwargs(self) -> dict[str, Any]:
        """As ``get_space`` keyword arguments."""
        return asdict(self)


# The two default tasks, defined only here. The library's (``get_space``, ``build_model``, ``moga arch`` /
# ``moga export`` / ``moga lut import``) is ImageNet, the setting the published networks were designed for; an
# experiment config's (``SpaceConfig``) is the embedded CIFAR-10 subset that ``data.kind``'s default loads.
IMAGENET = SpaceSettings(resolution=224, num_classes=1000, width_mult=1.0, variant="imagenet")
EMBEDDED_CIFAR10 = SpaceSettings(resolution=32, num_classes=10, width_mult=1.0, variant="cifar")


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round channels to a multiple of ``divisor``, never dropping more than 10% (MobileNet rule)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


# ----------------------------------------------------------------------------- YAML schema
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class _StemYaml(_Strict):
    channels: int = Field(gt=0)
    kernel: int = Field(default=3, gt=0)
    stride: int = Field(default=2, gt=0)
    act: Literal[ACTIVATIONS]  # type: ignore[valid-type]


class _SeparableYaml(_Strict):
    channels: int = Field(gt=0)
    kernel: int = Field(default=3, gt=0)
    act: Literal[ACTIVATIONS]  # type: ignore[valid-type]


class _LayersYaml(_Strict):
    out_channels: list[int]
    strides: list[int]
    acts: list[Literal[ACTIVATIONS]] | Literal[ACTIVATIONS]  # type: ignore[valid-type]
    skip_act: Literal[ACTIVATIONS] = "identity"  # type: ignore[valid-type]  # after a skip's projection conv + BN
    expand_e1: bool = False  # keep the 1x1 expansion conv at expansion 1 (FBNet); False drops it (MoGA)


class _ChoicesYaml(_Strict):
    kernels: list[int] = Field(min_length=1)
    expansions: list[float] = Field(min_length=1)
    se: list[bool] = Field(default=[False], min_length=1)
    skip: bool = False

    @field_validator("expansions", mode="before")
    @classmethod
    def _ints_are_floats(cls, v: object) -> object:
        return [float(e) if isinstance(e, int) else e for e in v] if isinstance(v, list) else v


class _HeadYaml(_Strict):
    channels: int = Field(gt=0)
    act: Literal[ACTIVATIONS]  # type: ignore[valid-type]
    fc_channels: int = Field(default=0, ge=0)
    dropout: float = Field(default=0.2, ge=0, lt=1)
    scale_with_width: bool = True


_TOKEN = re.compile(r"^k(?P<k>[1-9][0-9]*)e(?P<e>[0-9]+(?:\.[0-9]+)?)(?:g(?P<g>[1-9][0-9]*))?(?P<se>se)?$")


def parse_token(token: str) -> Choice:
    """The ``Choice`` a token names: ``skip`` or ``k<kernel>e<expansion>[g<groups>][se]`` (``k3e6``, ``k5e3se``;
    ``k3e1g2``: both 1x1 convs in 2 groups with a channel shuffle after the expansion, as FBNet)."""
    if token == "skip":
        return Choice(skip=True)
    match = _TOKEN.match(token)
    if not match or float(match["e"]) <= 0 or match["g"] == "1":
        raise ValueError(f"{token!r} is not a choice token (skip, k<kernel>e<expansion>[g<groups>][se], e.g. k3e6, k5e3se or k3e1g2)")
    return Choice(int(match["k"]), float(match["e"]), match["se"] is not None, groups=int(match["g"] or 1))


class _SpaceYaml(_Strict):
    name: str
    stem: _StemYaml
    separable: _SeparableYaml | None = None
    layers: _LayersYaml
    choices: _ChoicesYaml | list[str]
    head: _HeadYaml
    benchmark: str | None = None  # name of the table of trained accuracies of this exact space, if any

    @field_validator("choices")
    @classmethod
    def _tokens(cls, v: _ChoicesYaml | list[str]) -> _ChoicesYaml | list[str]:
        if isinstance(v, list):
            if not v:
                raise ValueError("an explicit choice list needs at least one token")
            for token in v:
                parse_token(token)
            if len(set(v)) != len(v):
                raise ValueError(f"choice tokens listed twice in {v}")
        return v


# ----------------------------------------------------------------------------- resolved space
@dataclass(frozen=True)
class Choice:
    """One candidate operation of a searchable layer."""

    kernel: int = 0
    expansion: float = 0.0
    se: bool = False
    skip: bool = False
    groups: int = 1  # of both 1x1 convs; > 1 adds a channel shuffle after the expansion

    @property
    def token(self) -> str:
        if self.skip:
            return "skip"
        return f"k{self.kernel}e{self.expansion:g}" + (f"g{self.groups}" if self.groups > 1 else "") + ("se" if self.se else "")


@dataclass(frozen=True)
class LayerSpec:
    in_channels: int
    out_channels: int
    stride: int
    act: str
    choices: tuple[Choice, ...]
    skip_act: str = "identity"  # a skip that changes stride or channels: 1x1 conv + BN + this
    expand_e1: bool = False  # an expansion-1 choice keeps its 1x1 expansion conv

    @property
    def keeps_shape(self) -> bool:
        """Stride 1 and as many channels out as in: a skip here is the identity."""
        return self.stride == 1 and self.in_channels == self.out_channels


@dataclass(frozen=True)
class BlockShape:
    """Everything that determines one block's weights, cost and latency."""

    kind: str  # stem | separable | ir | skip | head
    in_hw: int
    in_ch: int
    out_hw: int
    out_ch: int
    kernel: int = 1
    stride: int = 1
    expansion: float = 1.0
    mid_ch: int = 0  # expanded width (ir), head conv width (head)
    se_ch: int = 0  # squeeze-excite bottleneck width, 0 = no SE
    fc_ch: int = 0  # head: 1x1 conv after pooling, 0 = none
    act: str = "identity"
    groups: int = 1  # ir: groups of both 1x1 convs, channel shuffle after the expansion when > 1
    expand_e1: bool = False  # ir at expansion 1: the 1x1 expansion conv is kept (C_in -> C_in)

    @property
    def has_expand(self) -> bool:
        """Whether an ir block has its 1x1 expansion conv (always unless expansion 1 drops it)."""
        return self.mid_ch != self.in_ch or self.expand_e1

    @property
    def residual(self) -> bool:
        return self.kind == "ir" and self.stride == 1 and self.in_ch == self.out_ch

    @property
    def is_identity(self) -> bool:
        """A skip that changes nothing: no weights, no cost, no latency-table entry."""
        return self.kind == "skip" and self.stride == 1 and self.in_ch == self.out_ch

    @property
    def key(self) -> str:
        """Readable, greppable latency-table key."""
        io = f"{self.in_hw}x{self.in_hw}x{self.in_ch}-{self.out_ch}"
        if self.kind == "ir":
            op = f"k{self.kernel}e{self.expansion:g}" + (f"g{self.groups}" if self.groups > 1 else "")
            e1 = ":e1conv" if self.expand_e1 else ""
            return f"ir:{io}:{op}:s{self.stride}:se{int(self.se_ch > 0)}:{self.act}{e1}"
        if self.kind == "head":
            return f"head:{io}:c{self.mid_ch}:fc{self.fc_ch}:{self.act}"
        return f"{self.kind}:{io}:k{self.kernel}:s{self.stride}:{self.act}"


@dataclass(frozen=True)
class SearchSpace:
    name: str
    num_classes: int
    resolution: int
    width_mult: float
    variant: str
    stem: BlockShape
    separable: BlockShape | None
    layers: tuple[LayerSpec, ...]
    layer_hw: tuple[int, ...]  # input resolution of each searchable layer
    head: BlockShape
    dropout: float
    benchmark: str | None = None  # trained accuracies of every network (``supernet.benchmark``), if published

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def n_choices(self) -> tuple[int, ...]:
        return tuple(len(layer.choices) for layer in self.layers)

    @property
    def size(self) -> int:
        return math.prod(self.n_choices)

    def layer_shape(self, layer: int, choice: int) -> BlockShape:
        """Shape of searchable layer ``layer`` (0-based) under choice index ``choice``.

        The depthwise kernel is the choice's, cropped to the input map: with padding k//2, a tap more than
        ``hw - 1`` pixels from the centre only ever multiplies padding, so a 7x7 on a 2x2 map is exactly a
        3x3 and on a 1x1 map a per-channel scale. The block is built, counted and timed at that effective
        size, so a search neither pays latency for the dead taps nor earns parameters from them.
        """
        spec = self.layers[layer]
        op = spec.choices[choice]
        hw = self.layer_hw[layer]
        out_hw = (hw + spec.stride - 1) // spec.stride
        if op.skip:
            if spec.keeps_shape:
                return BlockShape("skip", hw, spec.in_channels, out_hw, spec.out_channels)
            return BlockShape("skip", hw, spec.in_channels, out_hw, spec.out_channels, stride=spec.stride, act=spec.skip_act)
        mid = make_divisible(spec.in_channels * op.expansion) if op.expansion != 1 else spec.in_channels
        return BlockShape(
            "ir",
            hw,
            spec.in_channels,
            out_hw,
            spec.out_channels,
            kernel=min(op.kernel, 2 * hw - 1),
            stride=spec.stride,
            expansion=op.expansion,
            mid_ch=mid,
            se_ch=mid // 4 if op.se else 0,
            act=spec.act,
            groups=op.groups,
            expand_e1=spec.expand_e1 and mid == spec.in_channels,
        )

    def canonical(self, genes: tuple[int, ...] | list[int]) -> tuple[int, ...]:
        """The representative of ``genes``' class of identical networks: within each run of consecutive layers
        where a skip is the identity (same shape, activation and choices), the skips move to the run's end and
        the other blocks keep their order. An identity layer computes nothing, so where it sits in such a run
        changes nothing but the path through the supernet (NAS-Bench-Macro trains one network per class)."""
        out = list(genes)
        i = 0
        while i < len(out):
            j = i
            while j < len(out) and self._identity_skip(j) is not None and self._same_layer(i, j):
                j += 1
            if j - i > 1:
                skip = self._identity_skip(i)
                kept = [g for g in out[i:j] if g != skip]
                out[i:j] = kept + [skip] * (j - i - len(kept))  # type: ignore[list-item]
            i = max(j, i + 1)
        return tuple(out)

    def _identity_skip(self, layer: int) -> int | None:
        spec = self.layers[layer]
        if not spec.keeps_shape:
            return None
        return next((c for c, op in enumerate(spec.choices) if op.skip), None)

    def _same_layer(self, a: int, b: int) -> bool:
        la, lb = self.layers[a], self.layers[b]
        return la == lb and self.layer_hw[a] == self.layer_hw[b]

    def walk(self, genes: tuple[int, ...] | list[int]) -> list[BlockShape]:
        """Every block of the network for one architecture, input to output."""
        fixed_front = [self.stem] + ([self.separable] if self.separable else [])
        return fixed_front + [self.layer_shape(i, c) for i, c in enumerate(genes)] + [self.head]


def _load_yaml(name_or_path: str) -> _SpaceYaml:
    path = SPACE_DIR / f"{name_or_path}.yaml"
    if not path.exists():
        path = Path(name_or_path)
        if path.suffix not in (".yaml", ".yml") or not path.exists():
            raise UserError(
                f"unknown search space {name_or_path!r}: registered spaces are {', '.join(registered_spaces())}, or give a path to a space YAML file"
            )
    raw = read_yaml(path, "space file")
    if not isinstance(raw, dict):
        fields = ", ".join(k for k, f in _SpaceYaml.model_fields.items() if f.is_required())
        raise UserError(f"{path}: {'empty' if raw is None else 'not a mapping'}: a space file is a mapping with {fields}")
    try:
        return _SpaceYaml.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise UserError(f"{path}: space field {where!r}: {err['msg']}") from None


def registered_spaces() -> list[str]:
    return sorted(p.stem for p in SPACE_DIR.glob("*.yaml"))


@cache
def get_space(
    name: str = "moga",
    *,
    num_classes: int = IMAGENET.num_classes,
    resolution: int = IMAGENET.resolution,
    width_mult: float = IMAGENET.width_mult,
    variant: str = IMAGENET.variant,
) -> SearchSpace:
    """Resolve a registered space (or a space YAML path) for a task.

    ``variant="cifar"`` is for small (32x32) images: the stem and the first stride-2 searchable
    layer run at stride 1, so the final feature map is 4x4 instead of 1x1.
    """
    if variant not in VARIANTS:
        raise UserError(f"unknown space variant {variant!r}: choose one of {', '.join(VARIANTS)}")
    if num_classes < 1 or resolution < 8 or width_mult <= 0:
        raise UserError(f"invalid space parameters: num_classes={num_classes}, resolution={resolution}, width_mult={width_mult}")
    y = _load_yaml(name)
    if y.benchmark is not None:
        from supernet.benchmark import BENCHMARKS  # imported here: benchmark builds on this module

        if y.benchmark not in BENCHMARKS:
            raise UserError(f"space {y.name!r}: unknown benchmark {y.benchmark!r} (moga ships {', '.join(sorted(BENCHMARKS))})")
    n = len(y.layers.out_channels)
    acts = y.layers.acts if isinstance(y.layers.acts, list) else [y.layers.acts] * n
    if not (n == len(y.layers.strides) == len(acts)) or n == 0:
        raise UserError(f"space {y.name!r}: layers.out_channels, strides and acts must have the same non-zero length")

    def ch(c: int) -> int:
        return make_divisible(c * width_mult)

    strides = list(y.layers.strides)
    stem_stride = y.stem.stride
    if variant == "cifar":
        stem_stride = 1
        first = next((i for i, s in enumerate(strides) if s > 1), None)
        if first is not None:
            strides[first] = 1

    hw = (resolution + stem_stride - 1) // stem_stride
    stem = BlockShape("stem", resolution, 3, hw, ch(y.stem.channels), kernel=y.stem.kernel, stride=stem_stride, act=y.stem.act)
    prev = stem.out_ch
    separable = None
    if y.separable:
        separable = BlockShape("separable", hw, prev, hw, ch(y.separable.channels), kernel=y.separable.kernel, act=y.separable.act)
        prev = separable.out_ch

    if isinstance(y.choices, list):  # explicit: every layer offers these, in this order
        base, skip_where_shape_kept = [parse_token(t) for t in y.choices], False
    else:
        c = y.choices
        base, skip_where_shape_kept = [Choice(k, e, se) for k, e, se in itertools.product(c.kernels, c.expansions, c.se)], c.skip
    layers, layer_hw = [], []
    for out, stride, act in zip(y.layers.out_channels, strides, acts, strict=True):
        out_ch = ch(out)
        can_skip = skip_where_shape_kept and stride == 1 and prev == out_ch
        choices = tuple(base) + ((Choice(skip=True),) if can_skip else ())
        _check_groups(y.name, len(layers) + 1, prev, out_ch, choices, y.layers.expand_e1)
        layers.append(LayerSpec(prev, out_ch, stride, act, choices, y.layers.skip_act, y.layers.expand_e1))
        layer_hw.append(hw)
        hw = (hw + stride - 1) // stride
        prev = out_ch

    scale = width_mult if y.head.scale_with_width else max(1.0, width_mult)
    head = BlockShape(
        "head",
        hw,
        prev,
        1,
        num_classes,
        mid_ch=make_divisible(y.head.channels * scale),
        fc_ch=make_divisible(y.head.fc_channels * max(1.0, width_mult)) if y.head.fc_channels else 0,
        act=y.head.act,
    )
    return SearchSpace(
        y.name, num_classes, resolution, width_mult, variant, stem, separable, tuple(layers), tuple(layer_hw), head, y.head.dropout,
        y.benchmark,
    )  # fmt: skip


def _check_groups(space: str, layer: int, in_ch: int, out_ch: int, choices: tuple[Choice, ...], expand_e1: bool) -> None:
    """Grouped 1x1 convs need channel counts the groups divide, and an expansion conv to shuffle after."""
    for op in choices:
        if op.groups == 1:
            continue
        mid = make_divisible(in_ch * op.expansion) if op.expansion != 1 else in_ch
        if op.expansion == 1 and not expand_e1:
            raise UserError(f"space {space!r}: {op.token} at expansion 1 needs its expansion conv (set layers.expand_e1: true)")
        if in_ch % op.groups or mid % op.groups or out_ch % op.groups:
            raise UserError(
                f"space {space!r}: layer {layer} ({in_ch}->{mid}->{out_ch} channels) cannot run {op.token} in {op.groups} groups"
            )


def space_spec(space: SearchSpace) -> dict[str, Any]:
    """The resolved space as plain data (stored in checkpoints and latency tables): rebuilt without its YAML
    file or the registry, so a run of a custom space can be inspected on another machine."""
    return asdict(space)


def space_from_spec(spec: dict[str, Any]) -> SearchSpace:
    def block(d: dict[str, Any] | None) -> BlockShape | None:
        return None if d is None else BlockShape(**d)

    try:
        layers = tuple(LayerSpec(**{**d, "choices": tuple(Choice(**c) for c in d["choices"])}) for d in spec["layers"])
        fields = {**spec, "stem": block(spec["stem"]), "separable": block(spec["separable"]), "head": block(spec["head"])}
        return SearchSpace(**{**fields, "layers": layers, "layer_hw": tuple(spec["layer_hw"])})
    except (KeyError, TypeError) as exc:
        raise UserError(f"malformed space description ({type(exc).__name__}: {exc})") from None
