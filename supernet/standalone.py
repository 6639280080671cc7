"""Training one standalone network with the retraining recipe, and scoring it on the test split.

``train_standalone(arch, dataset, cfg, out_dir)`` trains ``MobileNet(arch)`` with ``train.fit`` - the same
loop, checkpoints, exact resume and distributed mechanism as the supernet (no DDP wrapper: every rank takes
its shard of each global batch, one flat gradient all-reduce per step, BN statistics per rank) - then
measures top-1 accuracy on the ``test`` split and returns a JSON-able result dict.

Recipe (``RetrainConfig``): ``epochs`` over the ``train`` split (``max_steps`` caps the updates), SGD or
AdamW, linear warm-up then cosine decay to zero, label smoothing, mixed precision on CUDA, channels-last.
``ema > 0`` keeps an exponential moving average of the weights and buffers, updated after every optimizer
step; the test accuracy (and the saved ``model.pt``) is then the EMA network's, with the raw weights' accuracy
reported next to it. ``init_from_supernet`` starts from ``Supernet.extract(arch)`` instead of a fresh init.

``out_dir`` receives ``last.pt`` (every ``checkpoint_every`` steps and at the end), ``curves.csv``/``.png``
and ``model.pt`` (final weights, architecture, space, result). A finished run with the same settings is not
redone; an unfinished one needs ``resume``; a run made with other settings is refused, never overwritten.
"""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path
from typing import Any

import torch
import torch.distributed as tdist
from torch import Tensor, nn

from supernet.arch import Arch
from supernet.checkpoint import (
    check_classes,
    check_resumable,
    data_fingerprint,
    load_checkpoint,
    load_fitting,
    plan_run,
    save_checkpoint,
    space_digest,
)
from supernet.config import RetrainConfig
from supernet.data import Dataset
from supernet.distributed import DistContext, prepare_device
from supernet.errors import UserError
from supernet.model import MobileNet
from supernet.optim import Precision, Update, build_optimizer, build_scheduler
from supernet.space import space_from_spec, space_spec
from supernet.step import StepStats
from supernet.supernet import Supernet
from supernet.train import StepFn, TrainingSetup, derive_seed, fit, train_loader

STANDALONE_FORMAT = "moga-standalone-v1"
# Retraining settings that do not change the trained weights: a run may be resumed with other values.
NON_WEIGHT_FIELDS = ("checkpoint_every",)
# settings added later, left out of the fingerprint at their defaults (the fixed behaviour before): a model trained
# before one was added is still recognised as the same run
LATER_DEFAULTS = {"nesterov": True}


