"""``moga retrain``: train a picked architecture with the experiment's ``retrain`` recipe and describe it.

A pick is a row of the search's Pareto front (``--pick ID``, the ``id`` column of ``search/pareto.csv``),
an architecture string (``--arch``) or a published network (``--zoo``). The model lives in
``<run_dir>/retrain/<arch-id>/``, where ``arch-id`` is the first 8 hex digits of the SHA-1 of the
architecture string, so every way of naming one architecture (a row, its string, a zoo name) reaches the same
directory and a finished model is never trained twice. Beside the training files it gets:

* ``result.json``: architecture, how it was picked, test accuracy, the supernet's estimate when the search
  evaluated it, parameters, multiply-adds, predicted latency for every table of the run, onnxruntime latency
  measured here (CPU, 1 thread, batch 1, the protocol ``lut validate`` uses for whole networks), epochs,
  wall time and the hash of the config sections it depends on;
* ``model.onnx``: the trained network, checked against torch with onnxruntime (max |diff| < 1e-4);

and ``<run_dir>/retrain/summary.csv`` gets one row per retrained model (rewritten atomically).
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from moga.experiment import Experiment
from moga.front import read_front
from moga.stagelog import changed, file_record
from supernet.arch import Arch
from supernet.errors import UserError
from supernet.io import atomic_write_text, read_json, write_json
from supernet.model import count, resolve_arch
from supernet.readers import ColumnKind, read_csv_checked
from supernet.zoo import zoo_entry

if TYPE_CHECKING:
    import torch

    from supernet.distributed import DistContext

ONNX_TOLERANCE = 1e-4  # max |torch - onnxruntime| on a random input for an export to count as faithful


@dataclass(frozen=True)
class Pick:
    """The architecture to retrain and how the user named it."""

    arch: Arch
    kind: str  # row | arch | zoo
    value: str  # the row id, the string as given, the zoo name
    supernet_acc: float | None  # the search's estimate, when it evaluated this architecture

    @property
    def label(self) -> str:
        return {"row": f"row {self.value}", "zoo": f"zoo {self.value}"}.get(self.kind, "arch")


def arch_id(arch: Arch | str) -> str:
    """Short stable directory name of an architecture: ``sha1(arch string)[:8]``."""
    return hashlib.sha1(str(arch).encode()).hexdigest()[:8]


def retrain_dir(exp: Experiment, arch: Arch) -> Path:
    return exp.run / "retrain" / arch_id(arch)


# ----------------------------------------------------------------------------- resolving the pick
def _read_search_front(exp: Experiment) -> pd.DataFrame:
    path = exp.front_file
    if not path.is_file():
        raise UserError(
            f"--pick needs the search's Pareto front, but there is no {path}: run `moga search` (or `moga run`) first, or use --arch/--zoo"
        )
    return read_front(path)


def _row(front: pd.DataFrame, pick: str, path: Path) -> pd.Series:
    try:
        row_id = int(pick)
    except ValueError:
        raise UserError(f"--pick expects a row id (the id column of {path}), got {pick!r}") from None
    rows = front[front["id"] == row_id]
    if rows.empty:
        ids = sorted(int(i) for i in front["id"])
        shown = f"{ids[0]}..{ids[-1]}" if ids == list(range(ids[0], ids[-1] + 1)) else ", ".join(map(str, ids)) if ids else "none"
        raise UserError(f"row {row_id} is not in {path} (its ids: {shown}); see `moga front {path}`")
    return rows.iloc[0]


def known_supernet_acc(exp: Experiment, arch: Arch) -> float | None:
    """The search's accuracy estimate of ``arch`` (Pareto front first, then the whole history), if any;
    None when the search read its accuracies from a benchmark table (they are no supernet estimates)."""
    if exp.cfg.search.accuracy == "benchmark":
        return None
    for path in (exp.front_file, exp.search_dir / "history.csv"):
        if not path.is_file():
            continue
        table = read_csv_checked(path, {"arch": "str", "accuracy": "float"}, required=(), what="search results")
        if {"arch", "accuracy"} <= set(table.columns):
            hit = table.loc[table["arch"] == str(arch), "accuracy"]
            if not hit.empty:
                return float(hit.iloc[0])
    return None


def resolve_pick(exp: Experiment, *, row: str | None = None, arch: str | None = None, zoo: str | None = None) -> Pick:
    """Exactly one of ``row`` (a pareto.csv id), ``arch`` (a string) or ``zoo`` (a published network)."""
    if sum(v is not None for v in (row, arch, zoo)) != 1:
        raise UserError("give exactly one of --pick ROW, --arch STRING or --zoo NAME")
    if row is not None:
        found = _row(_read_search_front(exp), row, exp.front_file)
        picked = Arch.parse(exp.space, str(found["arch"]))
        known = "accuracy" in found and pd.notna(found["accuracy"]) and exp.cfg.search.accuracy != "benchmark"
        acc = float(found["accuracy"]) if known else None
        return Pick(picked, "row", str(int(found["id"])), acc)
    if zoo is not None:
        zoo_entry(zoo)  # an unknown name is a UserError listing the zoo
        picked = resolve_arch(zoo, exp.space)
        return Pick(picked, "zoo", zoo, known_supernet_acc(exp, picked))
    picked = Arch.parse(exp.space, str(arch))
    return Pick(picked, "arch", str(arch), known_supernet_acc(exp, picked))


# ----------------------------------------------------------------------------- describing the model
def predicted_latency(exp: Experiment, arch: Arch) -> dict[str, float]:
    """Latency (ms) of ``arch`` predicted by each of the run's tables that is built (at ``lut.resolution``;
    a run that never built its tables, e.g. a zoo model retrained first, has none)."""
    timed = Arch(exp.lut_space, arch.genes)
    return {name: round(table.predict(timed), 5) for name, table in exp.built_tables().items()}


def measurement_clock(exp: Experiment) -> str:
    """The clock of the run's first 1-thread onnxruntime CPU table, so measured and predicted compare."""
    for tc in exp.cfg.lut.tables.values():
        if tc.backend == "onnxruntime-cpu" and tc.threads == 1:
            return tc.clock
    return "wall"


