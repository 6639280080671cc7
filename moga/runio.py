"""Run-directory bookkeeping: config hashes and a lock so two runs never write into one directory."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from supernet.errors import UserError
from supernet.io import atomic_write_bytes, atomic_write_text, read_json, write_json

__all__ = ["atomic_write_bytes", "atomic_write_text", "config_hash", "read_json", "run_lock", "write_json"]


def config_hash(obj: Any) -> str:
    """Short stable hash of a JSON-able object (e.g. the part of a config a stage depends on)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:12]


@contextmanager
def run_lock(run_dir: str | Path) -> Iterator[None]:
    """Hold ``run_dir/.lock`` for the duration; a second process gets a clear error.

    An OS-level ``flock`` is released by the kernel when a process dies, so a killed run never
    leaves a stale lock behind; the temporary files of its unfinished atomic writes are removed here.
    """
    import fcntl

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    fh = open(run_dir / ".lock", "a+")  # noqa: SIM115 - held open for the lock's lifetime
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        raise UserError(f"{run_dir} is in use by another moga process (lock file {run_dir / '.lock'})") from None
    try:
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        for stale in run_dir.rglob(".*.tmp"):  # half-written by a killed process (see supernet.io.atomic_write_bytes)
            stale.unlink(missing_ok=True)
        yield
    finally:
        fcntl.flock(fh, fcntl.LOCK_UN)
        fh.close()
