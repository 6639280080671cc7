"""Safe, validated readers for every file a user can hand moga (or damage in a run directory).

Each reader admits only what its format holds and turns every way a file can be wrong into one ``UserError``
naming the file (and the row or key) — never a traceback, never code run from data:

* ``read_yaml``: YAML's safe loader (no Python objects), duplicate keys refused (YAML keeps the last silently);
* ``no_duplicates``: the JSON ``object_pairs_hook`` that refuses duplicate keys (``supernet.io.read_json``);
* ``unpickle_plain``: a restricted unpickler admitting only dicts, lists, strings, bytes, numbers and numpy
  arrays (the CIFAR-10 python batches are pickles; a crafted one must not run code when loaded);
* ``read_csv_checked``: a CSV with required columns, numeric columns that must be finite, unique keys.
"""

from __future__ import annotations

import io
import math
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml

from supernet.errors import UserError


# ----------------------------------------------------------------------------- YAML / JSON
class DuplicateKeyError(yaml.YAMLError):
    """A mapping names one key twice (the message is one line: key and line number)."""


class _StrictLoader(yaml.SafeLoader):
    """The safe loader, refusing a mapping that repeats a key."""


def _strict_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    loader.flatten_mapping(node)  # resolves ``<<`` merges first: a merged-in key may be overridden
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise DuplicateKeyError(f"duplicate key {key!r} at line {key_node.start_mark.line + 1}")
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _strict_mapping)


def yaml_loads(text: str) -> Any:
    """Safe YAML with duplicate keys refused (``DuplicateKeyError``, a ``yaml.YAMLError``)."""
    return yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass: no Python objects


def read_text(path: str | Path, what: str = "file") -> str:
    """The text of ``path``; a missing, unreadable or binary file is a ``UserError`` naming it."""
    path = Path(path)
    try:
        return path.read_text()
    except FileNotFoundError:
        raise UserError(f"{what} not found: {path}") from None
    except IsADirectoryError:
        raise UserError(f"cannot read {what} {path}: it is a directory") from None
    except UnicodeDecodeError:
        raise UserError(f"cannot read {what} {path}: not a text file") from None
    except OSError as exc:
        raise UserError(f"cannot read {what} {path}: {exc.strerror or exc}") from None


def read_yaml(path: str | Path, what: str = "YAML file") -> Any:
    text = read_text(path, what)
    try:
        return yaml_loads(text)
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None


class DuplicateKey(ValueError):
    pass