def measured_latency(exp: Experiment, arch: Arch, progress: bool) -> tuple[float, dict[str, Any]]:
    """onnxruntime CPU latency (ms) of ``arch`` at ``lut.resolution``, 1 thread, batch 1, measured the way
    ``lut validate`` measures whole networks: two interleaved passes, each the median of per-round medians;
    the value is their mean."""
    from lut.measure import OrtBackend
    from lut.validate import VALIDATE_PROTOCOL, measure_networks

    space = exp.lut_space
    backend = OrtBackend("cpu", threads=1, clock=measurement_clock(exp))
    try:
        first, second = measure_networks([Arch(space, arch.genes)], backend, VALIDATE_PROTOCOL, batch=1, progress=progress)
    finally:
        backend.close()
    setup = {
        **backend.info(),
        "resolution": space.resolution,
        "batch": 1,
        "passes_ms": [round(float(first[0]), 5), round(float(second[0]), 5)],
    }
    return round(float(first[0] + second[0]) / 2, 5), setup


def export_checked(model: torch.nn.Module, resolution: int, path: Path) -> float:
    """Write ``model.onnx`` and return onnxruntime's max |diff| against torch; a larger one than
    ``ONNX_TOLERANCE`` is an error (the exported file would not be the network we scored)."""
    from supernet.export import export_onnx, onnx_parity

    shape = (1, 3, resolution, resolution)
    export_onnx(model, shape, path)
    diff = onnx_parity(model, path, shape)
    if not diff < ONNX_TOLERANCE:
        raise RuntimeError(f"{path}: onnxruntime output differs from torch by {diff:.3g} (> {ONNX_TOLERANCE:g})")
    return diff


