"""Optimisation, shared by supernet training and retraining (``OptimConfig``): optimizer, LR schedule, mixed precision, and
``Update`` - the one optimizer update that follows a step's gradients (clip, AMP unscale, step, schedule)."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from supernet.config import OptimConfig
from supernet.errors import UserError


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on conv/linear weights only: decaying BN scales/shifts and biases only hurts."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim > 1 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    groups = param_groups(model, cfg.weight_decay)
    if cfg.optimizer == "sgd":
        nesterov = cfg.nesterov and cfg.momentum > 0
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=nesterov)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.momentum, 0.999))
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}")


def warmup_cosine(step: int, total: int, warmup: int) -> float:
    """LR factor of update ``step`` (0-based): linear warm-up to 1, then cosine to 0 at ``total``."""
    if step < warmup:
        return (step + 1) / (warmup + 1)
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def build_scheduler(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: warmup_cosine(step, total_steps, warmup_steps))


AmpSetting = bool | str  # the ``amp`` config value: true (auto), false, "bf16" or "fp16"


def autocast_dtype(device: torch.device, amp: AmpSetting, bf16_supported: Callable[[], bool] | None = None) -> torch.dtype | None:
    """The autocast dtype ``amp`` asks for on ``device``; None means plain float32.

    ``true`` (the default, also written ``auto``): on CUDA bfloat16 where the GPU supports it, else float16
    (with a grad scaler); off on every other device, so CPU results stay float32. ``false``: off.
    ``"bf16"`` / ``"fp16"``: that dtype; bf16 also on CPU (CPU autocast: slow, a smoke test of the AMP path),
    fp16 only on CUDA. ``bf16_supported`` defaults to ``torch.cuda.is_bf16_supported`` (injectable for tests).
    """
    if amp is False:
        return None
    if amp is True:
        if device.type != "cuda":
            return None
        supported = bf16_supported or torch.cuda.is_bf16_supported
        return torch.bfloat16 if supported() else torch.float16
    if amp == "bf16":
        if device.type == "cuda" and not (bf16_supported or torch.cuda.is_bf16_supported)():
            raise UserError("amp=bf16: this GPU has no bfloat16 support; use amp=fp16 or amp=true")
        return torch.bfloat16
    if amp == "fp16":
        if device.type != "cuda":
            raise UserError(f"amp=fp16 needs a CUDA device (device is {device}); use amp=bf16 or amp=false")
        return torch.float16
    raise UserError(f"amp must be true, false, auto, bf16 or fp16, got {amp!r}")


class Precision:
    """Mixed precision: ``torch.autocast`` in the dtype ``autocast_dtype`` resolves, a GradScaler with float16.

    bfloat16 has float32's range, so it needs no loss scaling; float16 does. With the scaler every
    backward pass scales its loss by the same factor, and ``Update.apply`` unscales once before clipping
    and the single optimizer step (skipped, and the scale lowered, if any gradient overflowed).
    """

    def __init__(self, device: torch.device, amp: AmpSetting = False, bf16_supported: Callable[[], bool] | None = None) -> None:
        self.device_type = torch.device(device).type
        self.dtype = autocast_dtype(torch.device(device), amp, bf16_supported)
        self.enabled = self.dtype is not None
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.dtype == torch.float16 and self.device_type == "cuda")

    @property
    def name(self) -> str:
        """The autocast dtype's short name (bf16, fp16, or fp32 when off), for logs and benchmark lines."""
        return {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(self.dtype, "fp32")  # type: ignore[arg-type]

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        return torch.autocast(self.device_type, dtype=self.dtype) if self.dtype is not None else contextlib.nullcontext()

    def backward(self, loss: Tensor) -> None:
        self.scaler.scale(loss).backward()


@dataclass
class Update:
    """One optimizer update after a step's gradients: unscale (AMP), clip, optimizer and scheduler step."""

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    precision: Precision
    grad_clip: float = 0.0  # 0 disables

    def apply(self, params: Sequence[nn.Parameter]) -> float:
        """The update on ``params`` (gradients already averaged over ranks); returns the lr it used."""
        self.precision.scaler.unscale_(self.optimizer)
        if self.grad_clip > 0:
            nn.utils.clip_grad_norm_(params, self.grad_clip)
        lr = float(self.optimizer.param_groups[0]["lr"])
        self.precision.scaler.step(self.optimizer)
        self.precision.scaler.update()
        self.scheduler.step()
        return lr

    def state_dict(self) -> dict[str, Any]:
        """The checkpoint entries (their keys are the checkpoint's): optimizer, scheduler, scaler."""
        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.precision.scaler.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.precision.scaler.load_state_dict(state["scaler"])
