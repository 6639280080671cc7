"""Bad-input catalogue, through the command line: each case gets exit code 2, one line naming the problem,
no traceback, and leaves every file of the run it was pointed at byte-for-byte as it was.

Every case runs on its own copy of one finished tiny run (``moga run``: latency table, supernet, search).
Library-level checks of most of these errors live beside their modules (test_config, test_lut, test_data,
test_train, test_search, test_space_arch); this file is about what a user of ``moga`` sees.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from lut.build import build_table
from lut.measure import FakeBackend
from moga.cli import main
from moga.retrain import arch_id
from supernet import ZOO, get_space
from tests.tiny_experiment import file_hashes, make_image_folder, write_experiment


@pytest.fixture
def finished(finished_tiny: tuple[Path, Path]) -> tuple[Path, Path]:
    return finished_tiny


@dataclass
class Ctx:
    """What a case may use: its experiment and run copy, the shared root (space file, images), a scratch dir."""

    exp: str
    run: Path
    root: Path
    tmp: Path
    watch: Path  # the directory whose files must stay untouched (the run copy unless a case says otherwise)

    def variant(self, **sections: object) -> str:
        """The experiment YAML with some sections changed (a typo, a wrong type)."""
        return str(write_experiment(self.root, self.run, self.tmp / "variant.yaml", **sections))

    def pick0(self) -> Path:
        import pandas as pd

        return self.run / "retrain" / arch_id(pd.read_csv(self.run / "search" / "pareto.csv").loc[0, "arch"])


@pytest.fixture
def ctx(finished: tuple[Path, Path], tmp_path: Path) -> Ctx:
    root, run = finished
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    exp = write_experiment(root, copy, tmp_path / "exp.yaml")
    return Ctx(str(exp), copy, root, tmp_path, copy)


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def edit_json(path: Path, edit: Callable[[dict], None]) -> None:
    obj = json.loads(path.read_text())
    edit(obj)
    path.write_text(json.dumps(obj, indent=1))


def foreign_table(c: Ctx, **header: object) -> str:
    """A table of the registered moga space (so `lut validate` can rebuild its space), measured elsewhere."""
    path = c.tmp / "tables" / "phone.json"
    build_table(get_space("moga", num_classes=10, resolution=32, variant="cifar"), FakeBackend(), path, device="phone", progress=False)
    edit_json(path, lambda t: t["header"].update(header))
    c.watch = path.parent
    return str(path)


def bad_images(c: Ctx, damage: Callable[[Path], None]) -> str:
    root = make_image_folder(c.tmp / "images", train=4, val=2)
    damage(root)
    return f"data.path={root}"


def no_bee_in_val(root: Path) -> None:
    (root / "val" / "bee").rename(root / "val" / "bat")


def empty_folder(c: Ctx) -> str:
    (c.tmp / "empty").mkdir()
    return f"data.path={c.tmp / 'empty'}"


def interrupted_retrain(c: Ctx, name: str) -> Ctx:
    """An interrupted (``last.pt``) or finished-without-result (``model.pt``) retrain whose file is truncated."""
    out = c.pick0()
    out.mkdir(parents=True)
    out.joinpath(name).write_bytes((c.run / "supernet" / "last.pt").read_bytes()[:5000])
    return c


def moga_space_table(c: Ctx) -> Ctx:
    """The run's table replaced by one measured for the MoGA space."""
    space = get_space("moga", num_classes=4, resolution=32, variant="cifar")
    build_table(space, FakeBackend(), c.run / "lut" / "cpu.json", device="x", progress=False)
    return c


def drop_entries(c: Ctx) -> Ctx:
    edit_json(c.run / "lut" / "cpu.json", lambda t: [t["entries"].pop(k) for k in list(t["entries"])[3:5]])
    return c


def widened_kernel(c: Ctx, part: str) -> Ctx:
    """A checkpoint whose first depthwise kernel is two taps wider than the space builds (as an old moga's)."""
    path = c.run / part
    state = torch.load(path, weights_only=True)
    name = next(k for k in state["model"] if k.endswith("depthwise.conv.weight"))
    state["model"][name] = torch.nn.functional.pad(state["model"][name], (1, 1, 1, 1))
    torch.save(state, path)
    return c


def interrupted_retrain_of_another_shape(c: Ctx) -> Ctx:
    """A retrain interrupted after one step (``last.pt`` only) whose first depthwise kernel is two taps wider."""
    assert main(["retrain", c.exp, "--pick", "0", "retrain.max_steps=1", "retrain.checkpoint_every=1", "--no-progress"]) == 0
    out = c.pick0()
    (out / "model.pt").unlink()
    path = out / "last.pt"
    state = torch.load(path, weights_only=True)
    name = next(k for k in state["model"] if k.endswith("depthwise.conv.weight"))
    state["model"][name] = torch.nn.functional.pad(state["model"][name], (1, 1, 1, 1))
    torch.save(state, path)
    return c


