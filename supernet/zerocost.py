"""Zero-cost proxies (as NASLib / NAS-Bench-Suite-Zero report them): training-free scores of freshly
initialised networks, baselines for how well a supernet ranks architectures. Higher = predicted better, for
all four.

* ``synflow`` (Tanaka et al. 2020; Abdelfattah et al. 2021, "Zero-cost proxies for lightweight NAS"): the
  network in float64 with every parameter replaced by its absolute value, BatchNorm in eval mode with its
  default running statistics (mean 0, variance 1: each BN is a scale by 1/sqrt(1 + eps), where NASLib removes
  BN), dropout off; R = sum of the output for an all-ones input of shape (1, 3, H, W); score = sum over conv and
  linear weights of |theta * dR/dtheta|. The data batch is not used, only its H x W.
* ``naswot`` (Mellor et al. 2021, "Neural architecture search without training", the ReLU-code version):
  forward the batch in train mode; each activation module (ReLU, ReLU6, Hardswish, SiLU: those of
  ``supernet.blocks.make_act``) gives a binary code per image, (input > 0) flattened (= output > 0 for
  these); codes are concatenated over layers into C (N x D); K = C C^T + (1 - C)(1 - C)^T;
  score = log|det K| (``slogdet``, float64).
* ``snip`` (Lee et al. 2019): cross-entropy loss on the labelled batch, train mode; score = sum over conv
  and linear weights of |theta * dL/dtheta|.
* ``grad_norm`` (NASLib's definition): sum over conv and linear weights of ||dL/dW||_2, the same backward.

Every network is built fresh from one seed (the same for all architectures, so their scores compare; the
same seed gives bit-identical scores; the caller's torch RNG state is left untouched) and scored by one
forward + backward on a float32 build (naswot, snip, grad_norm) and one on a float64 copy (synflow).

Non-finite values are guarded so that every score is a finite float64: synflow is a sum of non-negative
terms, so a non-finite value can only be an overflow and is reported as ``np.finfo(np.float64).max``; for the
others +inf becomes that maximum and -inf or NaN (e.g. naswot's singular K, as for a batch of one image
repeated) become ``-np.finfo(np.float64).max``, the worst score.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from supernet.arch import Arch
from supernet.errors import UserError
from supernet.model import MobileNet

ZERO_COST: tuple[str, ...] = ("synflow", "naswot", "snip", "grad_norm")
ACTIVATIONS: tuple[type[nn.Module], ...] = (nn.ReLU, nn.ReLU6, nn.Hardswish, nn.SiLU)
"""The rectifier-like modules naswot reads codes from (``Hardsigmoid``, the SE gate, is positive everywhere)."""
_MAX = float(np.finfo(np.float64).max)
_CHUNK = 1 << 24


def _weighted(model: nn.Module) -> list[nn.Module]:
    """The conv and linear layers whose weights the proxies sum over (depthwise convs included)."""
    return [m for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]


def _finite(value: float) -> float:
    """NaN and -inf -> the lowest float64, +inf -> the highest (see the module docstring)."""
    return -_MAX if np.isnan(value) else float(np.clip(value, -_MAX, _MAX))


def synflow(model: nn.Module, resolution: Sequence[int]) -> float:
    """Synflow of ``model`` (left unchanged: scored on a float64, sign-linearised copy)."""
    net = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        for p in net.parameters():
            p.abs_()
        for m in net.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.reset_running_stats()
    net.zero_grad(set_to_none=True)
    device = next(net.parameters()).device
    net(torch.ones(1, 3, *resolution, dtype=torch.float64, device=device)).sum().backward()
    with torch.no_grad():
        total = sum(float((m.weight * m.weight.grad).abs().sum()) for m in _weighted(net) if m.weight.grad is not None)
    return float(total) if np.isfinite(total) else _MAX


def naswot_kernel(codes: Sequence[Tensor]) -> Tensor:
    """K = C C^T + (1 - C)(1 - C)^T (float64) of per-layer binary codes, each (N, ...), summed layer by layer.

    With S = 2C - 1 (entries +-1), K = (S S^T + D) / 2 for D code bits; S S^T is computed in float32 in
    column chunks of at most 2^24 (integer sums below 2^24 are exact in float32), accumulated in float64.
    """
    k = torch.zeros(len(codes[0]), len(codes[0]), dtype=torch.float64, device=codes[0].device)
    for code in codes:
        s = code.reshape(len(code), -1).float() * 2 - 1
        for part in s.split(_CHUNK, 1):
            k += (part @ part.T).double() + part.shape[1]
    return k / 2


def _data_proxies(model: nn.Module, images: Tensor, labels: Tensor, wanted: set[str]) -> dict[str, float]:
    """naswot, snip and grad_norm from one train-mode forward (+ one backward when snip/grad_norm are wanted)."""
    kernel: list[Tensor] = []  # K summed over the activation modules as the forward reaches them

    def record(_m: nn.Module, inp: tuple[Tensor, ...], _out: Tensor) -> None:
        k = naswot_kernel([inp[0].detach() > 0])
        kernel[:] = [kernel[0] + k] if kernel else [k]

    hooks = [m.register_forward_hook(record) for m in model.modules() if isinstance(m, ACTIVATIONS)] if "naswot" in wanted else []
    grads = bool(wanted & {"snip", "grad_norm"})
    model.train()
    model.zero_grad(set_to_none=True)
    try:
        with torch.set_grad_enabled(grads):
            logits = model(images)
    finally:
        for h in hooks:
            h.remove()
    out: dict[str, float] = {}
    if "naswot" in wanted:
        # no activation module at all (a space of identity activations): no codes, every image alike
        out["naswot"] = _finite(float(torch.linalg.slogdet(kernel[0])[1])) if kernel else -_MAX
    if grads:
        F.cross_entropy(logits, labels).backward()
        with torch.no_grad():
            pairs = [(m.weight.double(), m.weight.grad.double()) for m in _weighted(model) if m.weight.grad is not None]
            if "snip" in wanted:
                out["snip"] = _finite(sum(float((w * g).abs().sum()) for w, g in pairs))
            if "grad_norm" in wanted:
                out["grad_norm"] = _finite(sum(float(g.norm()) for _, g in pairs))
    return out


def _check(names: Sequence[str], images: Tensor, labels: Tensor) -> None:
    unknown = [n for n in names if n not in ZERO_COST]
    if unknown:
        raise UserError(f"unknown zero-cost proxy {unknown[0]!r} (known: {', '.join(ZERO_COST)})")
    if images.ndim != 4 or images.shape[1] != 3:
        raise UserError(f"zero-cost proxies need images of shape (N, 3, H, W), got {tuple(images.shape)}")
    if labels.shape != (len(images),):
        raise UserError(f"zero-cost proxies need one label per image: {len(images)} images, labels of shape {tuple(labels.shape)}")


def zero_cost_scores(
    archs: Sequence[Arch],
    images: Tensor,
    labels: Tensor,
    names: Sequence[str] = ZERO_COST,
    *,
    seed: int = 0,
    progress: bool = False,
) -> dict[str, np.ndarray]:
    """Zero-cost proxies ``names`` of every architecture: ``{name: float64 array of len(archs)}``, higher = better.

    ``images`` (N, 3, H, W) are normalised images (a fixed batch, e.g. 64 training images), ``labels`` (N,)
    their classes (< ``arch.space.num_classes``); the networks are built on the images' device. Each is built
    once, from ``seed``; synflow scores a copy, so the data-based proxies see the initial weights.
    """
    names = tuple(names)
    _check(names, images, labels)
    wanted = set(names)
    images, labels = images.float(), labels.long()
    scores = {n: np.zeros(len(archs), dtype=np.float64) for n in names}
    for i, arch in enumerate(tqdm(archs, desc="zero-cost", unit="net", leave=False, disable=not progress)):
        with torch.random.fork_rng(devices=[images.device] if images.is_cuda else []):
            torch.manual_seed(seed)
            model = MobileNet(arch).to(images.device)
            row = {"synflow": synflow(model, tuple(images.shape[2:]))} if "synflow" in wanted else {}
            if wanted - {"synflow"}:
                row |= _data_proxies(model, images, labels, wanted)
        for n in names:
            scores[n][i] = row[n]
    return scores
