"""Supernet training with FairNAS strict fairness, and the training loop standalone networks reuse.

Read top to bottom, one supernet step from the top: ``train_supernet`` builds a ``TrainingSetup`` and calls
``fit`` (the generic loop: batches, one ``step_fn`` per step that accumulates gradients, one all-reduce,
one ``Update``, curves, progress, checkpoints, exact resume); the supernet's ``step_fn`` samples the paths
and calls ``supernet_step`` (``supernet.step``), which runs ``fair_step`` (the FairNAS step) per micro-batch. Below them: the
run's fingerprint, the initial supernet, ``save_supernet``/``load_supernet``. Optimisation lives in
``supernet.optim``, distributed helpers in ``supernet.distributed``, checkpoints, curves and the run planner
(shared with ``supernet.standalone``) in ``supernet.checkpoint``.

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
* ``distill: d`` (fair sampler only): per micro-batch the largest path (``teacher_genes``) runs once more, without
  gradients, on the detached features; each path's loss is (1 - d) x cross-entropy + d x KL(teacher || path). Every
  choice is still trained exactly once per step; the teacher's train-mode forward also updates its blocks' (and the
  head's) BN running statistics, which estimates recalibrate anyway. Curves report the cross-entropy part only.
"""

from __future__ import annotations

import hashlib
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor, nn

from supernet.arch import Arch
from supernet.blocks import InvertedResidual
from supernet.checkpoint import (
    CHECKPOINT_FORMAT,
    Curves,
    check_classes,
    check_resumable,
    data_fingerprint,
    load_checkpoint,
    load_fitting,
    plan_run,
    save_checkpoint,
    space_digest,
)
from supernet.config import EvalConfig, OptimConfig, SupernetConfig
from supernet.data import Dataset, TensorLoader
from supernet.distributed import DistContext, allreduce_gradients, broadcast_state, gather_rng_states, prepare_device
from supernet.errors import UserError
from supernet.io import atomic_write_text, write_json
from supernet.optim import Precision, Update, build_optimizer, build_scheduler
from supernet.sampler import FairnessAudit, PathSampler, make_sampler
from supernet.space import SearchSpace, space_from_spec, space_spec
from supernet.step import StepStats, supernet_step, teacher_genes
from supernet.supernet import Supernet, align_choices

SUPERNET_FORMAT = "moga-supernet-v1"
# Supernet settings that do not change the trained weights (validation, its evaluation section, checkpoint
# frequency): a run may be resumed, or a finished run reused, with other values.
NON_WEIGHT_KEYS = ("eval", "eval_every", "eval_paths", "checkpoint_every")
# Settings added later, left out of the fingerprint at these values: earlier finished runs keep being recognised.
FINGERPRINT_DEFAULTS: dict[str, Any] = {"distill": 0.0}


