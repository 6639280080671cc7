"""One source per default: the library, the CLI and the config read the same constants, and their values are pinned.

A default typed again somewhere (a function signature, a CLI flag, a config field) fails here as soon as the two
copies drift apart; the pinned values make a change of a constant itself a visible decision.
"""

import inspect
from types import SimpleNamespace
from unittest.mock import patch

import numpy as np
import pytest
import torch

from lut.measure import BLOCK_PROTOCOL
from lut.validate import VALIDATE_PROTOCOL
from moga.cli import build_parser
from moga.config import RENAMED, ExperimentConfig, TableConfig, _known_keys, load_config
from supernet import Arch, UserError, build_model, get_space
from supernet.config import EvalConfig, OptimConfig, RetrainConfig, SpaceConfig, SupernetConfig
from supernet.optim import build_optimizer
from supernet.space import EMBEDDED_CIFAR10, IMAGENET, SpaceSettings
from supernet.train import NON_WEIGHT_KEYS, training_fingerprint


def _subparser(*path: str):
    parser = build_parser()
    for name in path:
        action = next(a for a in parser._actions if a.choices and name in a.choices)
        parser = action.choices[name]
    return parser


def _option(parser, flag: str):
    return next(a for a in parser._actions if flag in a.option_strings)


def test_the_two_default_tasks_are_pinned():
    assert SpaceSettings(224, 1000, 1.0, "imagenet") == IMAGENET
    assert SpaceSettings(32, 10, 1.0, "cifar") == EMBEDDED_CIFAR10


@pytest.mark.parametrize("fn", [get_space.__wrapped__, build_model])
def test_library_space_defaults_are_imagenet(fn):
    params = inspect.signature(fn).parameters
    assert {k: params[k].default for k in IMAGENET.kwargs()} == IMAGENET.kwargs()


def test_experiment_space_defaults_are_the_embedded_cifar10_subset():
    assert SpaceConfig().model_dump(exclude={"name"}) == EMBEDDED_CIFAR10.kwargs()
    assert ExperimentConfig().data.kind == "embedded"


def test_cli_space_defaults_are_imagenet():
    args = build_parser().parse_args(["arch", "show", "moga_a"])
    from moga.cli.arch import resolve

    space = resolve(args).space
    assert {k: getattr(space, k) for k in IMAGENET.kwargs()} == IMAGENET.kwargs()
    show = _subparser("arch", "show")
    assert f"default {IMAGENET.resolution}" in _option(show, "--resolution").help
    assert f"default {IMAGENET.num_classes}" in _option(show, "--num-classes").help
    imp = _subparser("lut", "import")
    assert (_option(imp, "--width-mult").default, _option(imp, "--variant").default) == (IMAGENET.width_mult, IMAGENET.variant)


def test_measurement_protocols_are_defined_once_and_pinned():
    assert (BLOCK_PROTOCOL.warmup, BLOCK_PROTOCOL.runs, BLOCK_PROTOCOL.rounds) == (10, 30, 3)
    assert (VALIDATE_PROTOCOL.warmup, VALIDATE_PROTOCOL.runs, VALIDATE_PROTOCOL.rounds) == (10, 10, 3)
    table = TableConfig()
    assert (table.warmup, table.runs, table.rounds) == (BLOCK_PROTOCOL.warmup, BLOCK_PROTOCOL.runs, BLOCK_PROTOCOL.rounds)
    validate = _subparser("lut", "validate")
    for flag in ("warmup", "runs", "rounds"):
        option, value = _option(validate, f"--{flag}"), getattr(VALIDATE_PROTOCOL, flag)
        assert option.default == value and f"(default {value})" in option.help


def test_supernet_and_retrain_share_the_optimiser_section():
    shared = set(OptimConfig.model_fields)
    assert shared <= set(SupernetConfig.model_fields) and shared <= set(RetrainConfig.model_fields)
    sn, rt = SupernetConfig(), RetrainConfig()
    differ = {k for k in shared if getattr(sn, k) != getattr(rt, k)}
    assert differ == {"warmup_steps", "checkpoint_every"}
    assert (sn.warmup_steps, sn.checkpoint_every, rt.warmup_steps, rt.checkpoint_every) == (20, 50, 50, 200)
    assert rt.nesterov is True  # as the optimizer builder's former fallback
    with pytest.raises(ValueError):
        RetrainConfig(warmup_steps=-1)  # the subclasses keep the base's constraints
    with pytest.raises(ValueError):
        SupernetConfig(checkpoint_every=0)


