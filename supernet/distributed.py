"""Distributed training without a DDP wrapper: the process group torchrun describes, one flat gradient
all-reduce per step, rank 0's start state broadcast, agreement between ranks, and every rank's RNG state."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as tdist
from torch import Tensor, nn

from supernet.device import check_device


def prepare_device(device: torch.device) -> None:
    """Process-wide CUDA settings the field trains with: cuDNN picks the fastest convolution algorithms
    for the (fixed) input shapes. Nothing changes on CPU."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


def dist_backend(device: torch.device) -> str:
    """The collective backend of ``device``: NCCL between GPUs, gloo between CPU processes."""
    return "nccl" if device.type == "cuda" else "gloo"


def rank_device(device: torch.device, local_rank: int) -> torch.device:
    """One process per GPU: a CUDA run's rank takes GPU ``LOCAL_RANK`` of its machine; CPU stays CPU."""
    return torch.device("cuda", local_rank) if device.type == "cuda" else device


def init_distributed(device: str) -> tuple[DistContext, torch.device]:
    """Join the process group torchrun describes (RANK/WORLD_SIZE/LOCAL_RANK); one process otherwise.

    gloo on CPU, nccl on CUDA; with CUDA each rank takes GPU ``LOCAL_RANK``.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    dev = check_device(device)  # a device this machine lacks: one line, before any work
    prepare_device(dev)
    if world_size <= 1:
        return DistContext(), dev
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    dev = rank_device(dev, local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if not tdist.is_initialized():
        tdist.init_process_group(dist_backend(dev))
    return DistContext(rank, world_size, local_rank), dev


def allreduce_gradients(params: Sequence[nn.Parameter], ctx: DistContext) -> None:
    """Average the gradients over ranks with one flat all-reduce (every rank trained the same paths)."""
    grads = [p.grad for p in params if p.grad is not None]
    if not ctx.active or not grads:
        return
    average_over_ranks(grads, ctx.world_size)


def average_over_ranks(grads: Sequence[Tensor], world_size: int) -> None:
    """In place: every tensor becomes its mean over the process group's ranks, through one flat all-reduce."""
    flat = torch.cat([g.reshape(-1) for g in grads])
    tdist.all_reduce(flat)
    flat /= world_size
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def broadcast_state(model: nn.Module, ctx: DistContext) -> None:
    """Start every rank from rank 0's weights and buffers."""
    if ctx.active:
        for t in model.state_dict().values():
            tdist.broadcast(t, 0)


def _collective_device() -> torch.device:
    """Where tensors of a collective must live: NCCL only reduces CUDA tensors, gloo CPU ones."""
    if tdist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_ranks_ok(ok: bool, ctx: DistContext) -> bool:
    """True on every rank only if ``ok`` on every rank (so one rank's error stops all, no hang)."""
    if not ctx.active:
        return ok
    flag = torch.tensor([0 if ok else 1], device=_collective_device())
    tdist.all_reduce(flag)
    return int(flag) == 0


def gather_rng_states(ctx: DistContext) -> dict[str, list[Tensor]]:
    """Every rank's torch RNG state (dropout), gathered so rank 0's checkpoint restores all of them."""
    mine = {"cpu": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state() if torch.cuda.is_available() else torch.empty(0)}
    if not ctx.active:
        return {k: [v] for k, v in mine.items()}
    gathered: list[Any] = [None] * ctx.world_size
    tdist.all_gather_object(gathered, mine)
    return {k: [g[k] for g in gathered] for k in mine}
