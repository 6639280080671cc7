"""Building tables: measure every block of a space (resumable), export blocks for a real device and import
timings measured there. Which tables an experiment names, and where they live, is ``moga.experiment``'s business."""

from __future__ import annotations

import csv
import math
import re
import time
from pathlib import Path
from typing import Any

import numpy as np

from lut.measure import BLOCK_PROTOCOL, Backend, MeasureProtocol, Samples, block_job, machine_header, measure, network_job, summarize
from lut.table import HEADER_FIELDS, SCHEMA_VERSION, Entry, LatencyTable, space_blocks, space_header
from supernet.arch import Arch
from supernet.errors import UserError
from supernet.export import OPSET, onnx_bytes
from supernet.io import atomic_write_bytes, atomic_write_text, read_json, write_json
from supernet.space import SearchSpace

# header fields that describe when/where, not what was measured: they may differ on resume
_VOLATILE = ("date",)


def make_header(space: SearchSpace, backend_info: dict[str, Any], device: str, batch: int, **extra: Any) -> dict[str, Any]:
    header = {"device": device, **backend_info, "batch": batch, "dtype": "float32", **space_header(space), **machine_header(), **extra}
    return {k: header[k] for k in HEADER_FIELDS} | {k: v for k, v in header.items() if k not in HEADER_FIELDS}


