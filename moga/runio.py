"""Run-directory bookkeeping: config hashes and a lock so two runs never write into one directory."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from supernet.errors import UserError, os_error_message

__all__ = ["config_hash", "run_lock"]


def config_hash(obj: Any) -> str:
    """Short stable hash of a JSON-able object (e.g. the part of a config a stage depends on)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:12]


LOCK_NAMES = (".lock", ".summary.lock")  # run_lock's, and the retrain summary's (moga.retrain)


def _sweep_unfinished_writes(run_dir: Path) -> None:
    """Remove the temporary files (``.<name>.<random>.tmp``, see ``supernet.io.atomic_write_bytes``) a killed
    process left in ``run_dir``. Only where ``run_dir`` is the nearest locked directory: a subdirectory with a
    lock of its own (a retrain, the summary) may belong to a process writing right now."""
    for tmp in run_dir.rglob(".*.tmp"):
        owner = next(p for p in tmp.parents if p == run_dir or any((p / name).exists() for name in LOCK_NAMES))
        if owner == run_dir:
            tmp.unlink(missing_ok=True)


def _missing_dirs(path: Path) -> list[Path]:
    """``path`` and those of its parents that do not exist yet, innermost first."""
    out = []
    while not path.exists() and path != path.parent:
        out.append(path)
        path = path.parent
    return out


def _subdirs(run_dir: Path) -> list[Path]:
    """The directories of a run (two levels: ``search/``, ``retrain/<arch-id>/``); a ``run_dir`` pointed at a
    big tree is not walked."""
    return [d for pattern in ("*", "*/*") for d in run_dir.glob(pattern) if d.is_dir()]


def _remove_unused(run_dir: Path, created: list[Path], existing: set[Path]) -> None:
    """Remove the directories this command created and left empty: those inside ``run_dir`` that did not exist
    when it took the lock, and ``run_dir`` itself (with the parents made for it) if it holds only the lock
    file. A command that failed before doing anything leaves no empty ``runs/<name>/`` behind. Best effort: a
    directory that cannot be removed is left."""
    with contextlib.suppress(OSError):
        _remove_empty(run_dir, created, existing)


def _remove_empty(run_dir: Path, created: list[Path], existing: set[Path]) -> None:
    for directory in sorted(set(_subdirs(run_dir)) - existing, key=lambda d: -len(d.parts)):
        if not any(directory.iterdir()):
            directory.rmdir()
    for directory in created:
        lock = directory / ".lock"
        if not directory.is_dir() or any(p != lock for p in directory.iterdir()):
            return
        lock.unlink(missing_ok=True)
        directory.rmdir()


@contextmanager
def run_lock(run_dir: str | Path) -> Iterator[None]:
    """Hold ``run_dir/.lock`` for the duration; a second process gets a clear error.

    An OS-level ``flock`` is released by the kernel when a process dies, so a killed run never
    leaves a stale lock behind; the temporary files of its unfinished atomic writes are removed here.
    Directories created for the lock that are still empty at the end are removed again.
    """
    import fcntl

    run_dir = Path(run_dir)
    created = _missing_dirs(run_dir.absolute())
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        fh = open(run_dir / ".lock", "a+")  # noqa: SIM115 - held open for the lock's lifetime
    except OSError as exc:
        _remove_unused(run_dir, created, set(_subdirs(run_dir)) if run_dir.is_dir() else set())
        raise UserError(os_error_message(exc, "lock run directory", run_dir)) from None
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        raise UserError(f"{run_dir} is in use by another moga process (lock file {run_dir / '.lock'})") from None
    existing = set(_subdirs(run_dir))
    try:
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        _sweep_unfinished_writes(run_dir)
        yield
    finally:
        _remove_unused(run_dir, created, existing)  # still holding the lock: no other process can be using it
        fcntl.flock(fh, fcntl.LOCK_UN)
        fh.close()
