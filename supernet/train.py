"""Supernet training with FairNAS strict fairness, and the training loop standalone networks reuse.

Read top to bottom:

1. optimisation helpers (``build_optimizer``, ``build_scheduler``, ``Precision``) - shared with retraining;
2. distributed helpers (``DistContext``, ``init_distributed``, ``allreduce_gradients``);
3. checkpoints (``save_checkpoint``/``load_checkpoint``: atomic, ``weights_only`` loadable) and ``Curves``;
4. ``fit``: the generic loop - batches, one ``step_fn`` per step that accumulates gradients, one
   all-reduce, clipping, one optimizer update, curves, progress, checkpoints, exact resume;
5. the supernet: ``fair_step`` (the FairNAS step), ``train_supernet``, ``load_supernet``.

Design choices (documented here because the papers leave them open):

* The fair step computes the stem + separable block **once** per micro-batch and backpropagates through it
  once with the sum of the m paths' feature gradients. The gradients equal those of m full passes
  exactly (a test), at 1/m of the shared part's cost.
* ``shared_grad: mean`` divides the stem/separable/head gradients, which accumulate m times per step, by m,
  so every parameter sees the gradient scale of a single network; choice blocks are untouched (each is
  trained exactly once per step). ``sum`` keeps the m-fold accumulation (an m times larger effective
  learning rate on the shared parts). See BENCHMARKS.md for the measured effect.
* Distributed: no DDP wrapper (it would all-reduce after each of the m backward passes); every rank draws
  the same paths (same sampler seed), takes its shard of each global batch, and the gradients are averaged
  once per step with one flat all-reduce. BatchNorm uses per-rank batch statistics (standard DDP);
  ``micro_batches=k`` on one process computes exactly what k ranks compute (k chunks, per-chunk BN
  statistics, averaged gradients). Only rank 0 writes files.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import math
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.distributed as tdist
from torch import Tensor, nn

from supernet.arch import Arch
from supernet.blocks import InvertedResidual
from supernet.config import SupernetConfig
from supernet.data import Dataset, TensorLoader
from supernet.device import check_device
from supernet.errors import UserError
from supernet.io import atomic_write_bytes, atomic_write_text, differences, write_json
from supernet.readers import torch_load_plain
from supernet.sampler import FairnessAudit, Genes, PathSampler, make_sampler
from supernet.space import SearchSpace, space_from_spec, space_spec
from supernet.supernet import Supernet, align_choices

CHECKPOINT_FORMAT = "moga-train-checkpoint-v1"
SUPERNET_FORMAT = "moga-supernet-v1"
# Supernet settings that do not change the trained weights (validation, checkpoint frequency): a run may
# be resumed, or a finished run reused, with other values.
NON_WEIGHT_PREFIXES = ("eval_", "bn_calib_", "checkpoint_")


def derive_seed(seed: int, *key: object) -> int:
    """An independent, stable seed per purpose (sampler, dropout of rank r, validation paths, ...)."""
    digest = hashlib.blake2b(repr((seed, *key)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


# ============================================================================ 1. optimisation helpers
class OptimSettings(Protocol):
    """What the helpers read from a config section (``SupernetConfig`` and ``RetrainConfig`` both fit)."""

    optimizer: str
    lr: float
    momentum: float
    weight_decay: float
    warmup_steps: int


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on conv/linear weights only: decaying BN scales/shifts and biases only hurts."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim > 1 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def build_optimizer(model: nn.Module, cfg: OptimSettings) -> torch.optim.Optimizer:
    groups = param_groups(model, cfg.weight_decay)
    if cfg.optimizer == "sgd":
        nesterov = getattr(cfg, "nesterov", True) and cfg.momentum > 0
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
    backward pass scales its loss by the same factor, and ``train._update`` unscales once before clipping
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


def prepare_device(device: torch.device) -> None:
    """Process-wide CUDA settings the field trains with: cuDNN picks the fastest convolution algorithms
    for the (fixed) input shapes. Nothing changes on CPU."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True


# ============================================================================ 2. distributed
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


# ============================================================================ 3. checkpoints and curves
def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """``torch.save`` to bytes, then an atomic write: a crash never leaves a half-written checkpoint."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu", expect: str | None = None) -> dict[str, Any]:
    """Load with ``weights_only=True``; a missing, corrupt or foreign file is a ``UserError`` naming it."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    state = torch_load_plain(path, map_location)
    if not isinstance(state, dict) or (expect is not None and state.get("format") != expect):
        raise UserError(f"{path}: not a moga checkpoint (expected format {expect!r})")
    return state