# ----------------------------------------------------------------------------- weight EMA
class WeightEMA:
    """Exponential moving average of a model's state (weights and BN buffers), updated after each step.

    The decay warms up as ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates (TensorFlow's
    ``ExponentialMovingAverage(num_updates=...)``): with a fixed 0.9999 a short run's average would still be
    mostly the random initialisation. Integer buffers (``num_batches_tracked``) are copied, not averaged.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay, self.updates = decay, 0
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for key, value in model.state_dict().items():
            avg = self.shadow[key]
            if avg.is_floating_point():
                avg.lerp_(value.detach(), 1.0 - decay)  # avg = decay * avg + (1 - decay) * value
            else:
                avg.copy_(value)

    def averaged(self, model: nn.Module) -> nn.Module:
        """A copy of ``model`` carrying the averaged state (``model`` itself is left alone)."""
        out = copy.deepcopy(model)
        out.load_state_dict(self.shadow)
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "updates": self.updates, "shadow": self.shadow}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.updates = int(state["updates"])
        with torch.no_grad():
            for key, value in state["shadow"].items():
                self.shadow[key].copy_(value)


# ----------------------------------------------------------------------------- run bookkeeping
def state_digest(state: dict[str, torch.Tensor]) -> str:
    """Short hash of a state dict's values: pins down a starting point taken from a supernet."""
    h = hashlib.sha256()
    for key in sorted(state):
        h.update(key.encode())
        h.update(state[key].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _later_default(key: str, value: Any) -> bool:
    return key in LATER_DEFAULTS and LATER_DEFAULTS[key] == value


def standalone_fingerprint(arch: Arch, dataset: Dataset, cfg: RetrainConfig, seed: int, init: str) -> dict[str, Any]:
    """Everything the trained weights depend on: a finished run with the same one is not redone."""
    space = arch.space
    return {
        "arch": str(arch),
        "space": {"name": space.name, "digest": space_digest(space)},
        "data": data_fingerprint(dataset),
        "seed": seed,
        "retrain": {k: v for k, v in cfg.model_dump(mode="json").items() if k not in NON_WEIGHT_FIELDS and not _later_default(k, v)},
        "init": init,
    }


def total_steps(cfg: RetrainConfig, steps_per_epoch: int) -> int:
    steps = cfg.epochs * steps_per_epoch
    return min(steps, cfg.max_steps) if cfg.max_steps else steps


def _check_inputs(arch: Arch, dataset: Dataset, cfg: RetrainConfig, ctx: DistContext, supernet: Supernet | None) -> None:
    check_classes(dataset, arch.space)
    if cfg.batch_size % ctx.world_size:
        raise UserError(f"retrain.batch_size={cfg.batch_size} must be divisible by the number of ranks ({ctx.world_size})")
    if cfg.init_from_supernet and supernet is None:
        raise UserError("retrain.init_from_supernet is set but no trained supernet was given")
    if supernet is not None and not cfg.init_from_supernet:
        raise ValueError("a supernet was given but retrain.init_from_supernet is off")
    if supernet is not None and space_spec(supernet.space) != space_spec(arch.space):
        s = supernet.space
        raise UserError(
            f"the supernet was trained for space {s.name!r} at resolution {s.resolution}, width {s.width_mult}, "
            f"variant {s.variant}, {s.num_classes} classes: it does not fit the experiment's space"
        )


def _initial_model(arch: Arch, cfg: RetrainConfig, seed: int, device: torch.device, supernet: Supernet | None) -> MobileNet:
    """A fresh network (seeded init, identical on every rank), or the supernet's weights for ``arch``."""
    torch.manual_seed(seed)
    model = (supernet.extract(arch) if supernet is not None else MobileNet(arch)).to(device)
    return model.to(memory_format=torch.channels_last) if cfg.channels_last else model


# ----------------------------------------------------------------------------- evaluation
@torch.inference_mode()
def top1_on_test(
    model: nn.Module,
    dataset: Dataset,
    batch_size: int,
    ctx: DistContext | None = None,
    channels_last: bool = False,
    precision: Precision | None = None,
) -> float:
    """Top-1 accuracy (%) on the ``test`` split; under torchrun each rank scores its shard, counts are summed."""
    ctx = ctx or DistContext()
    device = next(model.parameters()).device
    precision = precision or Precision(device)
    loader = dataset.loader(
        "test", batch_size, train=False, rank=ctx.rank, world_size=ctx.world_size, channels_last=channels_last, device=device
    )
    counts = torch.zeros(2, dtype=torch.float64)
    model.eval()
    for x, y in loader:
        with precision.autocast():
            logits = model(x.to(device, non_blocking=True))
        counts += torch.tensor([int((logits.argmax(1) == y.to(logits.device)).sum()), len(y)], dtype=torch.float64)
    if ctx.active:
        counts = counts.to(device)
        tdist.all_reduce(counts)
    return float(100.0 * counts[0] / counts[1])


# ----------------------------------------------------------------------------- training
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


def train_standalone(
    arch: Arch,
    dataset: Dataset,
    cfg: RetrainConfig,
    out_dir: str | Path,
    *,
    seed: int = 0,
    device: str | torch.device = "cpu",
    resume: bool = False,
    supernet: Supernet | None = None,
    config_text: str | None = None,
    dist: DistContext | None = None,
    progress: bool = True,
    desc: str = "retrain",
) -> dict[str, Any]:
    """Train ``arch`` from scratch (or from ``supernet``'s weights if ``cfg.init_from_supernet``) into ``out_dir``.

    Returns the result: ``test_acc`` (EMA weights if ``cfg.ema``), ``test_acc_raw`` (with EMA), steps,
    epochs, ``train_wall_s`` (summed over resumes) and the final training loss/accuracy. A finished run with
    the same settings returns its stored result without training.
    """
    ctx, device, out_dir = dist or DistContext(), torch.device(device), Path(out_dir)
    prepare_device(device)
    _check_inputs(arch, dataset, cfg, ctx, supernet)
    model = _initial_model(arch, cfg, seed, device, supernet)
    init = f"supernet:{state_digest(model.state_dict())}" if supernet is not None else "random"
    fingerprint = standalone_fingerprint(arch, dataset, cfg, seed, init)
    announce = desc if ctx.is_main else None
    checkpoint, finished = plan_run(out_dir, "model.pt", STANDALONE_FORMAT, "network", fingerprint, resume, announce=announce)
    if finished is not None:
        return finished["result"]

    torch.manual_seed(derive_seed(seed, "dropout", ctx.rank))  # distinct dropout masks per rank
    precision = Precision(device, cfg.amp)
    loader = train_loader(dataset, cfg, seed, ctx, device)
    steps = total_steps(cfg, len(loader))
    optimizer = build_optimizer(model, cfg)
    ema = WeightEMA(model, cfg.ema) if cfg.ema else None
    if ema is not None:
        # After every real update: with AMP, GradScaler skips optimizer.step() on overflow, and so the EMA.
        optimizer.register_step_post_hook(lambda *_: ema.update(model))
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    run = TrainingSetup(
        loader=loader,
        step_fn=standalone_step(model, criterion, precision),
        update=Update(optimizer, build_scheduler(optimizer, steps, cfg.warmup_steps), precision),
        steps=steps,
        out_dir=out_dir,
        seed=seed,
        checkpoint_every=cfg.checkpoint_every,
        stateful={"ema": ema} if ema is not None else {},
        meta={"arch": str(arch), "space": space_spec(arch.space), "fingerprint": fingerprint, "config": config_text or ""},
        dist=ctx,
        progress=progress,
        desc=desc,
    )
    if checkpoint is not None:
        check_resumable(model, checkpoint, out_dir / "last.pt")
    curves = fit(model, run, checkpoint)

    final = ema.averaged(model) if ema is not None else model
    result: dict[str, Any] = {
        "arch": str(arch),
        "test_acc": top1_on_test(final, dataset, cfg.batch_size, ctx, cfg.channels_last, precision),
    }
    if ema is not None:
        result["test_acc_raw"] = top1_on_test(model, dataset, cfg.batch_size, ctx, cfg.channels_last, precision)
    last = curves.rows[-1]
    result |= {
        "ema": cfg.ema,
        "init": "supernet" if supernet is not None else "random",
        "steps": steps,
        "steps_per_epoch": len(loader),
        "epochs": round(steps / len(loader), 4),
        "train_images": len(dataset.train),
        "test_images": len(dataset.test),
        "train_wall_s": round(float(last["elapsed_s"]), 1),
        "final_loss": round(float(last["loss"]), 5),
        "final_train_acc": round(float(last["train_acc"]), 3),
    }
    if ctx.is_main:
        save_standalone(out_dir / "model.pt", final, model if ema is not None else None, arch, fingerprint, result, config_text)
    return result


def save_standalone(
    path: str | Path,
    model: nn.Module,
    raw: nn.Module | None,
    arch: Arch,
    fingerprint: dict[str, Any],
    result: dict[str, Any],
    config_text: str | None = None,
) -> None:
    """Final weights (``model``: the evaluated ones; ``raw``: the un-averaged ones when EMA was on)."""
    state = {
        "format": STANDALONE_FORMAT,
        "arch": str(arch),
        "space": space_spec(arch.space),
        "model": model.state_dict(),
        "raw_model": raw.state_dict() if raw is not None else {},
        "fingerprint": fingerprint,
        "result": result,
        "config": config_text or "",
    }
    save_checkpoint(path, state)


def load_standalone(path: str | Path, device: str | torch.device = "cpu", raw: bool = False) -> MobileNet:
    """The trained network of ``model.pt`` in eval mode (contiguous memory format, ready for export).

    ``raw=True`` gives the un-averaged weights of an EMA run (the averaged ones otherwise).
    """
    state = load_checkpoint(path, map_location=device, expect=STANDALONE_FORMAT)
    space = space_from_spec(state["space"])
    model = MobileNet(Arch.parse(space, state["arch"]))
    weights = state["raw_model"] if raw and state["raw_model"] else state["model"]
    load_fitting(model, weights, path, "architecture")
    return model.to(device).eval()