def benchmark_acc(arch: Arch) -> dict[str, Any]:
    """``{"benchmark_acc": mean trained accuracy}`` when the space's benchmark covers ``arch`` (its recipe, not
    this one: 50 epochs on all of CIFAR-10 for NAS-Bench-Macro), else nothing."""
    from supernet.benchmark import load_benchmark

    if not arch.space.benchmark:
        return {}
    bench = load_benchmark(arch.space.benchmark)
    try:
        return {"benchmark_acc": round(bench.lookup(arch).mean_acc, 4)}
    except UserError:  # the space at another resolution or width than the benchmarked one
        return {}


def describe(exp: Experiment, pick: Pick, out_dir: Path, trained: dict[str, Any], progress: bool) -> dict[str, Any]:
    """``result.json`` content: the trained model's accuracy, size, latency and provenance."""
    from supernet.standalone import load_standalone

    params, macs = count(pick.arch)
    parity = export_checked(load_standalone(out_dir / "model.pt"), pick.arch.space.resolution, out_dir / "model.onnx")
    measured, setup = measured_latency(exp, pick.arch, progress)
    return {
        "arch_id": arch_id(pick.arch),
        "arch": str(pick.arch),
        "source": {"kind": pick.kind, "value": pick.value},
        "test_acc": trained["test_acc"],
        **({"test_acc_raw": trained["test_acc_raw"]} if "test_acc_raw" in trained else {}),
        "supernet_acc": pick.supernet_acc,
        **benchmark_acc(pick.arch),
        "params": params,
        "macs": macs,
        "latency_ms": predicted_latency(exp, pick.arch),
        "measured_latency_ms": measured,
        "measured_latency_setup": setup,
        "onnx_max_abs_diff": float(f"{parity:.3g}"),
        "epochs": trained["epochs"],
        "steps": trained["steps"],
        "train_wall_s": trained["train_wall_s"],
        "ema": trained["ema"],
        "init": trained["init"],
        "config_hash": exp.identity("retrain"),
    }


# ----------------------------------------------------------------------------- summary.csv
SUMMARY_FIRST = ["arch_id", "source", "test_acc", "supernet_acc", "params", "macs"]
SUMMARY_LAST = ["measured_latency_ms", "epochs", "train_wall_s", "config_hash", "arch"]


def summary_row(result: dict[str, Any]) -> dict[str, Any]:
    source = result["source"]
    row = {
        "arch_id": result["arch_id"],
        "source": source["kind"] if source["kind"] == "arch" else f"{source['kind']} {source['value']}",
        **{k: result[k] for k in SUMMARY_FIRST[2:]},
        **{f"latency_ms:{name}": ms for name, ms in result["latency_ms"].items()},
    }
    return row | {k: result[k] for k in SUMMARY_LAST} | ({"benchmark_acc": result["benchmark_acc"]} if "benchmark_acc" in result else {})


@contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """A blocking lock around a short read-modify-write: retrains of different models may run in parallel."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


SUMMARY_COLUMNS: dict[str, ColumnKind] = {
    "arch_id": "str",
    "source": "str",
    "test_acc": "finite",
    "supernet_acc": "float",
    "params": "finite",
    "macs": "finite",
    "latency_ms:*": "finite",
    "measured_latency_ms": "finite",
    "config_hash": "str",
    "arch": "str",
}


def read_summary(path: Path) -> pd.DataFrame:
    """``summary.csv``, every row checked (one ``UserError`` naming file, row and column)."""
    return read_csv_checked(
        path, SUMMARY_COLUMNS, required=("arch_id", "arch"), unique=("arch_id",), what="retrain summary", dtype={"arch_id": str}
    )


def update_summary(path: Path, result: dict[str, Any]) -> pd.DataFrame:
    """Replace (or append) this model's row of ``summary.csv``; the file is rewritten atomically."""
    with _exclusive(path.with_name(".summary.lock")):
        table = pd.DataFrame([summary_row(result)])
        if path.is_file():
            rows = read_summary(path)
            table = pd.concat([rows[rows["arch_id"] != result["arch_id"]], table], ignore_index=True)
        latency = sorted(c for c in table.columns if c.startswith("latency_ms:"))
        ordered = SUMMARY_FIRST + latency + SUMMARY_LAST
        table = table[ordered + [c for c in table.columns if c not in ordered]]
        text = io.StringIO()
        table.to_csv(text, index=False)
        atomic_write_text(path, text.getvalue())
    return table