def _same_context(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Same machine, runtime, space and protocol (warm-up, runs, rounds): measurements that may be combined."""
    return all(a.get(k) == b.get(k) for k in (*HEADER_FIELDS, "clock", "protocol", "gpu_name", "torch_dtype") if k not in _VOLATILE)


def progress_path(path: Path) -> Path:
    return path.with_name(path.stem + ".progress.json")


def build_table(
    space: SearchSpace,
    backend: Backend,
    path: str | Path,
    *,
    device: str,
    batch: int = 1,
    protocol: MeasureProtocol | None = None,
    progress: bool = True,
    save_every: int = 8,
) -> tuple[LatencyTable, int]:
    """Measure every block of ``space`` into the table at ``path``; returns (table, entries measured now).

    Resumable: entries of an existing table with the same measurement context are kept, and the rounds
    of an interrupted build (``<name>.progress.json``, written atomically every ``save_every`` jobs, at
    most once a second, and on any exception) are not repeated. A different context (threads, runtime version, machine,
    protocol, ...) starts afresh.
    """
    path = Path(path)
    protocol = protocol or BLOCK_PROTOCOL
    header = make_header(space, backend.info(), device, batch, protocol=protocol.to_json())
    blocks = space_blocks(space)

    kept: dict[str, Entry] = {}
    if path.exists():
        old = LatencyTable.load(path)
        if _same_context(old.header, header):
            if all(k in old.entries for k in blocks):
                return old, 0  # up to date: the file (and its calibration) stays as it is
            kept = {k: e for k, e in old.entries.items() if k in blocks}
    samples: Samples = {}
    ppath = progress_path(path)
    if ppath.exists():
        saved = read_json(ppath)
        if isinstance(saved, dict) and _same_context(saved.get("header", {}), header):
            samples = {k: v for k, v in saved.get("samples", {}).items() if k in blocks and k not in kept}

    jobs = [block_job(s, batch) for k, s in blocks.items() if k not in kept]
    latest, calls, saved_at = [samples], [0], [time.monotonic()]

    def save_progress(done: Samples) -> None:
        write_json(ppath, {"schema_version": SCHEMA_VERSION, "header": header, "samples": done})
        saved_at[0] = time.monotonic()

    def on_progress(done: Samples) -> None:
        latest[0], calls[0] = done, calls[0] + 1
        if calls[0] % save_every == 0 and time.monotonic() - saved_at[0] > 1.0:  # at most once a second
            save_progress(done)

    try:
        done = measure(jobs, backend, protocol, samples, on_progress=on_progress, progress=progress, desc=path.stem)
    except BaseException:  # Ctrl-C or a runtime failure: keep every finished round for the next run
        if latest[0]:
            save_progress(latest[0])
        raise
    entries = kept | {j.key: Entry(**summarize(done[j.key])) for j in jobs}
    # new timings: an earlier calibration no longer describes the table, so none is carried over
    table = LatencyTable(header, {k: entries[k] for k in blocks}, None, path.name)
    table.save(path)
    ppath.unlink(missing_ok=True)
    return table, len(jobs)


# ----------------------------------------------------------------------------- real devices
def file_name(key: str) -> str:
    """A portable file name for a table key (``:`` is not allowed everywhere)."""
    return re.sub(r"[^A-Za-z0-9.x-]+", "_", key) + ".onnx"


def export_blocks(
    space: SearchSpace, out_dir: str | Path, batch: int = 1, nets: int = 0, seed: int = 0, opset: int = OPSET
) -> dict[str, int]:
    """Write every block as ONNX plus ``manifest.csv`` (key, file, input_shape) for measuring on a device.

    ``nets`` random whole networks go to ``nets/`` with ``nets/manifest.csv`` (arch, file, input_shape),
    for on-device validation of the table (``moga lut validate --measured``). Block weights are drawn from
    seed 0 so a file can be reproduced with ``Job.module()``.
    """
    out = Path(out_dir)
    rows = ["key,file,input_shape"]
    for key, shape in space_blocks(space).items():
        job = block_job(shape, batch)
        atomic_write_bytes(out / "blocks" / file_name(key), onnx_bytes(job.module(), job.input_shape, opset))
        rows.append(f"{key},blocks/{file_name(key)},{'x'.join(map(str, job.input_shape))}")
    atomic_write_text(out / "manifest.csv", "\n".join(rows) + "\n")
    if nets:
        rng = np.random.default_rng(seed)
        net_rows = ["arch,file,input_shape"]
        for i in range(nets):
            job = network_job(Arch.random(space, rng), batch)
            atomic_write_bytes(out / "nets" / f"net_{i:03d}.onnx", onnx_bytes(job.module(), job.input_shape, opset))
            net_rows.append(f"{job.key},net_{i:03d}.onnx,{'x'.join(map(str, job.input_shape))}")
        atomic_write_text(out / "nets" / "manifest.csv", "\n".join(net_rows) + "\n")
    write_json(
        out / "export.json",
        {**space_header(space), "batch": batch, "opset": opset, "dtype": "float32", "blocks": len(rows) - 1, "nets": nets},
    )
    return {"blocks": len(rows) - 1, "nets": nets}


def _listed(keys: list[str], n: int = 3) -> str:
    return ", ".join(keys[:n]) + (f" (and {len(keys) - n} more)" if len(keys) > n else "")


def _number(text: str | None, what: str, where: str, required: bool = True) -> float | None:
    if text is None or text.strip() == "":
        if required:
            raise UserError(f"{where}: missing {what}")
        return None
    try:
        v = float(text)
    except ValueError:
        raise UserError(f"{where}: non-numeric {what} {text!r}") from None
    if not math.isfinite(v):
        raise UserError(f"{where}: non-numeric {what} {text!r}")
    if v < 0:
        raise UserError(f"{where}: negative {what} {text!r}")
    return v


def import_csv(path: str | Path, space: SearchSpace, header: dict[str, Any]) -> LatencyTable:
    """A table from timings measured elsewhere: CSV columns key, median_ms[, mean_ms, std_ms, count].

    ``header`` gives device, runtime, runtime_version, provider, threads, batch (the rest is filled in).
    Absent mean/std default to the median and 0, an absent count to 0 (not reported).
    """
    path = Path(path)
    try:
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            columns = [c.strip() for c in reader.fieldnames or []]
            rows = list(reader)
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise UserError(f"{path}: not a readable CSV ({exc})") from None
    for col in ("key", "median_ms"):
        if col not in columns:
            raise UserError(f"{path}: missing column {col!r} (columns: key, median_ms[, mean_ms, std_ms, count])")
    blocks = space_blocks(space)
    entries: dict[str, Entry] = {}
    for line, raw in enumerate(rows, start=2):
        row = {(k or "").strip(): (v or "").strip() if isinstance(v, str) else v for k, v in raw.items()}
        key = row.get("key") or ""
        where = f"{path}:{line} ({key or 'no key'})"
        if not key:
            raise UserError(f"{path}:{line}: missing key")
        if key in entries:
            raise UserError(f"{path}:{line}: duplicate key {key!r}")
        median = _number(row.get("median_ms"), "median_ms", where)
        mean = _number(row.get("mean_ms"), "mean_ms", where, required=False)
        std = _number(row.get("std_ms"), "std_ms", where, required=False)
        count = _number(row.get("count"), "count", where, required=False)
        if count is not None and count != int(count):
            raise UserError(f"{where}: non-integer count {row.get('count')!r}")
        assert median is not None  # required=True
        entries[key] = Entry(median, median if mean is None else mean, 0.0 if std is None else std, 0 if count is None else int(count))
    unknown = [k for k in entries if k not in blocks]
    if unknown:
        raise UserError(
            f"{path}: {len(unknown)} key(s) are not blocks of space {space.name!r} at resolution {space.resolution}: {_listed(unknown)}"
        )
    missing = [k for k in blocks if k not in entries]
    if missing:
        raise UserError(f"{path}: {len(missing)} block(s) of space {space.name!r} have no timing: {_listed(missing)}")
    info = {k: header[k] for k in ("runtime", "runtime_version", "provider", "threads")} | {"opset": header.get("opset", OPSET)}
    full = make_header(space, info, header["device"], header["batch"])
    full |= {"cpu_model": header.get("cpu_model", "unknown"), "hostname": header.get("hostname", "unknown"), "imported_from": path.name}
    return LatencyTable(full, {k: entries[k] for k in blocks}, None, path.name)
