"""The one way a command sets up and tears down distribution (``torchrun --nproc_per_node=N -m moga ...``):
every rank runs the same command; rank 0 alone holds the run-directory lock and writes files."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")


@contextmanager
def distributed(device: str) -> Iterator[tuple[Any, Any]]:
    """(DistContext, device) for this process; the process group is torn down afterwards."""
    import torch.distributed as tdist

    from supernet.distributed import init_distributed

    ctx, dev = init_distributed(device)
    try:
        yield ctx, dev
    finally:
        if ctx.active and tdist.is_initialized():
            tdist.destroy_process_group()


def on_every_rank(device: str, progress: bool, stage: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
    """``stage(*args, **kwargs)`` on every rank, given ``dist``, ``device`` and ``progress`` (bars on rank 0 only)
    as keywords; its result on rank 0, which alone prints it, and ``None`` on the others."""
    with distributed(device) as (ctx, dev):
        result = stage(*args, **kwargs, progress=progress and ctx.is_main, dist=ctx, device=dev)
    return result if ctx.is_main else None