# ----------------------------------------------------------------------------- the command
def retrain(
    exp: Experiment,
    pick: Pick,
    *,
    resume: bool = False,
    progress: bool = True,
    dist: DistContext | None = None,
    device: str | torch.device | None = None,
) -> dict[str, Any]:
    """Train ``pick`` into ``<run_dir>/retrain/<arch-id>/`` and describe it (rank 0); returns ``result.json``.

    Other torchrun ranks train alongside and return the training result only.
    """
    from supernet.distributed import DistContext
    from supernet.standalone import train_standalone

    ctx, cfg = dist or DistContext(), exp.cfg
    out = retrain_dir(exp, pick.arch)
    with exp.locked(out, ctx):
        digest = exp.identity("retrain")
        previous = out / "result.json"
        result = None
        if previous.exists():
            try:
                result = read_result(previous)
            except UserError as exc:  # not what retrain wrote: describe the model again (from model.pt or last.pt)
                if ctx.is_main:
                    print(f"retrain {arch_id(pick.arch)}: {exc}; it is written again")
                    previous.unlink()
        if result is not None and result.get("config_hash") == digest:
            problem = model_problem(out / "model.pt", result)
            if problem is None:
                if ctx.is_main:
                    update_summary(out.parent / "summary.csv", result)
                return {**result, "status": "already retrained"}
            if ctx.is_main:  # the recorded model is gone or replaced: train again, resuming from last.pt
                print(f"retrain {arch_id(pick.arch)}: {problem}; training it again from its last checkpoint")
                (out / "model.pt").unlink(missing_ok=True)
            resume = True
        predicted_latency(exp, pick.arch)  # a table that does not fit the space fails now, not after training
        if (out.parent / "summary.csv").is_file():  # and so does a damaged summary the result is to be added to
            read_summary(out.parent / "summary.csv")
        start = time.perf_counter()
        trained = train_standalone(
            pick.arch,
            exp.dataset,
            cfg.retrain,
            out,
            seed=cfg.seed,
            device=device or cfg.device,
            resume=resume,
            supernet=exp.supernet("retrain.init_from_supernet", device) if cfg.retrain.init_from_supernet else None,
            config_text=exp.config_text,
            dist=ctx,
            progress=progress,
            desc=f"retrain {arch_id(pick.arch)}",
        )
        if not ctx.is_main:
            return trained
        result = describe(exp, pick, out, trained, progress) | {"model_file": file_record(out / "model.pt")}
        result["wall_s"] = round(time.perf_counter() - start, 1)  # this invocation: training left + export + measuring
        write_json(previous, result)
        exp.write_config(out)
        update_summary(out.parent / "summary.csv", result)
    return result


def read_result(path: Path) -> dict[str, Any]:
    """A retrain's ``result.json``, checked to be one (an object with the keys a summary row needs)."""
    result = read_json(path, "retrain result")
    needed = ["arch_id", "arch", "source", "test_acc", "latency_ms", "config_hash"]
    if not isinstance(result, dict) or any(k not in result for k in needed):
        missing = [k for k in needed if not isinstance(result, dict) or k not in result]
        raise UserError(f"retrain result {path}: not a moga result.json (missing {', '.join(missing)})")
    return result


def model_problem(model: Path, result: dict[str, Any]) -> str | None:
    """Why ``model.pt`` is not the model ``result.json`` describes (missing, or other bytes), or None."""
    if not model.is_file():
        return f"{model} is missing"
    recorded = result.get("model_file")  # results written before moga recorded it: the file is trusted
    if isinstance(recorded, dict) and changed(model, recorded):
        return f"{model} is not the model its result.json describes ({model.stat().st_size} bytes, recorded {recorded.get('bytes')})"
    return None
