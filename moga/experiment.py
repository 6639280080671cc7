"""What an experiment config resolves to: its space, its dataset, its run directory (locked on rank 0)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from supernet.errors import UserError

if TYPE_CHECKING:
    from moga.config import ExperimentConfig
    from supernet.data import Dataset
    from supernet.distributed import DistContext
    from supernet.space import SearchSpace


def experiment_space(cfg: ExperimentConfig) -> SearchSpace:
    from supernet.space import get_space

    s = cfg.space
    return get_space(s.name, num_classes=s.num_classes, resolution=s.resolution, width_mult=s.width_mult, variant=s.variant)


def experiment_dataset(cfg: ExperimentConfig) -> Dataset:
    from supernet.data import load_dataset

    d = cfg.data
    return load_dataset(
        d.kind, d.path, cfg.space.resolution, search_val_per_class=d.search_val_per_class, seed=cfg.seed, num_workers=d.workers
    )


@contextlib.contextmanager
def locked_on_rank0(run_dir: Path, ctx: DistContext) -> Iterator[None]:
    """Rank 0 holds the run-directory lock; if it cannot, every rank stops (none waits forever)."""
    from moga.runio import run_lock
    from supernet.distributed import all_ranks_ok

    with contextlib.ExitStack() as stack:
        error: UserError | None = None
        if ctx.is_main:
            try:
                stack.enter_context(run_lock(run_dir))
            except UserError as exc:
                error = exc
        if not all_ranks_ok(error is None, ctx):
            raise error or UserError(f"rank 0 could not lock {run_dir}")
        yield