def state_dict_misfit(expected: dict[str, torch.Tensor], found: dict[str, Any]) -> str:
    """The first difference between two state dicts' names and shapes, readable; "" when they fit."""
    for name in sorted(expected.keys() - found.keys()):
        return f"no {name}"
    for name in sorted(found.keys() - expected.keys()):
        return f"unexpected {name}"
    for name, tensor in expected.items():
        other = found[name]
        if not isinstance(other, torch.Tensor) or other.shape != tensor.shape:
            shape = tuple(other.shape) if isinstance(other, torch.Tensor) else type(other).__name__
            return f"{name} is {shape}, the model has {tuple(tensor.shape)}"
    return ""


def check_resumable(model: nn.Module, checkpoint: dict[str, Any], path: Path) -> None:
    """A ``UserError`` if the training checkpoint at ``path`` holds weights of other names or shapes; trainers
    call it before they write anything into the run directory, so a refused resume leaves it as it was."""
    misfit = state_dict_misfit(model.state_dict(), checkpoint["model"])
    if misfit:
        raise UserError(f"{path}: weights do not fit the model being trained ({misfit}); delete it to start afresh")


CURVE_COLUMNS = ("step", "loss", "train_acc", "lr", "images_per_s", "elapsed_s", "val_acc", "val_acc_best")


@dataclass
class Curves:
    """One row per optimizer update; ``val_acc``/``val_acc_best`` only on validation steps.

    ``images_per_s`` counts path-images (batch x paths per step / step time), comparable to a
    standalone network's training throughput.
    """

    rows: list[dict[str, float]] = field(default_factory=list)

    def add(self, **row: float) -> None:
        self.rows.append(row)

    def write(self, out_dir: Path) -> None:
        text = io.StringIO()
        writer = csv.DictWriter(text, CURVE_COLUMNS, restval="", extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: f"{v:.6g}" if isinstance(v, float) else v for k, v in row.items()} for row in self.rows)
        atomic_write_text(out_dir / "curves.csv", text.getvalue())
        self._plot(out_dir / "curves.png")

    def _plot(self, path: Path) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        steps = [r["step"] for r in self.rows]
        val = [(r["step"], r["val_acc"], r.get("val_acc_best", r["val_acc"])) for r in self.rows if "val_acc" in r]
        fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.8))
        ax_loss.plot(steps, [r["loss"] for r in self.rows], lw=1)
        ax_loss.set(xlabel="step", ylabel="training loss (mean over paths)")
        ax_acc.plot(steps, [r["train_acc"] for r in self.rows], lw=1, label="train (paths of the step)")
        if val:
            s, mean, best = zip(*val, strict=True)
            ax_acc.plot(s, mean, "o-", label="validation, random paths (mean)")
            ax_acc.plot(s, best, "^--", label="validation, random paths (best)")
        ax_acc.set(xlabel="step", ylabel="accuracy (%)")
        ax_acc.legend(fontsize=8)
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=90)
        plt.close(fig)
        atomic_write_bytes(path, buffer.getvalue())


class Stateful(Protocol):
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def _gather_rng_states(ctx: DistContext) -> dict[str, list[Tensor]]:
    """Every rank's torch RNG state (dropout), gathered so rank 0's checkpoint restores all of them."""
    mine = {"cpu": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state() if torch.cuda.is_available() else torch.empty(0)}
    if not ctx.active:
        return {k: [v] for k, v in mine.items()}
    gathered: list[Any] = [None] * ctx.world_size
    tdist.all_gather_object(gathered, mine)
    return {k: [g[k] for g in gathered] for k in mine}


def _restore_rng_states(states: dict[str, list[Tensor]], ctx: DistContext, seed: int, step: int) -> None:
    if len(states["cpu"]) != ctx.world_size:  # resumed with another number of ranks: fresh, distinct streams
        torch.manual_seed(derive_seed(seed, "resume", ctx.rank, step))
        return
    torch.set_rng_state(states["cpu"][ctx.rank])
    if torch.cuda.is_available() and states["cuda"][ctx.rank].numel():
        torch.cuda.set_rng_state(states["cuda"][ctx.rank])


