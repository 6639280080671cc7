"""Kill and resume: a real ``moga`` process is SIGKILLed at a seeded random point, then resumed.

For each of ``moga lut build``, ``moga supernet train``, ``moga search`` and ``moga retrain``: start the
command in a subprocess, wait until its first checkpoint exists (so the kill lands inside the work, not in
the interpreter's start-up), wait a seeded random delay, SIGKILL it. Then every file left behind must open
(JSON, CSV, checkpoints, PNGs, ONNX), the command run again (``--resume`` where it has one) must finish,
and its outputs must equal those of an uninterrupted run of the same experiment: weights bitwise, tables
and fronts exactly, apart from columns that record wall time. The resumed and the uninterrupted runs call
the command line in-process (``moga.cli.main``), which spares two interpreter and torch start-ups per test.

The seed is ``MOGA_KILL_SEED`` (default 0): ``MOGA_KILL_SEED=7 pytest tests/test_kill_resume.py`` tries
other kill points. Should a fast machine finish a command before the kill, it is started afresh with a
shorter delay (the kill is never skipped).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
import torch

from moga.cli import main
from moga.retrain import arch_id
from tests.tiny_experiment import assert_intact, write_experiment

pytestmark = pytest.mark.slow

SEED = int(os.environ.get("MOGA_KILL_SEED", "0"))
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
# `moga lut build` with the fake backend takes milliseconds: too fast to be killed mid-build. This launcher
# runs the real command line with every fake block timing taking DELAY seconds (sleeping, not computing).
SLOW_FAKE_DEVICE = """
import sys, time
from lut import measure
delay, load = float(sys.argv[1]), measure.FakeBackend.load
def slow_load(self, job):
    time.sleep(delay)
    return load(self, job)
measure.FakeBackend.load = slow_load
from moga.cli import main
sys.exit(main(sys.argv[2:]))
"""
TIMING_COLUMNS = {"images_per_s", "elapsed_s", "eval_s", "generation_s", "bookkeeping_s", "replayed"}


def moga(*args: str) -> list[str]:
    return [sys.executable, "-m", "moga", *args]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("killresume")


@pytest.fixture(scope="module")
def reference(root: Path) -> Path:
    """The uninterrupted run: every stage once, in-process (the same code path as the subprocesses)."""
    run = root / "reference"
    exp = write_experiment(root, run, "reference.yaml")
    for argv in (["lut", "build"], ["supernet", "train"], ["search"], ["retrain", "--pick", "0"]):
        assert main([*argv, str(exp), "--no-progress"]) == 0, argv
    return run


def kill_at_random_point(
    argv: list[str], marker: Path, max_delay: float, reset: Callable[[], None], log: Path, name: str, done: Path | None = None
) -> float:
    """Run ``argv`` until ``marker`` exists, then a seeded random delay, then SIGKILL; returns the delay.

    If the command finished before the kill (or wrote ``done``), ``reset`` restores the starting state and it
    runs again with half the delay, so the kill always happens, and inside the work."""
    rng = random.Random(f"{SEED}-{name}")
    delay = rng.uniform(0.0, max_delay)
    for _ in range(4):
        with log.open("w") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=ENV, cwd=log.parent)
            try:
                deadline = time.monotonic() + 120
                while not marker.exists() and proc.poll() is None:
                    assert time.monotonic() < deadline, f"no {marker} after 120 s"
                    time.sleep(0.01)
                if proc.poll() is None:
                    time.sleep(delay)
                proc.send_signal(signal.SIGKILL)  # a no-op if it has exited
                if proc.wait() == -signal.SIGKILL and (done is None or not done.exists()):
                    return delay
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        assert proc.returncode in (0, -signal.SIGKILL), f"{argv} failed before the kill:\n{log.read_text()}"
        reset()
        delay /= 2
    raise AssertionError(f"{argv} always finished before the kill")


def resume(*args: str) -> None:
    assert main([*args, "--no-progress"]) == 0, args


def fresh_run(root: Path, name: str, reference: Path | None = None, copy: tuple[str, ...] = ()) -> tuple[Path, Path, Callable[[], None]]:
    """(experiment YAML, run dir, reset): the run dir holds copies of the reference's ``copy`` folders."""
    run = root / name
    exp = write_experiment(root, run, f"{name}.yaml")

    def reset() -> None:
        shutil.rmtree(run, ignore_errors=True)
        run.mkdir()
        for part in copy:
            assert reference is not None
            shutil.copytree(reference / part, run / part)

    reset()
    return exp, run, reset


def same_csv(a: Path, b: Path, ignore: set[str] = TIMING_COLUMNS) -> None:
    left, right = pd.read_csv(a), pd.read_csv(b)
    assert list(left.columns) == list(right.columns), a.name
    keep = [c for c in left.columns if c not in ignore]
    pd.testing.assert_frame_equal(left[keep], right[keep], check_exact=True, obj=a.name)


def same_tensors(a: dict, b: dict, what: str) -> None:
    assert a.keys() == b.keys(), what
    for key in a:
        assert torch.equal(a[key], b[key]), f"{what}: {key} differs"