@pytest.mark.parametrize(
    ("settings", "nesterov"),
    [({}, True), ({"nesterov": False}, False), ({"momentum": 0.0}, False)],
)
def test_retrain_nesterov_is_a_real_setting(settings, nesterov):
    opt = build_optimizer(torch.nn.Linear(2, 2), RetrainConfig(**settings))
    assert opt.defaults["nesterov"] is nesterov


def test_evaluation_layout_follows_training_unless_set():
    assert SupernetConfig().eval.channels_last is True
    assert SupernetConfig(channels_last=False).eval.channels_last is False
    assert SupernetConfig(channels_last=False, eval=EvalConfig(images=3)).eval.channels_last is False
    assert SupernetConfig(channels_last=False, eval={"channels_last": True}).eval.channels_last is True
    cfg = load_config(None, ["supernet.channels_last=false", "supernet.eval.images=7"])
    assert (cfg.supernet.eval.channels_last, cfg.supernet.eval.images) == (False, 7)


@pytest.mark.parametrize(("old", "new"), sorted(RENAMED.items()))
def test_a_renamed_key_names_its_new_name(old, new, tmp_path):
    assert new in _known_keys(ExperimentConfig)
    section, key = old.split(".")
    path = tmp_path / "old.yaml"
    path.write_text(f"{section}:\n  {key}: 500\n")
    for source in ((path, []), (None, [f"{old}=500"])):
        with pytest.raises(UserError) as err:
            load_config(*source)
        assert str(err.value).endswith(f"config key {old!r} was renamed: use {new}")


def test_the_trained_weights_fingerprint_has_the_keys_it_always_had(monkeypatch):
    """Evaluation settings stay out of it, so an existing supernet.pt is still resumed and reused."""
    import supernet.train as train

    monkeypatch.setattr(train, "data_fingerprint", lambda _dataset: {"kind": "embedded"})  # no dataset needed here
    space = get_space("moga", **EMBEDDED_CIFAR10.kwargs())
    base = training_fingerprint(space, None, SupernetConfig(), 0)
    other_eval = training_fingerprint(space, None, SupernetConfig(eval={"calib_images": 5, "images": 9}, eval_paths=1), 0)
    assert base == other_eval and base != training_fingerprint(space, None, SupernetConfig(lr=0.05), 0)
    assert set(base["supernet"]) == {
        "sampler", "steps", "batch_size", "optimizer", "lr", "momentum", "nesterov", "weight_decay", "warmup_steps",
        "label_smoothing", "shared_grad", "grad_clip", "augment", "zero_init_residual", "choice_init", "micro_batches",
        "channels_last", "amp",
    }  # fmt: skip
    # every other field is in it; one added later only where it differs from its default (earlier runs keep theirs)
    assert set(base["supernet"]) == set(SupernetConfig.model_fields) - set(NON_WEIGHT_KEYS) - set(train.FINGERPRINT_DEFAULTS)
    assert training_fingerprint(space, None, SupernetConfig(distill=0.5), 0)["supernet"]["distill"] == 0.5


def test_a_model_trained_before_retrain_nesterov_existed_keeps_its_fingerprint():
    from supernet.standalone import NON_WEIGHT_FIELDS, standalone_fingerprint

    arch = Arch.random(get_space("moga", num_classes=10, resolution=32, variant="cifar"), np.random.default_rng(0))
    data = SimpleNamespace(train=None)
    before = {k: v for k, v in RetrainConfig().model_dump(mode="json").items() if k not in (*NON_WEIGHT_FIELDS, "nesterov")}
    with patch("supernet.standalone.data_fingerprint", return_value="data"):
        assert standalone_fingerprint(arch, data, RetrainConfig(), 0, "scratch")["retrain"] == before
        assert standalone_fingerprint(arch, data, RetrainConfig(nesterov=False), 0, "scratch")["retrain"] == before | {"nesterov": False}
