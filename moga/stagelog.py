"""``stages.json``: per stage of ``moga run``, the config hash it ran with, its status, its cost, and the size
and SHA-256 of every output it left. A stage recorded as done is skipped only while its outputs verify.

Verified, not trusted: an output that is missing, or whose bytes differ from what the stage recorded, makes
the stage run again with a one-line note. Before it does, the changed outputs are removed (they are not what
the stage wrote, and the stage would otherwise resume from them), so the stage resumes from what is intact
(a supernet from ``last.pt``, a search from ``state.json``) and "run the same command again" always recovers.
An output the user may legitimately rewrite (a latency table calibrated in place by ``moga lut validate``)
has an ``accept`` check: changed but accepted, it counts as intact.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supernet.errors import UserError
from supernet.io import read_json, write_json


@dataclass(frozen=True)
class Output:
    """A file a stage writes, relative to the run directory. ``required``: the stage is not done without it;
    an optional one (a training checkpoint) may be deleted by the user, but a changed one is removed before
    the stage runs again. ``accept``: whether a changed file is still a valid output."""

    path: str
    required: bool = True
    accept: Callable[[Path], bool] | None = None


def file_record(path: Path) -> dict[str, Any]:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return {"bytes": path.stat().st_size, "sha256": digest.hexdigest()}


def changed(path: Path, recorded: dict[str, Any]) -> bool:
    """Whether ``path`` differs from its record (size first: no need to hash a truncated checkpoint)."""
    return path.stat().st_size != recorded.get("bytes") or file_record(path)["sha256"] != recorded.get("sha256")


# the fields of a stage's entry that readers rely on, and their types (the rest is the stage's own summary)
_ENTRY_TYPES: dict[str, tuple[type, ...]] = {"hash": (str,), "status": (str,), "wall_s": (int, float), "outputs": (dict,)}


def read_stages(path: Path) -> dict[str, dict[str, Any]]:
    """``stages.json``, checked to be an object of stage entries with the fields' types (a ``UserError``
    naming the stage and field otherwise)."""
    stages = read_json(path, "stage record")
    if not isinstance(stages, dict):
        raise UserError(f"stage record {path}: expected an object of stages")
    for stage, entry in stages.items():
        if not isinstance(entry, dict):
            raise UserError(f"stage record {path}: stage {stage!r} should be an object")
        for key, types in _ENTRY_TYPES.items():
            if key in entry and (not isinstance(entry[key], types) or isinstance(entry[key], bool)):
                raise UserError(f"stage record {path}: stage {stage!r}: {key!r} has the wrong type ({entry[key]!r:.40})")
    return stages


class StageLog:
    """``stages.json``: status, config hash, cost and outputs of each stage."""

    def __init__(self, run_dir: Path, writer: bool = True):
        self.run_dir, self.path, self.writer = run_dir, run_dir / "stages.json", writer
        self.stages: dict[str, dict[str, Any]] = self._read()

    def _read(self) -> dict[str, dict[str, Any]]:
        if not self.path.exists():
            return {}
        try:
            return read_stages(self.path)
        except UserError as exc:  # every stage resumes from its own files: the record is rebuilt as they finish
            print(f"[stages] {exc}: ignored, every stage is checked by resuming it")
            return {}

    def problem(self, stage: str, digest: str, outputs: Sequence[Output]) -> str | None:
        """Why ``stage`` is not done with this config hash and these outputs ("" if never run), or None."""
        entry = self.stages.get(stage, {})
        if entry.get("status") != "done" or entry.get("hash") != digest:
            return ""
        recorded = entry.get("outputs", {})
        for out in outputs:
            path = self.run_dir / out.path
            if not path.is_file():
                if out.required:
                    return f"{out.path} is missing"
            elif out.path in recorded and changed(path, recorded[out.path]) and not (out.accept and out.accept(path)):
                return f"{out.path} is not the file it wrote ({path.stat().st_size} bytes, recorded {recorded[out.path].get('bytes')})"
        return None

    def done(self, stage: str, digest: str, outputs: Sequence[Output] = ()) -> bool:
        return self.problem(stage, digest, outputs) is None

    def run(self, stage: str, digest: str, fn: Callable[[], dict[str, Any] | None], outputs: Sequence[Output] = ()) -> None:
        problem = self.problem(stage, digest, outputs)
        if problem is None:
            print(f"[{stage}] done earlier with this config, skipped")
            return
        entry = self.stages.get(stage, {})
        if problem:
            print(f"[{stage}] recorded as done, but {problem}: running it again from its intact files")
            self._remove_changed(entry.get("outputs", {}), outputs)
        resumed = entry.get("status") == "running" or bool(problem)
        print(f"[{stage}] {'resuming' if resumed else 'starting'}")
        previous = entry.get("wall_s", 0.0) if resumed else 0.0
        self._set(stage, {"hash": digest, "status": "running", "wall_s": previous})
        start = time.perf_counter()
        extra = fn() or {}
        written = {o.path: file_record(self.run_dir / o.path) for o in outputs if (self.run_dir / o.path).is_file()}
        wall = round(previous + time.perf_counter() - start, 1)
        self._set(stage, {"hash": digest, "status": "done", "wall_s": wall, **extra, "outputs": written})

    def _remove_changed(self, recorded: dict[str, Any], outputs: Sequence[Output]) -> None:
        if not self.writer:
            return
        for out in outputs:
            path = self.run_dir / out.path
            if path.is_file() and out.path in recorded and changed(path, recorded[out.path]) and not (out.accept and out.accept(path)):
                path.unlink()

    def _set(self, stage: str, entry: dict[str, Any]) -> None:
        self.stages[stage] = entry
        if self.writer:
            write_json(self.path, self.stages)