# ============================================================================ 4. the generic loop
@dataclass
class StepStats:
    """What one step's ``step_fn`` reports (this rank's share)."""

    loss: float  # mean over paths
    correct: float  # fraction of correct predictions, mean over paths
    path_images: int  # images x paths processed


StepFn = Callable[[Tensor, Tensor], StepStats]


def _forever(loader: TensorLoader) -> Iterator[tuple[Tensor, Tensor]]:
    """Epoch after epoch from the loader's current position (its state_dict is the resume point)."""
    if len(loader) == 0:
        raise UserError(f"the training split has fewer images than one batch ({loader.batch_size})")
    while True:
        yield from loader


@dataclass
class TrainingSetup:
    """Everything the loop needs besides the model; built by ``train_supernet`` or a retraining stage."""

    loader: TensorLoader
    step_fn: StepFn  # forward + backward for one batch: accumulates gradients, no update
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    precision: Precision
    steps: int
    out_dir: Path
    seed: int = 0
    grad_clip: float = 0.0  # 0 disables
    checkpoint_every: int = 50
    eval_every: int = 0  # 0: validate only at the end (if ``evaluate`` is given)
    evaluate: Callable[[], dict[str, float]] | None = None  # rank 0 only: {"val_acc": %, optional "val_acc_best": %}
    stateful: dict[str, Stateful] = field(default_factory=dict)  # saved in checkpoints (sampler, audit)
    on_save: Callable[[], None] | None = None  # rank 0, after each checkpoint (e.g. fairness.json)
    meta: dict[str, Any] = field(default_factory=dict)  # stored in checkpoints (config text, fingerprint)
    dist: DistContext = field(default_factory=DistContext)
    progress: bool = True
    desc: str = "train"


def fit(model: nn.Module, run: TrainingSetup, checkpoint: dict[str, Any] | None = None) -> Curves:
    """Train ``model`` for ``run.steps`` optimizer updates; resume from ``checkpoint`` if given.

    Checkpoints (``last.pt``) hold model, optimizer, scheduler, scaler, loader position, every rank's RNG
    state, the ``stateful`` objects and the curves, so a resumed run is bitwise identical on CPU.
    """
    curves, start, elapsed0 = Curves(), 0, 0.0
    if checkpoint is not None:
        start, elapsed0 = _restore(model, run, checkpoint, curves)
    broadcast_state(model, run.dist)
    batches = _forever(run.loader)
    params = [p for p in model.parameters() if p.requires_grad]
    device = params[0].device
    bar = _progress_bar(run, start)
    t0, last_val = time.perf_counter(), ""
    model.train()
    for step in range(start, run.steps):
        t_step = time.perf_counter()
        x, y = next(batches)
        run.optimizer.zero_grad(set_to_none=True)
        stats = run.step_fn(x.to(device, non_blocking=True), y.to(device, non_blocking=True))  # gradients accumulate
        lr = _update(params, run)  # one all-reduce, clipping, one optimizer update
        done = step + 1
        dt = time.perf_counter() - t_step
        row = {
            "step": done,
            "loss": stats.loss,
            "train_acc": 100.0 * stats.correct,
            "lr": lr,
            "images_per_s": stats.path_images * run.dist.world_size / dt,
            "elapsed_s": elapsed0 + time.perf_counter() - t0,
        }
        if run.dist.is_main and run.evaluate is not None and (done == run.steps or (run.eval_every and done % run.eval_every == 0)):
            row.update(run.evaluate())
            best = f" (best path {row['val_acc_best']:.1f}%)" if "val_acc_best" in row else ""
            last_val = f", val {row['val_acc']:.1f}%{best}"
            model.train()
        curves.add(**row)
        if bar is not None:
            bar.set_postfix_str(f"loss {row['loss']:.3f} acc {row['train_acc']:.1f}% {row['images_per_s']:.0f} img/s{last_val}")
            bar.update()
        if done % run.checkpoint_every == 0 or done == run.steps:
            _save(model, run, curves, done, row["elapsed_s"])
            if bar is None and run.dist.is_main and run.progress:  # no TTY (a log file): a line per checkpoint
                print(f"{run.desc}: step {done}/{run.steps} loss {row['loss']:.3f}{last_val}", file=sys.stderr, flush=True)
    if bar is not None:
        bar.close()
    if run.dist.is_main and curves.rows:
        last = curves.rows[-1]
        ips = sum(r["images_per_s"] for r in curves.rows[start:]) / max(1, len(curves.rows) - start)
        amp = f" ({run.precision.name} autocast)" if run.precision.enabled else ""
        print(
            f"{run.desc}: {run.steps} steps in {last['elapsed_s']:.0f} s, loss {last['loss']:.3f}, "
            f"train acc {last['train_acc']:.1f}%{last_val}, {ips:.0f} path-images/s{amp}",
            file=sys.stderr,
            flush=True,
        )
    return curves


