"""The one way a command sets up and tears down distribution (``torchrun --nproc_per_node=N -m moga ...``):
every rank runs the same command; rank 0 alone holds the run-directory lock and writes files."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def distributed(device: str) -> Iterator[tuple[Any, Any]]:
    """(DistContext, device) for this process; the process group is torn down afterwards."""
    import torch.distributed as tdist

    from supernet.train import init_distributed

    ctx, dev = init_distributed(device)
    try:
        yield ctx, dev
    finally:
        if ctx.active and tdist.is_initialized():
            tdist.destroy_process_group()
