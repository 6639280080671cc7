"""Bad-input catalogue, round 2 (issue 18), through the command line, in-process.

One case per way a user's input or a run directory can be wrong, grouped by the mechanism that handles it:

1. code in data: restricted unpickling (CIFAR-10 batches), ``weights_only`` checkpoints, safe YAML;
2. stage outputs verified, not trusted (``moga.stagelog``): a damaged output is redone, byte-identical;
3. the CLI's error boundary: an OSError on a path is one line (path, operation, reason), nothing half-written;
4. devices checked before any work, never blamed on a good file; a refused pickle said to hold code;
5. validated reads of pareto.csv, state.json, summary.csv, result.json, history.csv;
6. inputs accepted before but wrong: plain run names, duplicate keys, bounded weights, CLI ranges, no empty
   run directory left by a command that did nothing;
7. messages that name the right thing (the override, the zoo name, the file kind, the option).

Every refusal: exit code 2, exactly one line on stderr naming the offending thing, no traceback, and every
file of the watched directory (the run copy unless the case says otherwise) byte-identical, no new file or
directory. Every case runs on its own copy of one finished tiny run built once per session (``conftest``).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import pickle
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from moga.cli import main
from tests.tiny_experiment import CLASSES, file_hashes, write_experiment


@dataclass
class Ctx:
    exp: str
    run: Path
    root: Path
    tmp: Path
    watch: Path
    marker: Path = field(init=False)  # a file that code smuggled into data would create

    def __post_init__(self) -> None:
        self.marker = self.tmp / "code-ran"

    def variant(self, text: str | None = None, **sections: object) -> str:
        """The experiment with some sections changed, or replaced by ``text``."""
        path = write_experiment(self.root, self.run, self.tmp / "variant.yaml", **sections)
        if text is not None:
            path.write_text(text)
        return str(path)

    def fresh(self) -> Path:
        """A run directory that does not exist yet; the watch moves to its parent (nothing may appear there)."""
        self.watch = self.tmp / "runs"
        self.watch.mkdir(exist_ok=True)
        return self.watch / "fresh"


@pytest.fixture
def ctx(finished_tiny: tuple[Path, Path], tmp_path: Path) -> Ctx:
    root, run = finished_tiny
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    exp = write_experiment(root, copy, tmp_path / "exp.yaml")
    return Ctx(str(exp), copy, root, tmp_path, copy)


def snapshot(path: Path) -> tuple[dict[str, str], set[str]]:
    return file_hashes(path), {str(d.relative_to(path)) for d in path.rglob("*") if d.is_dir()}


# ----------------------------------------------------------------------------- making bad inputs
class Evil:
    """Unpickling this runs a shell command (``touch <marker>``)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def cifar_dir(c: Ctx, batch: Callable[[Ctx], object] | None = None) -> str:
    """A cifar-10-batches-py directory with 4-class batches; ``batch`` replaces data_batch_1's content (the
    object to pickle, or the file's bytes)."""
    folder = c.tmp / "cifar" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        good = {b"data": rng.integers(0, 256, (8, 3072), dtype=np.uint8), b"labels": [i % 4 for i in range(8)]}
        content = batch(c) if batch is not None and name == "data_batch_1" else good
        (folder / name).write_bytes(content if isinstance(content, bytes) else pickle.dumps(content, protocol=2))
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": [n.encode() for n in CLASSES]}, protocol=2))
    return str(folder.parent)


def cifar_train(c: Ctx, batch: Callable[[Ctx], object]) -> list[str]:
    c.watch = c.tmp / "cifar"
    return ["supernet", "train", c.exp, "data.kind=cifar10", f"data.path={cifar_dir(c, batch)}", "--no-progress"]


def pt_with_code(c: Ctx, part: str) -> Ctx:
    state = torch.load(c.run / part, weights_only=True)
    state["fingerprint"] = Evil(c.marker)
    torch.save(state, c.run / part)
    return c


def edit_csv(path: Path, edit: Callable[[pd.DataFrame], pd.DataFrame]) -> None:
    path.write_text(edit(pd.read_csv(path)).to_csv(index=False))


def set_cell(path: Path, row: int, column: str, value: object) -> None:
    def edit(df: pd.DataFrame) -> pd.DataFrame:
        df[column] = df[column].astype(object)
        df.loc[row, column] = value
        return df

    edit_csv(path, edit)