def _update(params: Sequence[nn.Parameter], run: TrainingSetup) -> float:
    """Average gradients over ranks, unscale (AMP), clip, one optimizer and scheduler step; returns the lr used."""
    allreduce_gradients(params, run.dist)
    run.precision.scaler.unscale_(run.optimizer)
    if run.grad_clip > 0:
        nn.utils.clip_grad_norm_(params, run.grad_clip)
    lr = float(run.optimizer.param_groups[0]["lr"])
    run.precision.scaler.step(run.optimizer)
    run.precision.scaler.update()
    run.scheduler.step()
    return lr


def _progress_bar(run: TrainingSetup, start: int) -> Any:
    if not (run.progress and run.dist.is_main and sys.stderr.isatty()):
        return None
    from tqdm.auto import tqdm

    return tqdm(total=run.steps, initial=start, desc=run.desc, unit="step", dynamic_ncols=True)


def _save(model: nn.Module, run: TrainingSetup, curves: Curves, step: int, elapsed: float) -> None:
    """Write ``last.pt`` (rank 0; every rank takes part in gathering the RNG states), curves, hooks."""
    rng = _gather_rng_states(run.dist)
    if not run.dist.is_main:
        return
    state = {
        "format": CHECKPOINT_FORMAT,
        "step": step,
        "elapsed_s": elapsed,
        "model": model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "scaler": run.precision.scaler.state_dict(),
        "loader": run.loader.state_dict(),
        "rng": rng,
        "stateful": {name: obj.state_dict() for name, obj in run.stateful.items()},
        "curves": curves.rows,
        **run.meta,
    }
    save_checkpoint(run.out_dir / "last.pt", state)
    curves.write(run.out_dir)
    if run.on_save is not None:
        run.on_save()


def _restore(model: nn.Module, run: TrainingSetup, ckpt: dict[str, Any], curves: Curves) -> tuple[int, float]:
    model.load_state_dict(ckpt["model"])  # the trainers checked it fits (check_resumable) before writing anything
    run.optimizer.load_state_dict(ckpt["optimizer"])
    run.scheduler.load_state_dict(ckpt["scheduler"])
    run.precision.scaler.load_state_dict(ckpt["scaler"])
    run.loader.load_state_dict(ckpt["loader"])
    for name, obj in run.stateful.items():
        obj.load_state_dict(ckpt["stateful"][name])
    step = int(ckpt["step"])
    _restore_rng_states(ckpt["rng"], run.dist, run.seed, step)
    curves.rows = [dict(r) for r in ckpt["curves"][:step]]
    return step, float(ckpt["elapsed_s"])


def standalone_step(model: nn.Module, criterion: nn.Module, precision: Precision) -> StepFn:
    """The ``step_fn`` of an ordinary network (retraining a picked architecture, baselines)."""

    def step(x: Tensor, y: Tensor) -> StepStats:
        with precision.autocast():
            logits = model(x)
            loss = criterion(logits, y)
        precision.backward(loss)
        loss_v, correct = torch.stack([loss.detach().float(), (logits.detach().argmax(1) == y).float().mean()]).tolist()
        return StepStats(loss_v, correct, len(x))

    return step


# ============================================================================ 5. the supernet
def fair_step(
    net: Supernet,
    x: Tensor,
    y: Tensor,
    paths: Sequence[Genes],
    criterion: nn.Module,
    precision: Precision,
    loss_scale: float = 1.0,
) -> StepStats:
    """Gradients of one FairNAS step on one batch: every path on the same images, accumulated in ``.grad``.

    The stem + separable block is the same function of the same batch for every path, so it runs once:
    the paths backpropagate into a detached copy of its output, and the summed feature gradient flows
    back through it once - the same gradients as m full passes, at 1/m of the shared part's cost.
    """
    with precision.autocast():
        features = net.shared_features(x)
    # float32 leaf: under autocast the m paths' feature gradients are summed in float32, not in half precision
    detached = features.detach().float().requires_grad_()
    losses, hits = [], []
    for genes in paths:  # path k takes choice perm_l[k] at layer l
        with precision.autocast():
            logits = net.forward_path(detached, genes)
            loss = criterion(logits, y)
        precision.backward(loss * loss_scale)  # choice blocks + head; ``detached.grad`` accumulates (scaled alike)
        losses.append(loss.detach().float())
        hits.append((logits.detach().argmax(1) == y).float().mean())
    features.backward(detached.grad.to(features.dtype))  # the shared part, once, with the sum over paths
    values = torch.stack([*losses, *hits]).tolist()  # one device-to-host copy per step, not 2m
    loss_sum, correct = sum(values[: len(paths)]), sum(values[len(paths) :])
    return StepStats(loss_sum / len(paths), correct / len(paths), len(paths) * len(x))


