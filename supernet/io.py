"""Atomic file writes and JSON helpers, shared by every floor (checkpoints, tables, CSVs)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from supernet.errors import UserError, os_error_message
from supernet.readers import DuplicateKey, no_duplicates, read_text


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()  # what open() would give; mkstemp's files are private (0600)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write to a temporary file in the same directory, fsync, then rename over ``path``.

    Only a regular file is ever replaced. Any failure (no permission, a read-only or full disk, a file where a
    directory should be) leaves ``path`` as it was, removes the temporary file and is a ``UserError`` naming
    ``path``, the operation and the reason.
    """
    path = Path(path)
    if path.exists() and not path.is_file():  # renaming over a directory, a device (/dev/null) or a pipe: never
        kind = "a directory" if path.is_dir() else "a device, pipe or socket"
        raise UserError(f"cannot write {path}: it is {kind}, not a regular file")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise UserError(os_error_message(exc, "write", path)) from None
    try:
        os.fchmod(fd, _FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise UserError(os_error_message(exc, "write", path)) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2) + "\n")


def read_json(path: str | Path, what: str = "JSON file") -> Any:
    """Parse ``path``; missing, unreadable, corrupt or with a key given twice: a ``UserError`` naming it."""
    path = Path(path)
    text = read_text(path, what)
    try:
        return json.loads(text, object_pairs_hook=no_duplicates)
    except json.JSONDecodeError as exc:
        raise UserError(f"{what} {path}: corrupt JSON ({exc})") from None
    except DuplicateKey as exc:
        raise UserError(f"{what} {path}: duplicate key {exc.args[0]!r}") from None


def differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Where two nested settings dicts differ, as ``"key.path (old -> new)"``, in key order."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [d for k in sorted(set(old) | set(new)) for d in differences(old.get(k), new.get(k), f"{prefix}{k}.")]
    return [] if old == new else [f"{prefix[:-1]} ({old!r} -> {new!r})"]