def front(c: Ctx, edit: Callable[[Path], None]) -> str:
    edit(c.run / "search" / "pareto.csv")
    return str(c.run)


def append_line(path: Path, line: str) -> None:
    path.write_text(path.read_text() + line + "\n")


def edit_state(c: Ctx, edit: Callable[[dict], None]) -> Ctx:
    path = c.run / "search" / "state.json"
    state = json.loads(path.read_text())
    edit(state)
    path.write_text(json.dumps(state))
    return c


def summary(c: Ctx, text: str) -> Ctx:
    (c.run / "retrain").mkdir()
    (c.run / "retrain" / "summary.csv").write_text(text)
    return c


def lut_csv(c: Ctx) -> str:
    """The run's block timings as the CSV ``moga lut import`` reads."""
    table = json.loads((c.run / "lut" / "cpu.json").read_text())
    path = c.tmp / "timings.csv"
    path.write_text("key,median_ms\n" + "".join(f"{k},{v['median_ms']}\n" for k, v in table["entries"].items()))
    return str(path)


def lut_import(c: Ctx, out: str, timings: str | None = None) -> list[str]:
    c.watch = c.tmp
    space = ["--space", str(c.root / "tiny_space.yaml"), "--resolution", "32", "--num-classes", "4", "--variant", "cifar"]
    timings = timings or lut_csv(c)
    return ["lut", "import", timings, "--out", out, "--device", "phone", "--runtime", "tflite", "--provider", "gpu", *space]


def then(prepare: Callable[[Ctx], object], argv: Callable[[Ctx], list[str]]) -> Callable[[Ctx], list[str]]:
    """``argv`` after ``prepare`` damaged the run copy."""

    def make(c: Ctx) -> list[str]:
        prepare(c)
        return argv(c)

    return make


def replace_by_dir(path: Path) -> None:
    path.unlink()
    path.mkdir()


def a_file(c: Ctx) -> Path:
    path = c.tmp / "a-file"
    path.write_text("not a directory\n")
    return path


def a_dir(c: Ctx, name: str) -> Path:
    path = c.tmp / name
    path.mkdir()
    return path


def a_fifo(c: Ctx) -> Path:
    """A named pipe where an output file is to go (as /dev/null would be: never replaced by a file)."""
    path = c.tmp / "fifo.png"
    os.mkfifo(path)
    return path


def a_link(c: Ctx, target: Path) -> Path:
    path = c.tmp / "link.onnx"
    path.symlink_to(target)
    return path


def no_space_left(monkeypatch: pytest.MonkeyPatch) -> None:
    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)


def read_only(monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    def refuse(*args: object, dir: str = "", **kwargs: object) -> None:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), dir)

    monkeypatch.setattr(tempfile, "mkstemp", refuse)


def cuda_missing() -> bool:
    return not torch.cuda.is_available()


# ----------------------------------------------------------------------------- the catalogue
@dataclass(frozen=True)
class Case:
    argv: Callable[[Ctx], list[str]]
    needles: tuple[str, ...]  # each must be in the error line
    forbidden: tuple[str, ...] = ()  # none may be (advice that would destroy work, the unsafe route)
    patch: Callable[[pytest.MonkeyPatch], None] | None = None  # a fault of the machine, in-process
    only_if: Callable[[], bool] | None = None


def case(argv: Callable[[Ctx], list[str]], *needles: str, **kw: object) -> Case:
    return Case(argv, needles, **kw)  # type: ignore[arg-type]


CORRUPT = ("corrupt", "delete it", "weights_only")