def supernet_step(
    net: Supernet,
    x: Tensor,
    y: Tensor,
    paths: Sequence[Genes],
    criterion: nn.Module,
    precision: Precision,
    shared_grad: str = "mean",
    micro_batches: int = 1,
) -> StepStats:
    """All gradients of one supernet step (before the single optimizer update).

    ``micro_batches=k`` splits the batch into k chunks (BN statistics per chunk, gradients averaged):
    what k DDP ranks compute, on one process - and a way to fit large batches in memory.
    """
    chunks = list(zip(x.tensor_split(micro_batches), y.tensor_split(micro_batches), strict=True))
    stats = [fair_step(net, xc, yc, paths, criterion, precision, 1.0 / len(chunks)) for xc, yc in chunks]
    if shared_grad == "mean" and len(paths) > 1:
        # Stem, separable block and head were trained by every path: average instead of summing, so
        # they see a single network's gradient scale. Choice blocks were each trained once: untouched.
        for p in net.shared_parameters():
            if p.grad is not None:
                p.grad.div_(len(paths))
    return StepStats(
        sum(s.loss for s in stats) / len(stats),
        sum(s.correct for s in stats) / len(stats),
        sum(s.path_images for s in stats),
    )


def training_fingerprint(space: SearchSpace, dataset: Dataset, cfg: SupernetConfig, seed: int) -> dict[str, Any]:
    """Everything the trained weights depend on: a finished run with the same one is not redone."""
    s = space
    digest = hashlib.sha256(repr(space_spec(space)).encode()).hexdigest()[:12]
    return {
        "space": {
            "name": s.name,
            "num_classes": s.num_classes,
            "resolution": s.resolution,
            "width_mult": s.width_mult,
            "variant": s.variant,
            "digest": digest,
        },
        "data": {"classes": list(dataset.classes), "train_images": len(dataset.train), "resolution": dataset.resolution},
        "seed": seed,
        "supernet": {k: v for k, v in cfg.model_dump(mode="json").items() if not k.startswith(NON_WEIGHT_PREFIXES)},
    }


def _plan_run(out_dir: Path, fingerprint: dict[str, Any], resume: bool) -> tuple[dict[str, Any] | None, bool]:
    """(checkpoint to resume from or None, already finished). Never silently overwrites a run."""
    last, final = out_dir / "last.pt", out_dir / "supernet.pt"
    if resume and last.exists():
        ckpt = load_checkpoint(last, expect=CHECKPOINT_FORMAT)
        if diff := differences(ckpt.get("fingerprint"), fingerprint):
            raise UserError(f"cannot resume {last}: it was trained with other settings ({'; '.join(diff[:3])}); use another run_dir")
        return ckpt, False
    if final.exists():
        done = load_checkpoint(final, expect=SUPERNET_FORMAT)
        if diff := differences(done.get("fingerprint"), fingerprint):
            raise UserError(
                f"{final} holds a supernet trained with other settings ({'; '.join(diff[:3])}): "
                f"use another run_dir, or delete {out_dir} to retrain"
            )
        return None, True
    if last.exists():
        step = load_checkpoint(last, expect=CHECKPOINT_FORMAT)["step"]
        raise UserError(f"{out_dir} holds an unfinished supernet run (step {step}): pass --resume to continue it, or use another run_dir")
    return None, False


def zero_init_residual(net: nn.Module) -> None:
    """Residual blocks start as the identity: the scale of their last BN is zero (Goyal et al., 2017).

    Every path then starts as a shallow network that learns fast, and the blocks grow in as they train.
    """
    for m in net.modules():
        if isinstance(m, InvertedResidual) and m.residual:
            nn.init.zeros_(m.project.bn.weight)


