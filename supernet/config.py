"""Typed configs of the model world: space, data, supernet training (with its evaluation), standalone (re)training.

Defaults are defined only here (the space's come from ``supernet.space``'s default tasks); ``moga.config``
composes these sections into an experiment config. Supernet training and retraining share ``OptimConfig``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from supernet.space import EMBEDDED_CIFAR10, VARIANTS


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)  # inf / nan: a typo, never a setting


def _amp_alias(value: Any) -> Any:
    return True if value == "auto" else value  # "auto" is the default's name; stored as true (same fingerprint)


# supernet.amp / retrain.amp; resolved per device by ``supernet.optim.autocast_dtype``
Amp = Annotated[bool | Literal["bf16", "fp16"], BeforeValidator(_amp_alias)]


class SpaceConfig(Section):
    name: str = "moga"  # a registered space (moga, fairnas) or a path to a space YAML file
    # an experiment's defaults are the embedded CIFAR-10 subset's (``supernet.space.EMBEDDED_CIFAR10``)
    resolution: int = Field(default=EMBEDDED_CIFAR10.resolution, ge=8, le=4096)
    num_classes: int = Field(default=EMBEDDED_CIFAR10.num_classes, ge=1)
    width_mult: float = Field(default=EMBEDDED_CIFAR10.width_mult, gt=0, le=8)  # a typo guard: 8x width is ~64x the parameters
    variant: Literal[VARIANTS] = EMBEDDED_CIFAR10.variant  # type: ignore[valid-type]  # cifar: stem + first stride-2 layer at stride 1


class DataConfig(Section):
    kind: Literal["embedded", "imagefolder", "cifar10"] = "embedded"
    path: str | None = None  # imagefolder / cifar10 directory
    search_val_per_class: int = Field(default=100, ge=1)  # held out of train for search-time validation
    workers: int = Field(default=0, ge=0)  # streaming loaders only; cached data needs none


# constraints of the settings whose default differs between supernet training and retraining
WarmupSteps = Annotated[int, Field(ge=0)]
CheckpointEvery = Annotated[int, Field(ge=1)]


class OptimConfig(Section):
    """The optimisation settings supernet training and retraining share (``supernet.optim``, ``train_loader``).

    Each section sets the defaults of ``warmup_steps`` and ``checkpoint_every``; all the others are common.
    """

    batch_size: int = Field(default=128, ge=1)  # global batch (split across DDP ranks)
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = Field(default=0.1, gt=0)
    momentum: float = Field(default=0.9, ge=0, lt=1)  # SGD momentum / AdamW beta1
    nesterov: bool = True  # SGD only
    weight_decay: float = Field(default=4e-5, ge=0)  # not applied to BN and biases
    warmup_steps: WarmupSteps
    label_smoothing: float = Field(default=0.1, ge=0, lt=1)
    augment: Literal["standard", "flip", "none"] = "standard"  # standard: crop + flip; flip: no crops (short runs)
    channels_last: bool = True
    amp: Amp = True  # mixed precision: true/auto = bf16 (else fp16 + grad scaler) on CUDA, off on CPU; false; bf16; fp16
    checkpoint_every: CheckpointEvery


class EvalConfig(Section):
    """How ``SubnetEvaluator`` scores a supernet path (the search's accuracy estimate, training-time validation)."""

    calib_images: int = Field(default=1000, ge=0)  # BN recalibration per candidate; 0 keeps running stats
    calib_batch_size: int = Field(default=100, ge=1)  # recalibration batch (train-mode BN uses its statistics)
    images: int = Field(default=0, ge=0)  # 0 = the whole search-time validation split
    batch_size: int = Field(default=500, ge=1)  # evaluation chunk: speed only
    channels_last: bool = True  # input layout (changes float rounding); default: supernet.channels_last
    # what a path's estimate is: its top-1 accuracy (%) on the validation images, or minus its mean cross-entropy
    # there (the same logits, a less quantised statistic; the search then maximises ``neg_loss``, not ``accuracy``)
    score: Literal["accuracy", "neg_loss"] = "accuracy"
    # 0: each network is scored by its own path. N > 0: a per-layer additive model (one-hot choices, ridge) is
    # fitted to the scores of N seeded random paths, and its prediction is the estimate of every network
    # (smoothing the per-path noise; a network costs no evaluation). supernet.estimate documents it.
    additive_paths: int = Field(default=0, ge=0)


class SupernetConfig(OptimConfig):
    sampler: Literal["fair", "uniform"] = "fair"
    steps: int = Field(default=400, ge=1)  # optimizer updates
    warmup_steps: WarmupSteps = 20
    shared_grad: Literal["mean", "sum"] = "mean"  # fair step: average the m-fold accumulated grads of shared parts
    grad_clip: float = Field(default=5.0, ge=0)  # 0 disables
    # in-place distillation (fair sampler only): each path's loss is (1 - d) x cross-entropy + d x KL to the soft
    # labels of the largest path (the most multiply-adds per layer), run without gradients on the same batch, so
    # strict fairness holds (each choice still trained exactly once per step); 0 disables
    distill: float = Field(default=0.0, ge=0, le=1)
    zero_init_residual: bool = True  # residual choice blocks start as identity (last BN scale 0): BENCHMARKS.md
    choice_init: Literal["independent", "aligned"] = "aligned"  # a layer's choices start as one function (BENCHMARKS.md)
    micro_batches: int = Field(default=1, ge=1)  # per-rank batch split in chunks (per-chunk BN stats), grads averaged
    checkpoint_every: CheckpointEvery = 50
    eval_every: int = Field(default=100, ge=0)  # 0 disables periodic random-path validation (the final one still runs)
    eval_paths: int = Field(default=4, ge=0)  # random paths validated during training; 0 disables validation
    eval: EvalConfig = Field(default_factory=EvalConfig)

    @model_validator(mode="before")
    @classmethod
    def _eval_layout(cls, data: Any) -> Any:
        """``eval.channels_last`` unset: the training layout's (as before evaluation had its own section)."""
        if not isinstance(data, dict):
            return data
        ev = data.get("eval", {})
        layout = data.get("channels_last", cls.model_fields["channels_last"].default)
        if isinstance(ev, dict) and "channels_last" not in ev:
            return {**data, "eval": {**ev, "channels_last": layout}}
        if isinstance(ev, EvalConfig) and "channels_last" not in ev.model_fields_set:
            return {**data, "eval": ev.model_copy(update={"channels_last": layout})}
        return data


class RetrainConfig(OptimConfig):
    epochs: int = Field(default=10, ge=1)
    warmup_steps: WarmupSteps = 50
    ema: float = Field(default=0.0, ge=0, lt=1)  # 0 disables weight EMA
    init_from_supernet: bool = False
    checkpoint_every: CheckpointEvery = 200
    # 0 = epochs x batches per epoch; > 0 caps the optimizer updates (and the cosine schedule ends there):
    # for smoke tests and timing a recipe without running it to the end
    max_steps: int = Field(default=0, ge=0)