def derive_seed(seed: int, *key: object) -> int:
    """An independent, stable seed per purpose (sampler, dropout of rank r, validation paths, ...)."""
    digest = hashlib.blake2b(repr((seed, *key)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


# ============================================================================ the loop's records
StepFn = Callable[[Tensor, Tensor], StepStats]


class Stateful(Protocol):
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass
class TrainingSetup:
    """Everything the loop needs besides the model; built by ``train_supernet`` or a retraining stage."""

    loader: TensorLoader
    step_fn: StepFn  # forward + backward for one batch: accumulates gradients, no update
    update: Update  # after the all-reduce: unscale, clip, optimizer and scheduler step
    steps: int
    out_dir: Path
    seed: int = 0
    checkpoint_every: int = 50
    eval_every: int = 0  # 0: validate only at the end (if ``evaluate`` is given)
    evaluate: Callable[[], dict[str, float]] | None = None  # rank 0 only: {"val_acc": %, optional "val_acc_best": %}
    stateful: dict[str, Stateful] = field(default_factory=dict)  # saved in checkpoints (sampler, audit)
    on_save: Callable[[], None] | None = None  # rank 0, after each checkpoint (e.g. fairness.json)
    meta: dict[str, Any] = field(default_factory=dict)  # stored in checkpoints (config text, fingerprint)
    dist: DistContext = field(default_factory=DistContext)
    progress: bool = True
    desc: str = "train"


# ============================================================================ 1. the supernet trainer
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
    announce = "supernet" if ctx.is_main else None
    checkpoint, finished = plan_run(
        out_dir, "supernet.pt", SUPERNET_FORMAT, "supernet", fingerprint, resume, announce=announce, resume_finished=True
    )
    if finished is not None:
        return load_supernet(out_dir / "supernet.pt", device)

    net = _initial_supernet(space, cfg, seed, device)  # identical on every rank
    torch.manual_seed(derive_seed(seed, "dropout", ctx.rank))  # distinct dropout masks per rank
    sampler: PathSampler = make_sampler(cfg.sampler, space.n_choices, derive_seed(seed, "sampler"))  # same paths on all ranks
    audit = FairnessAudit(space.n_choices, strict=cfg.sampler == "fair")
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    precision = Precision(device, cfg.amp)
    teacher = teacher_genes(space) if cfg.distill else None  # once per run

    def step_fn(x: Tensor, y: Tensor) -> StepStats:
        paths = sampler.sample()  # the same permutations on every rank (same sampler seed)
        audit.record(paths)  # raises if a fair step is not strictly fair
        return supernet_step(net, x, y, paths, criterion, precision, cfg.shared_grad, cfg.micro_batches, cfg.distill, teacher)

    def write_fairness() -> None:
        names = [[c.token for c in layer.choices] for layer in space.layers]
        write_json(out_dir / "fairness.json", audit.report(names, cfg.sampler))

    val_archs = validation_archs(space, cfg.eval_paths, seed)
    optimizer = build_optimizer(net, cfg)
    run = TrainingSetup(
        loader=train_loader(dataset, cfg, seed, ctx, device),
        step_fn=step_fn,
        update=Update(optimizer, build_scheduler(optimizer, cfg.steps, cfg.warmup_steps), precision, cfg.grad_clip),
        steps=cfg.steps,
        out_dir=out_dir,
        seed=seed,
        checkpoint_every=cfg.checkpoint_every,
        eval_every=cfg.eval_every,
        evaluate=(lambda: validate_paths(net, dataset, val_archs, cfg.eval, seed)) if val_archs else None,
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


# ============================================================================ 2. the loop
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
        run.update.optimizer.zero_grad(set_to_none=True)
        stats = run.step_fn(x.to(device, non_blocking=True), y.to(device, non_blocking=True))  # gradients accumulate
        allreduce_gradients(params, run.dist)  # one all-reduce
        lr = run.update.apply(params)  # clipping, one optimizer update
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
        _print_summary(run, curves, start, last_val)
    return curves


# ============================================================================ 3. below the trainer: inputs, fingerprint, start, validation
def _check_inputs(space: SearchSpace, dataset: Dataset, cfg: SupernetConfig, ctx: DistContext) -> None:
    check_classes(dataset, space)
    if cfg.distill and cfg.sampler != "fair":
        raise UserError(f"supernet.distill: in-place distillation is defined for the fair sampler only, not sampler: {cfg.sampler}")
    if cfg.eval_paths and cfg.eval.calib_images > len(dataset.train):
        raise UserError(f"supernet.eval.calib_images={cfg.eval.calib_images} exceeds the {len(dataset.train)} training images")
    if cfg.batch_size % (ctx.world_size * cfg.micro_batches):
        raise UserError(
            f"supernet.batch_size={cfg.batch_size} must be divisible by ranks x micro_batches = {ctx.world_size * cfg.micro_batches}"
        )


def train_loader(dataset: Dataset, cfg: OptimConfig, seed: int, ctx: DistContext, device: torch.device) -> TensorLoader:
    """This rank's shard of each global training batch; on CUDA the cached images move to the GPU once and
    are augmented there."""
    return dataset.loader(
        "train",
        cfg.batch_size,
        seed=seed,
        rank=ctx.rank,
        world_size=ctx.world_size,
        channels_last=cfg.channels_last,
        augment=cfg.augment,
        device=device,
    )


def training_fingerprint(space: SearchSpace, dataset: Dataset, cfg: SupernetConfig, seed: int) -> dict[str, Any]:
    """Everything the trained weights depend on: a finished run with the same one is not redone."""
    s = space
    dump = cfg.model_dump(mode="json")
    left_out = {*NON_WEIGHT_KEYS, *(k for k, v in FINGERPRINT_DEFAULTS.items() if dump[k] == v)}
    supernet = {k: v for k, v in dump.items() if k not in left_out}
    return {
        "space": {
            "name": s.name,
            "num_classes": s.num_classes,
            "resolution": s.resolution,
            "width_mult": s.width_mult,
            "variant": s.variant,
            "digest": space_digest(space),
        },
        "data": data_fingerprint(dataset),
        "seed": seed,
        "supernet": supernet,
    }


def _initial_supernet(space: SearchSpace, cfg: SupernetConfig, seed: int, device: torch.device) -> Supernet:
    torch.manual_seed(seed)
    net = Supernet(space)
    if cfg.choice_init == "aligned":
        align_choices(net)
    if cfg.zero_init_residual:
        zero_init_residual(net)
    net = net.to(device)
    return net.to(memory_format=torch.channels_last) if cfg.channels_last else net


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


def validate_paths(net: Supernet, dataset: Dataset, archs: Sequence[Arch], cfg: EvalConfig, seed: int) -> dict[str, float]:
    """Accuracy (%) of ``archs`` with BN recalibrated per path (``SubnetEvaluator``); mean and best."""
    from supernet.evaluate import SubnetEvaluator

    acc = SubnetEvaluator.from_config(net, dataset, cfg, seed=seed).evaluate(list(archs))
    return {"val_acc": float(np.mean(acc)), "val_acc_best": float(np.max(acc))}


# ============================================================================ 4. the loop's machinery: batches, progress, checkpoints, resume
def _forever(loader: TensorLoader) -> Iterator[tuple[Tensor, Tensor]]:
    """Epoch after epoch from the loader's current position (its state_dict is the resume point)."""
    if len(loader) == 0:
        raise UserError(f"the training split has fewer images than one batch ({loader.batch_size})")
    while True:
        yield from loader


def _progress_bar(run: TrainingSetup, start: int) -> Any:
    if not (run.progress and run.dist.is_main and sys.stderr.isatty()):
        return None
    from tqdm.auto import tqdm

    return tqdm(total=run.steps, initial=start, desc=run.desc, unit="step", dynamic_ncols=True)


def _print_summary(run: TrainingSetup, curves: Curves, start: int, last_val: str) -> None:
    """The run's last line: steps, time, final loss and accuracy, throughput of this session's steps."""
    last = curves.rows[-1]
    ips = sum(r["images_per_s"] for r in curves.rows[start:]) / max(1, len(curves.rows) - start)
    amp = f" ({run.update.precision.name} autocast)" if run.update.precision.enabled else ""
    print(
        f"{run.desc}: {run.steps} steps in {last['elapsed_s']:.0f} s, loss {last['loss']:.3f}, "
        f"train acc {last['train_acc']:.1f}%{last_val}, {ips:.0f} path-images/s{amp}",
        file=sys.stderr,
        flush=True,
    )


def _save(model: nn.Module, run: TrainingSetup, curves: Curves, step: int, elapsed: float) -> None:
    """Write ``last.pt`` (rank 0; every rank takes part in gathering the RNG states), curves, hooks."""
    rng = gather_rng_states(run.dist)
    if not run.dist.is_main:
        return
    state = {
        "format": CHECKPOINT_FORMAT,
        "step": step,
        "elapsed_s": elapsed,
        "model": model.state_dict(),
        **run.update.state_dict(),
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
    run.update.load_state_dict(ckpt)
    run.loader.load_state_dict(ckpt["loader"])
    for name, obj in run.stateful.items():
        obj.load_state_dict(ckpt["stateful"][name])
    step = int(ckpt["step"])
    _restore_rng_states(ckpt["rng"], run.dist, run.seed, step)
    curves.rows = [dict(r) for r in ckpt["curves"][:step]]
    return step, float(ckpt["elapsed_s"])


def _restore_rng_states(states: dict[str, list[Tensor]], ctx: DistContext, seed: int, step: int) -> None:
    if len(states["cpu"]) != ctx.world_size:  # resumed with another number of ranks: fresh, distinct streams
        torch.manual_seed(derive_seed(seed, "resume", ctx.rank, step))
        return
    torch.set_rng_state(states["cpu"][ctx.rank])
    if torch.cuda.is_available() and states["cuda"][ctx.rank].numel():
        torch.cuda.set_rng_state(states["cuda"][ctx.rank])


# ============================================================================ 5. the trained supernet on disk
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
    load_fitting(net, state["model"], path, "space")
    return net.to(device).eval()