def validation_archs(space: SearchSpace, n: int, seed: int) -> list[Arch]:
    """The random paths validated during training: fixed for a run, so the curve is comparable over time."""
    rng = np.random.default_rng(derive_seed(seed, "validation paths"))
    return [Arch.random(space, rng) for _ in range(n)]


def validate_paths(net: Supernet, dataset: Dataset, archs: Sequence[Arch], cfg: SupernetConfig, seed: int) -> dict[str, float]:
    """Accuracy (%) of ``archs`` with BN recalibrated per path (``SubnetEvaluator``); mean and best."""
    from supernet.evaluate import SubnetEvaluator

    acc = SubnetEvaluator.from_config(net, dataset, cfg, seed=seed).evaluate(list(archs))
    return {"val_acc": float(np.mean(acc)), "val_acc_best": float(np.max(acc))}


def train_supernet(
    space: SearchSpace,
    dataset: Dataset,
    cfg: SupernetConfig,
    out_dir: str | Path,
    *,
    seed: int = 0,
    device: str | torch.device = "cpu",
    resume: bool = False,
    config_text: str | None = None,
    dist: DistContext | None = None,
    progress: bool = True,
) -> Supernet:
    """Train a weight-sharing supernet (``cfg.sampler``: ``fair`` or ``uniform``) into ``out_dir``.

    ``out_dir`` receives ``last.pt`` (every ``checkpoint_every`` steps and at the end), ``supernet.pt``
    (final weights + space + config), ``fairness.json``, ``curves.csv``/``curves.png`` and
    ``config.yaml`` (``config_text``, the resolved experiment config). An existing finished run with the
    same settings is returned as is; other existing runs need ``resume`` or another directory.
    """
    ctx, device, out_dir = dist or DistContext(), torch.device(device), Path(out_dir)
    prepare_device(device)
    _check_inputs(space, dataset, cfg, ctx)
    fingerprint = training_fingerprint(space, dataset, cfg, seed)
    checkpoint, finished = _plan_run(out_dir, fingerprint, resume)
    if finished:
        if ctx.is_main:
            print(f"supernet: {out_dir / 'supernet.pt'} is already trained with these settings; nothing to do", file=sys.stderr)
        return load_supernet(out_dir / "supernet.pt", device)

    net = _initial_supernet(space, cfg, seed, device)  # identical on every rank
    torch.manual_seed(derive_seed(seed, "dropout", ctx.rank))  # distinct dropout masks per rank
    sampler: PathSampler = make_sampler(cfg.sampler, space.n_choices, derive_seed(seed, "sampler"))  # same paths on all ranks
    audit = FairnessAudit(space.n_choices, strict=cfg.sampler == "fair")
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    precision = Precision(device, cfg.amp)

    def step_fn(x: Tensor, y: Tensor) -> StepStats:
        paths = sampler.sample()  # the same permutations on every rank (same sampler seed)
        audit.record(paths)  # raises if a fair step is not strictly fair
        return supernet_step(net, x, y, paths, criterion, precision, cfg.shared_grad, cfg.micro_batches)

    def write_fairness() -> None:
        names = [[c.token for c in layer.choices] for layer in space.layers]
        write_json(out_dir / "fairness.json", audit.report(names, cfg.sampler))

    val_archs = validation_archs(space, cfg.eval_paths, seed)
    optimizer = build_optimizer(net, cfg)
    run = TrainingSetup(
        loader=dataset.loader(
            "train",
            cfg.batch_size,
            seed=seed,
            rank=ctx.rank,
            world_size=ctx.world_size,
            channels_last=cfg.channels_last,
            augment=cfg.augment,
            device=device,  # CUDA: the cached images move to the GPU once and are augmented there
        ),
        step_fn=step_fn,
        optimizer=optimizer,
        scheduler=build_scheduler(optimizer, cfg.steps, cfg.warmup_steps),
        precision=precision,
        steps=cfg.steps,
        out_dir=out_dir,
        seed=seed,
        grad_clip=cfg.grad_clip,
        checkpoint_every=cfg.checkpoint_every,
        eval_every=cfg.eval_every,
        evaluate=(lambda: validate_paths(net, dataset, val_archs, cfg, seed)) if val_archs else None,
        stateful={"sampler": sampler, "audit": audit},
        on_save=write_fairness,
        meta={"space": space_spec(space), "fingerprint": fingerprint, "config": config_text or ""},
        dist=ctx,
        progress=progress,
        desc=f"supernet ({cfg.sampler})",
    )
    if checkpoint is not None:
        check_resumable(net, checkpoint, out_dir / "last.pt")  # before anything in out_dir is rewritten
    if ctx.is_main and config_text is not None:
        atomic_write_text(out_dir / "config.yaml", config_text)
    fit(net, run, checkpoint)
    if ctx.is_main:
        save_supernet(out_dir / "supernet.pt", net, fingerprint, config_text)
    return net.eval()


