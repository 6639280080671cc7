"""The one exception type for problems in what a user gave us (configs, strings, files), and the one wording
of an operating-system error on a path."""

from __future__ import annotations

from pathlib import Path


class UserError(ValueError):
    """Bad user input. The CLI prints its message as one line and exits non-zero, no traceback."""


def os_error_message(exc: OSError, operation: str, path: object = None) -> str:
    """One line naming the path, the operation and the reason: ``cannot write runs/x/pareto.csv: Permission denied``.

    ``path`` is the file the user knows (the target of an atomic write, not its temporary file); by default
    the one the error names.
    """
    shown = path if path is not None else exc.filename
    where = f" {shown}" if shown is not None else ""
    reason = exc.strerror or str(exc) or type(exc).__name__
    blocking = _file_in_the_way(Path(shown)) if shown is not None and isinstance(exc, FileExistsError | NotADirectoryError) else None
    if blocking is not None:
        return f"cannot {operation}{where}: {blocking} is a file, not a directory"
    other = f" (via {exc.filename})" if path is not None and exc.filename not in (None, str(path)) and not _is_temp(exc.filename) else ""
    return f"cannot {operation}{where}: {reason}{other}"


def _file_in_the_way(path: Path) -> Path | None:
    """The nearest parent of ``path`` that exists but is no directory (a file where a folder should be)."""
    return next((p for p in path.parents if p.exists() and not p.is_dir()), None)


def _is_temp(name: object) -> bool:
    base = str(name).rsplit("/", 1)[-1]
    return base.startswith(".") and base.endswith(".tmp")