# ----------------------------------------------------------------------------- the four commands
def test_lut_build_killed_and_resumed(root, monkeypatch):
    from lut.measure import FakeBackend

    exp, run, reset = fresh_run(root, "lut_kill")
    args = ("lut", "build", str(exp), "lut.tables.cpu.rounds=4")
    cmd = [sys.executable, "-c", SLOW_FAKE_DEVICE, "0.04", *args, "--no-progress"]
    kill_at_random_point(cmd, run / "lut" / "cpu.progress.json", 0.7, reset, root / "lut_kill.log", "lut", done=run / "lut" / "cpu.json")
    assert_intact(run)
    saved = json.loads((run / "lut" / "cpu.progress.json").read_text())["samples"]
    assert saved, "the progress file holds no finished measurement"

    loads = []
    real_load = FakeBackend.load
    monkeypatch.setattr(FakeBackend, "load", lambda self, job: loads.append(job.key) or real_load(self, job))
    resume(*args)
    assert_intact(run)
    assert not (run / "lut" / "cpu.progress.json").exists()
    # the rounds measured before the kill are not measured again: 15 blocks x 4 rounds in all
    assert len(loads) == 15 * 4 - sum(len(rounds) for rounds in saved.values())

    _, straight, _ = fresh_run(root, "lut_straight")
    assert main(["lut", "build", str(root / "lut_straight.yaml"), "lut.tables.cpu.rounds=4", "--no-progress"]) == 0
    got, want = (json.loads((r / "lut" / "cpu.json").read_text()) for r in (run, straight))
    assert got["entries"] == want["entries"]
    assert {k: v for k, v in got["header"].items() if k != "date"} == {k: v for k, v in want["header"].items() if k != "date"}


def test_supernet_train_killed_and_resumed(root, reference):
    exp, run, reset = fresh_run(root, "supernet_kill")
    out = run / "supernet"
    args = ("supernet", "train", str(exp))
    delay = kill_at_random_point(moga(*args, "--no-progress"), out / "last.pt", 0.8, reset, root / "supernet_kill.log", "supernet")
    assert_intact(run)
    step = torch.load(out / "last.pt", weights_only=True)["step"]
    assert step in (4, 8), (delay, step)
    resume(*args, "--resume")
    assert_intact(run)

    got, want = (torch.load(r / "supernet" / "supernet.pt", weights_only=True) for r in (run, reference))
    same_tensors(got["model"], want["model"], f"supernet.pt (killed {delay:.2f} s after step 4, last.pt at step {step})")
    assert got["fingerprint"] == want["fingerprint"]
    assert json.loads((out / "fairness.json").read_text()) == json.loads((reference / "supernet" / "fairness.json").read_text())
    same_csv(out / "curves.csv", reference / "supernet" / "curves.csv")


def test_search_killed_and_resumed(root, reference):
    exp, run, reset = fresh_run(root, "search_kill", reference, copy=("lut", "supernet"))
    out = run / "search"
    args = ("search", str(exp))
    delay = kill_at_random_point(moga(*args, "--no-progress"), out / "state.json", 1.2, reset, root / "search_kill.log", "search")
    assert_intact(run)
    completed = json.loads((out / "state.json").read_text())["completed"]
    assert 1 <= completed <= 6, (delay, completed)
    resume(*args, "--resume")
    assert_intact(run)

    for name in ("pareto.csv", "history.csv", "hypervolume.csv"):
        same_csv(out / name, reference / "search" / name)
    got, want = (json.loads((r / "search" / "state.json").read_text()) for r in (run, reference))
    assert got["records"] == want["records"], f"killed {delay:.2f} s after generation 1 (state at generation {completed})"
    assert (got["completed"], got["controller"], got["config_hash"]) == (want["completed"], want["controller"], want["config_hash"])


def test_retrain_killed_and_resumed(root, reference):
    exp, run, reset = fresh_run(root, "retrain_kill", reference, copy=("lut", "search"))
    arch = pd.read_csv(reference / "search" / "pareto.csv").loc[0, "arch"]
    out = run / "retrain" / arch_id(arch)
    args = ("retrain", str(exp), "--pick", "0")
    delay = kill_at_random_point(moga(*args, "--no-progress"), out / "last.pt", 0.8, reset, root / "retrain_kill.log", "retrain")
    assert_intact(run)
    resume(*args, "--resume")
    assert_intact(run)

    ref = reference / "retrain" / arch_id(arch)
    got, want = (torch.load(r / "model.pt", weights_only=True) for r in (out, ref))
    same_tensors(got["model"], want["model"], f"model.pt (killed {delay:.2f} s after the first checkpoint)")
    assert got["fingerprint"] == want["fingerprint"]
    a, b = (json.loads((r / "result.json").read_text()) for r in (out, ref))
    deterministic = ("arch", "source", "test_acc", "supernet_acc", "params", "macs", "latency_ms", "epochs", "steps", "config_hash")
    assert {k: a[k] for k in deterministic} == {k: b[k] for k in deterministic}
    same_csv(out / "curves.csv", ref / "curves.csv")
    same_csv(
        run / "retrain" / "summary.csv", reference / "retrain" / "summary.csv", TIMING_COLUMNS | {"measured_latency_ms", "train_wall_s"}
    )