def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``json.loads(..., object_pairs_hook=no_duplicates)``: a repeated key raises ``DuplicateKey``."""
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise DuplicateKey(k)
        out[k] = v
    return out


# ----------------------------------------------------------------------------- pickles of plain data
# What numpy needs to rebuild an array (numpy 1 and 2 spell the module differently); nothing else is a class
# or function a pickle may name. Scalars, strings, bytes, lists, tuples and dicts need no global at all.
_PLAIN_GLOBALS = frozenset(
    {("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}  # _codecs.encode: protocol-2 bytes (str -> bytes)
    | {
        (f"numpy.{core}.{module}", name)
        for core in ("core", "_core")
        for module, name in (("multiarray", "_reconstruct"), ("multiarray", "scalar"), ("numeric", "_frombuffer"))
    }
)


class RefusedPickle(pickle.UnpicklingError):
    """The pickle names a class or function beyond plain data: it would run code if loaded."""


class _PlainUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _PLAIN_GLOBALS:
            raise RefusedPickle(f"{module}.{name}")
        return super().find_class(module, name)


def unpickle_plain(path: str | Path) -> Any:
    """Unpickle a file that holds only plain data and numpy arrays (numeric dtypes); anything else is a
    ``UserError`` saying it was refused, without running any of it."""
    import numpy as np

    path = Path(path)
    try:
        with path.open("rb") as f:
            obj = _PlainUnpickler(f, encoding="bytes").load()
    except RefusedPickle as exc:
        raise UserError(
            f"{path}: refused to load: the pickle names {exc.args[0]}, i.e. it holds code, not only data "
            "(admitted: dicts, lists, strings, bytes, numbers, numpy arrays)"
        ) from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError, MemoryError) as exc:
        raise UserError(f"{path}: corrupt or truncated pickle ({type(exc).__name__}: {str(exc)[:80]})") from None
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None

    def check(value: Any) -> None:
        if isinstance(value, np.ndarray) and value.dtype.hasobject:
            raise UserError(f"{path}: refused to load: it holds a numpy array of Python objects")
        if isinstance(value, Mapping):
            for item in value.values():
                check(item)
        elif isinstance(value, list | tuple):
            for item in value:
                check(item)

    check(obj)
    return obj


# ----------------------------------------------------------------------------- CSV
ColumnKind = Literal["int", "float", "finite", "str", "bool"]


def read_csv_checked(
    path: str | Path,
    columns: Mapping[str, ColumnKind],
    *,
    required: tuple[str, ...] | None = None,
    unique: tuple[str, ...] = (),
    what: str = "CSV file",
    dtype: Mapping[str, Any] | None = None,
) -> Any:
    """A ``pandas.DataFrame`` of ``path`` whose columns of ``columns`` hold what their kind says: ``int``
    (whole numbers), ``finite`` (numbers, no NaN/inf), ``float`` (numbers, NaN allowed as "unknown"),
    ``str`` (non-empty), ``bool``; a name ending in ``*`` covers every column it begins. ``required``
    columns (default: all of ``columns``) must be present and ``unique`` columns hold no value twice. The first problem is a ``UserError`` naming file, row and column
    (rows counted as in the file: the header is row 1)."""
    import numpy as np
    import pandas as pd

    path = Path(path)
    text = read_text(path, what)
    try:
        # text columns read as text: a hex digest of digits only ("00123456") or with one e ("12345e678901") is no number
        text_columns = {c: str for c, kind in columns.items() if kind == "str" and not c.endswith("*")}
        frame = pd.read_csv(io.StringIO(text), dtype=text_columns | dict(dtype or {}))
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{path}: not a readable CSV ({first})") from None
    columns = {
        **{c: kind for c, kind in columns.items() if not c.endswith("*")},
        **{c: kind for pattern, kind in columns.items() if pattern.endswith("*") for c in frame.columns if c.startswith(pattern[:-1])},
    }
    missing = [c for c in (columns if required is None else required) if c not in frame.columns]
    if missing:
        raise UserError(f"{path}: not a moga {path.name} (missing columns {', '.join(missing)})")

    def bad(index: int, column: str, problem: str) -> UserError:
        return UserError(f"{path}: row {index + 2}, column {column!r}: {problem}")

    for column, kind in columns.items():
        if column not in frame.columns:
            continue
        values = frame[column]
        if kind == "str":
            for i, v in values.items():
                if not isinstance(v, str) or not v.strip():
                    raise bad(int(i), column, f"expected text, got {v!r}")
            continue
        if kind == "bool":
            for i, v in values.items():
                if not isinstance(v, bool | np.bool_) and str(v) not in ("True", "False"):
                    raise bad(int(i), column, f"expected True or False, got {v!r}")
            frame[column] = values.map(lambda v: v if isinstance(v, bool | np.bool_) else v == "True").astype(bool)
            continue
        numbers = pd.to_numeric(values, errors="coerce")
        for i, (raw, number) in enumerate(zip(values, numbers, strict=True)):
            if isinstance(raw, bool | np.bool_) or (pd.isna(number) and not pd.isna(raw)):
                raise bad(int(frame.index[i]), column, f"expected a number, got {raw!r}")
            if kind != "float" and not math.isfinite(number):
                raise bad(int(frame.index[i]), column, f"expected a finite number, got {raw!r}")
            if kind == "int" and number != int(number):
                raise bad(int(frame.index[i]), column, f"expected a whole number, got {raw!r}")
        frame[column] = numbers.astype("int64") if kind == "int" else numbers.astype(float)
    for column in unique:
        if column in frame.columns:
            repeated = frame[column].duplicated()
            if repeated.any():
                i = int(np.flatnonzero(repeated.to_numpy())[0])
                value = frame[column].iloc[i]
                raise bad(i, column, f"{value.item() if isinstance(value, np.generic) else value!r} appears twice")
    return frame


# ----------------------------------------------------------------------------- torch checkpoints
def torch_load_plain(path: str | Path, map_location: Any = "cpu") -> Any:
    """``torch.load`` with ``weights_only=True`` (tensors and plain values only). A device this machine lacks,
    a file that holds code, and a damaged file are three different one-line ``UserError``s: a missing GPU is
    never blamed on a good file, and a refused file is never met with advice to load it unsafely."""
    import re
    import zipfile

    import torch

    from supernet.device import check_device

    check_device(map_location)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        named = re.search(r"GLOBAL (\S+)", str(exc))
        if named:  # the pickle calls or builds something beyond tensors and plain values
            raise UserError(
                f"{path}: refused to load: it holds code ({named.group(1)}), not only weights; moga loads checkpoints of "
                "plain tensors and values only, so this file was not written by moga or was altered"
            ) from None
        # never torch's advice to retry with weights_only=False: only the reason itself
        reasons = [ln.strip() for ln in str(exc).splitlines() if ln.strip() and "weights_only" not in ln and "file an issue" not in ln]
        reason = reasons[-1] if reasons else type(exc).__name__
        raise UserError(f"{path}: corrupt or truncated checkpoint ({reason}); delete it or restore a good copy") from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as exc:
        raise UserError(f"{path}: corrupt or truncated checkpoint ({_first_line(exc)}); delete it or restore a good copy") from None


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