def truncated(c: Ctx, part: str) -> Ctx:
    truncate(c.run / part)
    return c


CASES: dict[str, tuple[Callable[[Ctx], list[str]], str]] = {
    # ------------------------------------------------------------------ configs
    "unknown key": (
        lambda c: ["run", c.exp, "supernet.lrr=0.1", "--no-progress"],
        "unknown config key 'supernet.lrr' (did you mean 'supernet.lr'?)",
    ),
    "unknown key in the file": (
        lambda c: ["search", c.variant(search={"populaton": 8}), "--no-progress"],
        "unknown config key 'search.populaton' (did you mean 'search.population'?)",
    ),
    # the override after an option: `moga search` parses it (it used to be "unrecognized arguments")
    "wrong type": (lambda c: ["search", c.exp, "--no-progress", "search.population=many"], "config key 'search.population'"),
    "wrong type in the file": (
        lambda c: ["supernet", "train", c.variant(supernet={"steps": [1, 2]}), "--resume", "--no-progress"],
        "config key 'supernet.steps'",
    ),
    "missing config": (lambda c: ["run", str(c.tmp / "nowhere.yaml"), "--no-progress"], "config file not found"),
    "config is a directory": (lambda c: ["search", str(c.tmp), "--no-progress"], "cannot read config file"),
    "absurd width": (lambda c: ["run", c.exp, "space.width_mult=1e300", "--no-progress"], "config key 'space.width_mult'"),
    "missing data path": (
        lambda c: ["supernet", "train", c.exp, f"data.path={c.tmp / 'nowhere'}", "--no-progress"],
        "dataset directory does not exist",
    ),
    # ------------------------------------------------------------------ architectures
    "invalid architecture": (
        lambda c: ["supernet", "eval", c.exp, "--arch", "k3e2-k9e9-skip"],
        "invalid token 'k9e9' at position 2 of 'k3e2-k9e9-skip'",
    ),
    "too few tokens": (lambda c: ["retrain", c.exp, "--arch", "k3e2-k3e2", "--no-progress"], "has 2 tokens; space 'tiny' needs 3"),
    "architecture of another space": (
        lambda c: ["retrain", c.exp, "--arch", ZOO["moga_a"][1], "--no-progress"],
        "has 14 tokens; space 'tiny' needs 3",
    ),
    "zoo model of another space": (lambda c: ["supernet", "eval", c.exp, "--zoo", "fairnas_a"], "belongs to space 'fairnas', not 'tiny'"),
    # ------------------------------------------------------------------ latency tables
    "table for another space": (
        lambda c: ["search", moga_space_table(c).exp, "--no-progress"],
        "measured for space moga, the experiment uses tiny",
    ),
    "table for another resolution": (
        lambda c: ["search", c.exp, "lut.resolution=64", "--no-progress"],
        "measured for resolution 32, the experiment uses 64",
    ),
    # refused before training, not after (the retrain directory stays empty)
    "table for another resolution, retrain": (
        lambda c: ["retrain", c.exp, "--pick", "0", "space.resolution=40", "--no-progress"],
        "measured for resolution 32, the experiment uses 40",
    ),
    "table for another runtime": (
        lambda c: ["search", c.exp, "lut.tables.cpu.backend=onnxruntime-cpu", "--no-progress"],
        "measured with other settings than lut.tables.cpu asks for: runtime fake (wants onnxruntime)",
    ),
    "table of a runtime this machine lacks": (
        lambda c: ["lut", "validate", foreign_table(c, runtime="tflite", provider="gpu"), "--nets", "5", "--no-progress"],
        "measured with tflite / gpu on 'phone', which this machine cannot run",
    ),
    "table of another onnxruntime version": (
        lambda c: [
            "lut",
            "validate",
            foreign_table(c, runtime="onnxruntime", runtime_version="0.0.1", provider="CPUExecutionProvider"),
            "--nets",
            "5",
        ],
        "table was measured with onnxruntime 0.0.1, this machine has",
    ),
    "table with missing entries": (
        lambda c: ["search", drop_entries(c).exp, "--no-progress"],
        "lacks 2 entries of space 'tiny' at resolution 32",
    ),
    # ------------------------------------------------------------------ checkpoints
    "truncated supernet": (
        lambda c: ["search", truncated(c, "supernet/supernet.pt").exp, "--no-progress"],
        "supernet.pt: corrupt or truncated checkpoint",
    ),
    "supernet trained with another seed": (
        lambda c: ["search", c.exp, "seed=7", "--no-progress"],
        "was trained with seed 0, so with seed 7 its training images would be scored as held-out ones",
    ),
    "supernet of another width": (
        lambda c: ["supernet", "eval", c.exp, "--arch", "k3e2-k3e2-k3e2", "space.width_mult=2"],
        "was trained for another space than the experiment's: width_mult 1.0 (experiment: 2.0)",
    ),
    "supernet weights of another shape": (
        lambda c: ["supernet", "eval", widened_kernel(c, "supernet/supernet.pt").exp, "--arch", "k3e2-k3e2-k3e2"],
        "depthwise.conv.weight is (",
    ),
    "training checkpoint of another shape": (
        lambda c: ["supernet", "train", widened_kernel(c, "supernet/last.pt").exp, "--resume", "--no-progress"],
        "last.pt: weights do not fit the model being trained",
    ),
    "retrain checkpoint of another shape": (
        lambda c: [
            "retrain",
            interrupted_retrain_of_another_shape(c).exp,
            "--pick",
            "0",
            "retrain.max_steps=1",
            "retrain.checkpoint_every=1",
            "--resume",
            "--no-progress",
        ],
        "last.pt: weights do not fit the model being trained",
    ),
    "truncated supernet checkpoint": (
        lambda c: ["supernet", "train", truncated(c, "supernet/last.pt").exp, "--resume", "--no-progress"],
        "last.pt: corrupt or truncated checkpoint",
    ),
    "truncated retrain checkpoint": (
        lambda c: ["retrain", interrupted_retrain(c, "last.pt").exp, "--pick", "0", "--resume", "--no-progress"],
        "last.pt: corrupt or truncated checkpoint",
    ),
    "truncated retrained model": (
        lambda c: ["retrain", interrupted_retrain(c, "model.pt").exp, "--pick", "0", "--no-progress"],
        "model.pt: corrupt or truncated checkpoint",
    ),
    # ------------------------------------------------------------------ data
    "truncated image": (
        lambda c: ["supernet", "train", c.exp, bad_images(c, lambda r: truncate(r / "train" / "bee" / "03.jpg")), "--no-progress"],
        "cannot read image",
    ),
    "empty dataset directory": (lambda c: ["supernet", "train", c.exp, empty_folder(c), "--no-progress"], "dataset directory is empty"),
    "class folders differ": (
        lambda c: ["supernet", "train", c.exp, bad_images(c, no_bee_in_val), "--no-progress"],
        "train/ and val/ class folders differ: only in train: ['bee'], only in val: ['bat']",
    ),
    # ------------------------------------------------------------------ objectives and constraints
    "negative weight": (
        lambda c: ["search", c.exp, "search.objectives=[{name: accuracy, weight: -1}, {name: latency}]", "--no-progress"],
        "config key 'search.objectives.0.weight': Input should be greater than or equal to 0",
    ),
    "weights all zero": (
        lambda c: ["search", c.exp, "search.objectives=[{name: accuracy, weight: 0}, {name: latency, weight: 0}]", "--no-progress"],
        "objective weights are all zero",
    ),
    "unsatisfiable latency": (
        lambda c: ["search", c.exp, "search.constraints=['latency <= 0.0001']", "--no-progress"],
        "constraint 'latency <= 0.0001' cannot be met: latency:cpu ranges over",
    ),
    "unsatisfiable accuracy": (
        lambda c: ["search", c.exp, "search.constraints=['accuracy >= 101']", "--no-progress"],
        "constraint 'accuracy >= 101' cannot be met",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_and_touches_nothing(case, ctx, capsys):
    make_argv, needle = CASES[case]
    argv = make_argv(ctx)
    capsys.readouterr()
    before = file_hashes(ctx.watch)
    code = main(argv)
    out = capsys.readouterr()
    err = out.err.strip()
    assert code == 2, (code, out.out[-500:], err)
    assert err.startswith("moga: error: ") and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert needle in err, err
    assert file_hashes(ctx.watch) == before, f"{case}: files changed"


def test_run_refuses_an_unsatisfiable_search_before_training(finished, tmp_path, capsys):
    root, _ = finished
    run = tmp_path / "fresh"
    exp = write_experiment(root, run, tmp_path / "exp.yaml", search={"constraints": ["params <= 10"]})
    assert main(["run", str(exp), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "constraint 'params <= 10' cannot be met" in err and len(err.splitlines()) == 1
    assert (run / "lut" / "cpu.json").exists() and not (run / "supernet").exists()  # no supernet trained for nothing


@pytest.mark.slow
def test_search_seed_varies_the_search_on_the_same_supernet(ctx, capsys):
    """``search.seed`` reruns the search on the trained supernet (the data split keeps the experiment's seed)."""
    shutil.rmtree(ctx.run / "search")
    assert main(["search", ctx.exp, "search.seed=11", "--no-progress"]) == 0
    history = (ctx.run / "search" / "history.csv").read_text()
    shutil.rmtree(ctx.run / "search")
    assert main(["search", ctx.exp, "--no-progress"]) == 0
    assert (ctx.run / "search" / "history.csv").read_text() != history
