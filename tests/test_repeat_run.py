"""Repeat runs: ``moga run`` twice into one run directory skips every finished stage and leaves every
output file byte-for-byte as the first run wrote it (only the lock file, which holds the pid, differs).

The experiment is the tiny one of ``tests/tiny_experiment.py`` (the quickstart's stages on a 3-layer space
and 4 classes of images), so both runs take a few seconds.
"""

from __future__ import annotations

import json

import pytest

from moga.cli import main
from tests.tiny_experiment import assert_intact, file_hashes, write_experiment

pytestmark = pytest.mark.slow


def test_second_run_skips_every_stage_and_changes_no_file(tmp_path, capsys):
    run = tmp_path / "run"
    exp = write_experiment(tmp_path, run)
    assert main(["run", str(exp), "--no-progress"]) == 0
    first = capsys.readouterr().out
    assert all(f"[{stage}] starting" in first for stage in ("lut", "supernet", "search"))
    before = file_hashes(run)
    stages = json.loads((run / "stages.json").read_text())
    assert {s: v["status"] for s, v in stages.items()} == {"lut": "done", "supernet": "done", "search": "done"}

    assert main(["run", str(exp), "--no-progress"]) == 0
    second = capsys.readouterr().out
    for stage in ("lut", "supernet", "search"):
        assert f"[{stage}] done earlier with this config, skipped" in second
    assert "starting" not in second and "resuming" not in second
    assert json.loads((run / "stages.json").read_text()) == stages
    after = file_hashes(run)
    assert after.keys() == before.keys(), sorted(set(after) ^ set(before))
    assert [name for name in before if before[name] != after[name]] == []
    assert len(assert_intact(run)) == len(before)
    assert (run / ".lock").exists()  # left out of the comparison: it holds the pid of the last run