CASES: dict[str, Case] = {
    # ------------------------------------------------------------ 1. code in data
    "cifar batch that runs code": case(
        lambda c: cifar_train(c, lambda c: {b"data": Evil(c.marker)}), "data_batch_1", "refused", "posix.system"
    ),
    "cifar batch of python objects": case(
        lambda c: cifar_train(c, lambda c: {b"data": np.array([1, "x"], dtype=object), b"labels": [0]}),
        "data_batch_1",
        "array of Python objects",
    ),
    "cifar batch that is no dict": case(lambda c: cifar_train(c, lambda c: [1, 2, 3]), "data_batch_1", "expected a dict"),
    "cifar batch truncated": case(
        lambda c: cifar_train(c, lambda c: pickle.dumps({b"data": np.zeros(3072, np.uint8)}, protocol=2)[:60]), "data_batch_1", "truncated"
    ),
    "cifar batch of garbage": case(lambda c: cifar_train(c, lambda c: b"GIF89a not a pickle"), "data_batch_1", "corrupt"),
    "supernet.pt that runs code": case(
        lambda c: ["search", pt_with_code(c, "supernet/supernet.pt").exp, "--no-progress"],
        "supernet.pt",
        "refused to load: it holds code",
        forbidden=CORRUPT,
    ),
    "last.pt that runs code": case(
        lambda c: ["supernet", "train", pt_with_code(c, "supernet/last.pt").exp, "--resume", "--no-progress"],
        "last.pt",
        "holds code",
        forbidden=CORRUPT,
    ),
    "supernet.pt of garbage": case(
        then(lambda c: (c.run / "supernet/supernet.pt").write_bytes(b"not a checkpoint"), lambda c: ["search", c.exp, "--no-progress"]),
        "supernet.pt",
        "corrupt or truncated",
        forbidden=("weights_only", "holds code"),
    ),
    "config with a python tag": case(
        lambda c: ["run", c.variant("name: !!python/object/apply:os.system ['touch x']\n"), "--no-progress"],
        "variant.yaml",
        "not valid YAML",
    ),
    "space file with a python tag": case(
        lambda c: ["arch", "sample", "--space", str(Path(c.variant("name: !!python/name:os.system\n")))], "variant.yaml", "not valid YAML"
    ),
    # ------------------------------------------------------------ 3. OS errors: one line, nothing half-written
    "report where report.html is a directory": case(
        then(lambda c: replace_by_dir(c.run / "report.html"), lambda c: ["report", str(c.run)]),
        "report.html",
        "cannot write",
        "directory",
    ),
    "report on a full disk": case(lambda c: ["report", str(c.run)], "report.html", "cannot write", "No space left", patch=no_space_left),
    "report on a read-only disk": case(lambda c: ["report", str(c.run)], "report.html", "cannot write", "Read-only", patch=read_only),
    "front plot under a regular file": case(
        lambda c: ["front", str(c.run), "--plot", str(a_file(c) / "front.png")],
        "a-file/front.png",
        "cannot write",
        "a-file is a file, not a directory",
    ),
    "front plot into a directory": case(lambda c: ["front", str(c.run), "--plot", str(a_dir(c, "plot.png"))], "plot.png", "cannot write"),
    "front plot under /proc": case(
        lambda c: ["front", str(c.run), "--plot", "/proc/moga/front.png"], "/proc/moga/front.png", "cannot write"
    ),
    "front plot onto a pipe": case(lambda c: ["front", str(c.run), "--plot", str(a_fifo(c))], "fifo.png", "not a regular file"),
    "export onnx onto a link to a pipe": case(
        lambda c: ["export", "k3e2-k3e2-k3e2", "--space", str(c.root / "tiny_space.yaml"), "--onnx", str(a_link(c, a_fifo(c)))],
        "link.onnx",
        "not a regular file",
    ),
    "export onnx under a regular file": case(
        lambda c: ["export", "k3e2-k3e2-k3e2", "--space", str(c.root / "tiny_space.yaml"), "--onnx", str(a_file(c) / "m.onnx")],
        "a-file/m.onnx",
        "cannot write",
    ),
    "export onnx into a directory": case(
        lambda c: ["export", "k3e2-k3e2-k3e2", "--space", str(c.root / "tiny_space.yaml"), "--onnx", str(a_dir(c, "m.onnx"))],
        "m.onnx",
        "cannot write",
    ),
    "lut import out under a regular file": case(lambda c: lut_import(c, str(a_file(c) / "t.json")), "a-file/t.json", "cannot write"),
    "lut import out on a full disk": case(lambda c: lut_import(c, str(c.tmp / "t.json")), "t.json", "No space left", patch=no_space_left),
    "lut import of a directory": case(lambda c: lut_import(c, str(c.tmp / "t.json"), str(a_dir(c, "csvdir"))), "csvdir"),
    "arch show with a directory as table": case(
        lambda c: ["arch", "show", "k3e2-k3e2-k3e2", "--space", str(c.root / "tiny_space.yaml"), "--lut", str(c.run / "lut")],
        "lut",
        "cannot read latency table",
        "directory",
    ),
    "arch show with a /proc table": case(
        lambda c: ["arch", "show", "k3e2-k3e2-k3e2", "--space", str(c.root / "tiny_space.yaml"), "--lut", "/proc/self"], "/proc/self"
    ),
    "run dir under a regular file": case(
        lambda c: ["run", c.exp, f"run_dir={a_file(c) / 'run'}", "--no-progress"], "a-file/run", "cannot lock run directory"
    ),
    "run dir under /proc": case(lambda c: ["run", c.exp, "run_dir=/proc/moga-run", "--no-progress"], "/proc/moga-run", "cannot"),
    "retrain on a read-only disk": case(
        lambda c: ["retrain", c.exp, "--pick", "0", "--no-progress"], "cannot", "Read-only", patch=read_only
    ),
    "run on a read-only disk": case(lambda c: ["run", c.exp, "--no-progress"], "cannot write", "Read-only", patch=read_only),
    "search on a full disk": case(
        then(lambda c: shutil.rmtree(c.run / "search"), lambda c: ["search", c.exp, "--no-progress"]),
        "cannot write",
        "No space left",
        patch=no_space_left,
    ),
    "measured timings of binary garbage": case(
        lambda c: ["lut", "validate", str(c.run / "lut" / "cpu.json"), "--measured", str(c.run / "supernet" / "supernet.pt")],
        "supernet.pt",
        "not a readable CSV",
    ),
    "measured timings with a bad arch": case(
        then(
            lambda c: (c.tmp / "nets.csv").write_text("arch,measured_ms\nk3e2-k3e2-k3e2,1.0\nk9e9,2.0\n"),
            lambda c: ["lut", "validate", str(c.run / "lut" / "cpu.json"), "--measured", str(c.tmp / "nets.csv")],
        ),
        "nets.csv:3",
        "k9e9",
    ),
    # ------------------------------------------------------------ 4. devices, and what a refused file is called
    "device tpu": case(lambda c: ["run", c.exp, "device=tpu", "--no-progress"], "'device'", "tpu", "not supported"),
    "device cuda:x": case(lambda c: ["search", c.exp, "device=cuda:x", "--no-progress"], "cuda:x"),
    "device cuda on a fresh run": case(
        lambda c: ["run", c.exp, f"run_dir={c.fresh()}", "device=cuda", "--no-progress"], "cuda", "not available", only_if=cuda_missing
    ),
    "device cuda with a good supernet": case(
        lambda c: ["search", c.exp, "device=cuda", "--no-progress"], "cuda", "not available", forbidden=CORRUPT, only_if=cuda_missing
    ),
    "device cuda with a good supernet, eval": case(
        lambda c: ["supernet", "eval", c.exp, "--arch", "k3e2-k3e2-k3e2", "device=cuda"],
        "not available",
        forbidden=CORRUPT,
        only_if=cuda_missing,
    ),
    # ------------------------------------------------------------ 5. validated state and result files
    "pareto garbage row": case(lambda c: ["front", front(c, lambda p: append_line(p, "x,y,z,1,2,3,4,5,6,7"))], "pareto.csv", "row", "'id'"),
    "pareto ragged row": case(lambda c: ["front", front(c, lambda p: append_line(p, "1,2,3"))], "pareto.csv"),
    "pareto NaN latency": case(
        lambda c: ["front", front(c, lambda p: set_cell(p, 2, "latency_ms", "nan"))], "pareto.csv", "row 4", "latency_ms"
    ),
    "pareto text accuracy": case(
        lambda c: ["front", front(c, lambda p: set_cell(p, 0, "accuracy", "high"))], "row 2", "accuracy", "'high'"
    ),
    "pareto duplicate id": case(
        lambda c: ["front", front(c, lambda p: set_cell(p, 3, "id", 0))], "pareto.csv", "row 5", "'id'", "0 appears twice"
    ),
    "pareto duplicate id, retrain": case(
        then(lambda c: front(c, lambda p: set_cell(p, 3, "id", 0)), lambda c: ["retrain", c.exp, "--pick", "0", "--no-progress"]),
        "row 5",
        "twice",
    ),
    "pareto without arch": case(
        lambda c: ["front", front(c, lambda p: edit_csv(p, lambda d: d.drop(columns="arch")))], "pareto.csv", "arch"
    ),
    "pareto empty": case(lambda c: ["front", front(c, lambda p: p.write_text(""))], "pareto.csv"),
    "state records a list": case(
        lambda c: ["search", edit_state(c, lambda s: s.update(records=[1])).exp, "--no-progress"], "state.json", "'records'"
    ),
    "state completed text": case(
        lambda c: ["search", edit_state(c, lambda s: s.update(completed="6")).exp, "--no-progress"], "state.json", "'completed'"
    ),
    "state record of text": case(
        lambda c: ["search", edit_state(c, lambda s: s["records"].update({"k3e2-k3e2-k3e2": {"accuracy": "x"}})).exp, "--no-progress"],
        "state.json",
        "k3e2-k3e2-k3e2",
    ),
    "state record of another space": case(
        lambda c: [
            "search",
            edit_state(c, lambda s: s["records"].update({"k9e9": s["records"][next(iter(s["records"]))]})).exp,
            "--no-progress",
        ],
        "state.json",
        "k9e9",
    ),
    "state emptied": case(lambda c: ["search", edit_state(c, lambda s: s.clear()).exp, "--no-progress"], "state.json", "'config_hash'"),
    "state not an object": case(
        lambda c: ["search", c.exp, "--no-progress"] if (c.run / "search" / "state.json").write_text("[]") else [],
        "state.json",
        "an object",
    ),
    "state generations miscounted": case(
        lambda c: ["search", edit_state(c, lambda s: s.update(completed=99)).exp, "--no-progress"], "state.json", "99"
    ),
    "summary garbage row": case(
        lambda c: [
            "retrain",
            summary(c, "arch_id,source,test_acc,arch\nab12cd34,arch,high,k3e2-k3e2-k3e2\n").exp,
            "--pick",
            "0",
            "--no-progress",
        ],
        "summary.csv",
        "row 2",
        "test_acc",
    ),
    "summary duplicate model": case(
        lambda c: [
            "retrain",
            summary(c, "arch_id,source,test_acc,arch\nab,arch,1,k3e2-k3e2-k3e2\nab,arch,2,k3e2-k3e2-k3e2\n").exp,
            "--pick",
            "0",
            "--no-progress",
        ],
        "summary.csv",
        "row 3",
        "twice",
    ),
    "summary not a CSV": case(lambda c: ["retrain", summary(c, "\x00\x01").exp, "--pick", "0", "--no-progress"], "summary.csv"),
    "history garbage row": case(
        then(
            lambda c: (set_cell(c.run / "search" / "history.csv", 0, "accuracy", "x"), (c.run / "search" / "pareto.csv").unlink()),
            lambda c: ["retrain", c.exp, "--arch", "k3e2-k3e2-k3e2", "--no-progress"],
        ),
        "history.csv",
        "accuracy",
    ),
    # ------------------------------------------------------------ 6. accepted before, but wrong
    "name climbing out of runs": case(
        lambda c: ["run", c.exp, "name=../../somewhere", "run_dir=", "--no-progress"], "'name'", "plain name"
    ),
    "name with a slash": case(lambda c: ["search", c.exp, "name=a/b", "--no-progress"], "'name'", "plain name"),
    "duplicate key in the config": case(
        lambda c: ["run", c.variant(Path(c.exp).read_text().replace('"seed": 0,', '"seed": 0, "seed": 1,')), "--no-progress"],
        "variant.yaml",
        "duplicate key 'seed'",
    ),
    "duplicate key in a section": case(
        lambda c: ["search", c.variant("search: {population: 8, population: 9}\n"), "--no-progress"], "duplicate key 'population'"
    ),
    "duplicate key in an override": case(
        lambda c: ["search", c.exp, "search.objectives=[{name: latency, name: accuracy}]", "--no-progress"],
        "search.objectives",
        "duplicate key 'name'",
    ),
    "duplicate key in the space file": case(
        lambda c: ["arch", "sample", "--space", c.variant((c.root / "tiny_space.yaml").read_text() + "name: again\n")],
        "duplicate key 'name'",
    ),
    "duplicate key in a table": case(
        lambda c: [
            "arch",
            "show",
            "k3e2-k3e2-k3e2",
            "--space",
            str(c.root / "tiny_space.yaml"),
            "--lut",
            c.variant((c.run / "lut" / "cpu.json").read_text().replace('"header": {', '"header": {"device": "x",', 1)),
        ],
        "duplicate key 'device'",
    ),
    "overflowing weight": case(
        lambda c: ["search", c.exp, "search.objectives=[{name: accuracy, weight: 1e308}, {name: latency}]", "--no-progress"],
        "search.objectives.0.weight",
    ),
    "negative seed": case(lambda c: ["run", c.exp, "seed=-1", "--no-progress"], "'seed'", "greater than or equal to 0"),
    "negative search seed": case(lambda c: ["search", c.exp, "search.seed=-1", "--no-progress"], "'search.seed'"),
    "huge seed": case(lambda c: ["search", c.exp, "seed=100000000000000000000000", "--no-progress"], "'seed'"),
    "sample --seed -1": case(lambda c: ["arch", "sample", "--seed", "-1"], "--seed"),
    "front budget negative": case(lambda c: ["front", str(c.run), "--budget", "-5"], "--budget", "-5"),
    "front budget nan": case(lambda c: ["front", str(c.run), "--budget", "nan"], "--budget"),
    "front max latency zero": case(lambda c: ["front", str(c.run), "--max-latency", "0"], "--max-latency"),
    "sample -n -1": case(lambda c: ["arch", "sample", "-n", "-1"], "-n", "-1"),
    "sample resolution 0": case(lambda c: ["arch", "sample", "--resolution", "0"], "--resolution"),
    "lut validate --nets 0": case(lambda c: ["lut", "validate", str(c.run / "lut" / "cpu.json"), "--nets", "0"], "--nets"),
    "failed search leaves no run dir": case(lambda c: ["search", c.exp, f"run_dir={c.fresh()}", "--no-progress"], "no trained supernet"),
    "failed retrain leaves no run dir": case(
        lambda c: ["retrain", c.exp, f"run_dir={c.fresh()}", "--pick", "0", "--no-progress"], "pareto.csv"
    ),
    "failed training leaves no run dir": case(
        lambda c: ["supernet", "train", c.exp, f"run_dir={c.fresh()}", f"data.path={c.tmp / 'nowhere'}", "--no-progress"], "nowhere"
    ),
    "failed search leaves no search dir": case(
        then(
            lambda c: (shutil.rmtree(c.run / "search"), (c.run / "supernet" / "supernet.pt").unlink()),
            lambda c: ["search", c.exp, "--no-progress"],
        ),
        "no trained supernet",
    ),
    # ------------------------------------------------------------ 7. messages that name the right thing
    "section set to a value": case(
        lambda c: ["search", c.exp, "search=5", "search.population=8", "--no-progress"], "'search=5'", "section"
    ),
    "section set to a value, last": case(lambda c: ["search", c.exp, "search.population=8", "lut=1", "--no-progress"], "'lut=1'"),
    "unknown zoo name": case(lambda c: ["arch", "show", "moga_z"], "unknown zoo model 'moga_z'", "moga_c", forbidden=("tokens",)),
    "unknown zoo name, eval": case(lambda c: ["supernet", "eval", c.exp, "--zoo", "fairnas_q"], "fairnas_q"),
    "front given a YAML file": case(lambda c: ["front", c.exp], "exp.yaml", "not a pareto.csv", forbidden=("tokeniz",)),
    "empty space file": case(
        lambda c: ["arch", "sample", "--space", str(Path(c.variant("")))], "variant.yaml", "empty", forbidden=("_SpaceYaml", "dictionary")
    ),
    "space file of a list": case(
        lambda c: ["arch", "sample", "--space", str(Path(c.variant("[1, 2]\n")))], "variant.yaml", "not a mapping"
    ),
    "empty space file in a run": case(
        lambda c: ["run", c.exp, f"space.name={Path(c.variant(''))}", f"run_dir={c.fresh()}", "--no-progress"],
        "variant.yaml",
        "empty",
        forbidden=("_SpaceYaml",),
    ),
    "rank-corr --models 0": case(lambda c: ["rank-corr", c.exp, "--models", "0"], "--models", forbidden=("--top-k",)),
    "rank-corr --top-k 0": case(lambda c: ["rank-corr", c.exp, "--models", "3", "--top-k", "0"], "--top-k"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_line_and_changes_nothing(name: str, ctx: Ctx, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch):
    c = CASES[name]
    if c.only_if is not None and not c.only_if():
        pytest.skip("needs a machine without CUDA")
    argv = c.argv(ctx)
    before = snapshot(ctx.watch)
    capsys.readouterr()
    if c.patch is not None:
        c.patch(monkeypatch)
    code = main(argv)
    monkeypatch.undo()
    out = capsys.readouterr()
    err = out.err.strip()
    if os.environ.get("MOGA_SHOW_ERRORS"):
        print(f"{name}: {err}", file=sys.__stderr__)
    assert code == 2, (code, out.out[-800:], err[-2000:])
    assert len(err.splitlines()) == 1 and err.startswith("moga: error: ") and "Traceback" not in err, err
    for needle in c.needles:
        assert needle in err, (needle, err)
    for word in c.forbidden:
        assert word not in err, (word, err)
    assert not ctx.marker.exists(), "code smuggled into data ran"
    after = snapshot(ctx.watch)
    assert after[1] == before[1], f"directories changed: {sorted(after[1] ^ before[1])}"
    assert after[0] == before[0], (
        f"files changed: {sorted(k for k in after[0].keys() | before[0].keys() if after[0].get(k) != before[0].get(k))}"
    )


# ----------------------------------------------------------------------------- 2. verified, not trusted
def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def result_of(path: Path) -> object:
    """What must come back: the bytes' hash; for a latency table its entries (its header dates the measurement),
    for a checkpoint its weights bitwise (it also holds the config text, which names the run directory)."""
    if path.parent.name == "lut":
        return json.loads(path.read_text())["entries"]
    if path.suffix == ".pt":
        state = torch.load(path, weights_only=True)
        return {k: hashlib.sha256(v.numpy().tobytes()).hexdigest() for k, v in state["model"].items()}
    return hashlib.sha256(path.read_bytes()).hexdigest()


# damage -> (the stage whose note names the file, the file named, the files that must come back byte-identical)
RECOVERIES: dict[str, tuple[Callable[[Path], None], str, str, tuple[str, ...]]] = {
    "pareto.csv deleted": (lambda r: (r / "search/pareto.csv").unlink(), "search", "search/pareto.csv", ("search/pareto.csv",)),
    "pareto.csv edited": (lambda r: append_line(r / "search/pareto.csv", "x,y"), "search", "search/pareto.csv", ("search/pareto.csv",)),
    "history.csv truncated": (lambda r: truncate(r / "search/history.csv"), "search", "search/history.csv", ("search/history.csv",)),
    "state.json truncated": (lambda r: truncate(r / "search/state.json"), "search", "search/state.json", ("search/pareto.csv",)),
    "cpu.json truncated": (lambda r: truncate(r / "lut/cpu.json"), "lut", "lut/cpu.json", ("lut/cpu.json",)),
    "supernet.pt truncated": (
        lambda r: truncate(r / "supernet/supernet.pt"),
        "supernet",
        "supernet/supernet.pt",
        ("supernet/supernet.pt",),
    ),
    "supernet.pt deleted": (lambda r: (r / "supernet/supernet.pt").unlink(), "supernet", "supernet/supernet.pt", ("supernet/supernet.pt",)),
    "supernet.pt deleted, last.pt truncated": (
        lambda r: ((r / "supernet/supernet.pt").unlink(), truncate(r / "supernet/last.pt")),
        "supernet",
        "supernet/supernet.pt",
        ("supernet/supernet.pt", "supernet/last.pt"),
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(RECOVERIES))
def test_damaged_stage_output_is_redone_not_trusted(name: str, ctx: Ctx, capsys: pytest.CaptureFixture):
    damage, stage, named, restored = RECOVERIES[name]
    original = {f: result_of(ctx.run / f) for f in restored}
    damage(ctx.run)
    capsys.readouterr()
    assert main(["run", ctx.exp, "--no-progress"]) == 0
    out = capsys.readouterr().out
    notes = [line for line in out.splitlines() if "recorded as done, but" in line]
    assert len(notes) == 1 and notes[0].startswith(f"[{stage}]") and named in notes[0], out
    assert "Pareto front:" in out  # the front is printed again
    assert {f: result_of(ctx.run / f) for f in restored} == original
    assert main(["run", ctx.exp, "--no-progress"]) == 0  # and it verifies now
    assert capsys.readouterr().out.count("done earlier with this config, skipped") == 3


@pytest.mark.parametrize("damage", ["truncated", "wrong type"])
def test_damaged_stage_record_is_rebuilt(damage: str, ctx: Ctx, capsys: pytest.CaptureFixture):
    original = {f: result_of(ctx.run / f) for f in ("lut/cpu.json", "supernet/supernet.pt", "search/pareto.csv")}
    if damage == "truncated":
        truncate(ctx.run / "stages.json")
    else:
        (ctx.run / "stages.json").write_text('{"lut": {"status": "done", "wall_s": "ten"}}')
        assert main(["report", str(ctx.run)]) == 0  # the report leaves the stage table out
    assert main(["run", ctx.exp, "--no-progress"]) == 0
    assert "stages.json" in capsys.readouterr().out
    names = ("lut/cpu.json", "supernet/supernet.pt", "search/pareto.csv")
    assert [f for f in names if result_of(ctx.run / f) != original[f]] == []


def test_damaged_or_missing_run_config_neither_blocks_nor_hides_a_changed_config(ctx: Ctx, capsys: pytest.CaptureFixture):
    truncate(ctx.run / "config.yaml")
    assert main(["run", ctx.exp, "--no-progress"]) == 0
    assert capsys.readouterr().out.count("done earlier with this config, skipped") == 3
    assert yaml.safe_load((ctx.run / "config.yaml").read_text())["run_dir"] == str(ctx.run)  # written again
    (ctx.run / "config.yaml").unlink()
    before = file_hashes(ctx.run)
    assert main(["run", ctx.exp, "supernet.steps=9", "--no-progress"]) == 2
    assert "holds a supernet stage made with other settings" in capsys.readouterr().err
    assert file_hashes(ctx.run) == before


@pytest.fixture(scope="module")
def retrained(finished_tiny: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root, run = finished_tiny
    copy = tmp_path_factory.mktemp("retrained") / "run"
    shutil.copytree(run, copy)
    assert main(["retrain", str(write_experiment(root, copy, copy.parent / "exp.yaml")), "--pick", "0", "--no-progress"]) == 0
    return root, copy


@pytest.mark.parametrize("damage", ["truncated", "deleted", "another model", "result.json truncated"])
def test_retrained_model_that_no_longer_matches_its_result_is_trained_again(
    damage: str, retrained: tuple[Path, Path], tmp_path: Path, capsys
):
    root, done = retrained
    run = tmp_path / "run"
    shutil.copytree(done, run)
    exp = str(write_experiment(root, run, tmp_path / "exp.yaml"))
    model = next(run.glob("retrain/*/model.pt"))
    original = result_of(model)
    if damage == "truncated":
        truncate(model)
    elif damage == "deleted":
        model.unlink()
    elif damage == "result.json truncated":
        truncate(model.with_name("result.json"))
    else:  # a valid checkpoint, but not the one result.json describes
        state = torch.load(model, weights_only=True)
        next(iter(state["model"].values())).add_(1.0)
        torch.save(state, model)
    capsys.readouterr()
    assert main(["retrain", exp, "--pick", "0", "--no-progress"]) == 0
    out = capsys.readouterr().out
    if damage == "result.json truncated":
        assert "result.json: corrupt JSON" in out and "it is written again" in out, out
        assert json.loads(model.with_name("result.json").read_text())["model_file"]["bytes"] == model.stat().st_size
    else:
        assert "model.pt" in out and "training it again" in out, out
    assert result_of(model) == original
    assert main(["retrain", exp, "--pick", "0", "--no-progress"]) == 0
    assert "again" not in capsys.readouterr().out


def test_a_search_without_accuracy_runs_and_its_front_reads(finished_tiny: tuple[Path, Path], tmp_path: Path, capsys):
    """A front without an accuracy column is a front (it used to fail `moga run` after the search finished)."""
    root, _ = finished_tiny
    run = tmp_path / "run"
    exp = str(write_experiment(root, run, tmp_path / "exp.yaml", search={"objectives": [{"name": "latency"}, {"name": "params"}]}))
    assert main(["run", exp, "--no-progress"]) == 0
    assert main(["front", str(run), "--plot", str(tmp_path / "f.png")]) == 0 and (tmp_path / "f.png").is_file()
    capsys.readouterr()
    assert main(["front", str(run), "--min-accuracy", "50"]) == 2
    assert "no accuracy column" in capsys.readouterr().err