def _check_inputs(space: SearchSpace, dataset: Dataset, cfg: SupernetConfig, ctx: DistContext) -> None:
    if len(dataset.classes) != space.num_classes:
        raise UserError(
            f"the dataset has {len(dataset.classes)} classes but the space is built for {space.num_classes} (space.num_classes)"
        )
    if cfg.eval_paths and cfg.bn_calib_images > len(dataset.train):
        raise UserError(f"supernet.bn_calib_images={cfg.bn_calib_images} exceeds the {len(dataset.train)} training images")
    if cfg.batch_size % (ctx.world_size * cfg.micro_batches):
        raise UserError(
            f"supernet.batch_size={cfg.batch_size} must be divisible by ranks x micro_batches = {ctx.world_size * cfg.micro_batches}"
        )


def _initial_supernet(space: SearchSpace, cfg: SupernetConfig, seed: int, device: torch.device) -> Supernet:
    torch.manual_seed(seed)
    net = Supernet(space)
    if cfg.choice_init == "aligned":
        align_choices(net)
    if cfg.zero_init_residual:
        zero_init_residual(net)
    net = net.to(device)
    return net.to(memory_format=torch.channels_last) if cfg.channels_last else net


def save_supernet(path: str | Path, net: Supernet, fingerprint: dict[str, Any], config_text: str | None = None) -> None:
    """Final weights (no optimizer state) with the space and config they belong to."""
    state = {
        "format": SUPERNET_FORMAT,
        "model": net.state_dict(),
        "space_name": net.space.name,
        "space": space_spec(net.space),
        "fingerprint": fingerprint,
        "config": config_text or "",
    }
    save_checkpoint(path, state)


_SCALAR_SPACE_KEYS = ("name", "num_classes", "resolution", "width_mult", "variant", "dropout")


def load_supernet(
    path: str | Path, device: str | torch.device = "cpu", data_seed: int | None = None, space: SearchSpace | None = None
) -> Supernet:
    """A supernet from ``supernet.pt`` (or a ``last.pt`` training checkpoint), in eval mode.

    ``data_seed``: the seed the caller splits the data with. The held-out ``search_val`` split depends on it,
    so a supernet trained with another seed has seen those images: refused.
    ``space``: the space the caller searches; a supernet trained for another one (name, resolution, width,
    variant, classes, layers) is refused, naming what differs.
    """
    state = load_checkpoint(path, map_location=device)
    if state.get("format") not in (SUPERNET_FORMAT, CHECKPOINT_FORMAT) or "space" not in state:
        raise UserError(f"{path}: not a supernet checkpoint")
    trained_seed = (state.get("fingerprint") or {}).get("seed")
    if data_seed is not None and trained_seed is not None and trained_seed != data_seed:
        raise UserError(
            f"{path} was trained with seed {trained_seed}, so with seed {data_seed} its training images would be "
            f"scored as held-out ones: keep seed={trained_seed} (vary the search with search.seed)"
        )
    if space is not None and state["space"] != space_spec(space):
        trained, wanted = state["space"], space_spec(space)
        keys = [k for k in wanted if trained.get(k) != wanted[k]]
        scalars = [f"{k} {trained.get(k)!r} (experiment: {wanted[k]!r})" for k in keys if k in _SCALAR_SPACE_KEYS]
        what = ", ".join(scalars) or "its " + ", ".join(keys)  # a space YAML file changed: name the parts
        raise UserError(f"{path} was trained for another space than the experiment's: {what}")
    net = Supernet(space_from_spec(state["space"]))
    misfit = state_dict_misfit(net.state_dict(), state["model"])
    if misfit:
        raise UserError(
            f"{path}: weights do not fit the space it names ({misfit}); a supernet saved before moga cropped "
            "kernels to the feature map (small resolutions) has to be trained again"
        )
    net.load_state_dict(state["model"])
    return net.to(device).eval()
