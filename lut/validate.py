"""Does the table predict whole networks? Measure random networks twice, calibrate, report.

``validate`` times N random networks of the table's space end to end in two interleaved passes (the
second pass is the noise ceiling: how well two measurements of the same networks agree), fits
``measured = slope * raw + intercept`` on a calibration subset and reports, on the held-out networks,
MAPE, the share within ±5% / ±10% and Kendall's τ — raw and calibrated — next to τ between the passes.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from lut.measure import Backend, MeasureProtocol, measure, network_job, robust_median
from lut.table import Calibration, LatencyTable
from supernet.arch import Arch
from supernet.errors import UserError
from supernet.io import atomic_write_bytes, atomic_write_text, write_json
from supernet.space import SearchSpace

# per pass: three short rounds rather than one long one, so one disturbed round is outvoted
VALIDATE_PROTOCOL = MeasureProtocol(warmup=10, runs=10, rounds=3)


def kendall_tau(x: np.ndarray | list[float], y: np.ndarray | list[float]) -> float:
    """Kendall's τ-b (ties in either variable handled): ``scipy.stats.kendalltau``, O(n log n).

    NaN when it is undefined: fewer than two values, or either variable constant (no warning then).
    """
    a, b = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError("kendall_tau needs two 1-D arrays of the same length")
    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    if len(a) == 2:  # one pair, concordant or not (scipy's p-value divides by n - 2)
        return float(np.sign(a[1] - a[0]) * np.sign(b[1] - b[0]))
    from scipy.stats import kendalltau  # imported here: scipy.stats costs ~0.3 s, most commands never need it

    return float(kendalltau(a, b, variant="b", method="asymptotic")[0])


def fit_calibration(raw: np.ndarray, measured: np.ndarray) -> tuple[float, float]:
    """Least-squares line ``measured ≈ slope * raw + intercept``."""
    raw, measured = np.asarray(raw, dtype=np.float64), np.asarray(measured, dtype=np.float64)
    if len(raw) < 2 or np.ptp(raw) == 0:
        raise UserError("calibration needs at least two networks with different predicted latency")
    slope, intercept = np.polyfit(raw, measured, 1)
    if slope <= 0:
        raise UserError(f"calibration fit has a non-positive slope ({slope:.3g}): measurements do not follow the table")
    return float(slope), float(intercept)


def accuracy(pred: np.ndarray, measured: np.ndarray) -> dict[str, float]:
    """MAPE (%), share within ±5% / ±10% (%), Kendall τ of prediction vs measurement."""
    rel = np.abs(np.asarray(pred) / np.asarray(measured) - 1)
    return {
        "mape": float(100 * rel.mean()),
        "within_5": float(100 * (rel <= 0.05).mean()),
        "within_10": float(100 * (rel <= 0.10).mean()),
        "tau": kendall_tau(pred, measured),
    }


def random_archs(space: SearchSpace, n: int, seed: int) -> list[Arch]:
    """``n`` distinct random architectures (the space is far larger than any n asked for)."""
    rng = np.random.default_rng(seed)
    archs: dict[tuple[int, ...], Arch] = {}
    for _ in range(100 * n):
        a = Arch.random(space, rng)
        archs.setdefault(a.genes, a)
        if len(archs) == n:
            break
    return list(archs.values())


def measure_networks(
    archs: list[Arch], backend: Backend, protocol: MeasureProtocol, batch: int = 1, progress: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Latency (ms) of each network in two passes of ``protocol.rounds`` rounds each.

    Rounds alternate pass 1, pass 2, pass 1, ... (each visiting all networks), so a drift of the machine
    affects both passes alike; a pass's value is the median of its per-round medians.
    """
    jobs = [network_job(a, batch) for a in archs]
    both = MeasureProtocol(protocol.warmup, protocol.runs, 2 * protocol.rounds, tolerance=math.inf, extra_rounds=0, seed=protocol.seed)
    samples = measure(jobs, backend, both, progress=progress, desc="networks")
    passes = [np.array([robust_median(samples[j.key][p::2]) for j in jobs]) for p in (0, 1)]
    return passes[0], passes[1]


@dataclass(frozen=True)
class Report:
    rows: list[dict[str, Any]]  # arch, raw_pred_ms, pred_ms, measured_ms, measured2_ms, split
    calibration: Calibration
    held_out: dict[str, dict[str, float]]  # raw / calibrated -> accuracy(); noise -> tau between passes

    def summary(self) -> str:
        n = sum(r["split"] == "held_out" for r in self.rows)
        lines = [f"held-out networks: {n}   calibration: predicted = {self.calibration.describe()}"]
        for name in ("raw", "calibrated"):
            m = self.held_out[name]
            lines.append(
                f"  {name:<10} MAPE {m['mape']:5.2f}%   within ±5% {m['within_5']:5.1f}%   within ±10% {m['within_10']:5.1f}%   τ {m['tau']:.3f}"
            )
        if "noise" in self.held_out:
            z = self.held_out["noise"]
            lines.append(
                f"  noise      pass 2 vs pass 1: MAPE {z['pass2_mape']:5.2f}%   within ±5% {z['pass2_within_5']:5.1f}%   τ {z['tau']:.3f}"
            )
        return "\n".join(lines)


def analyse(archs: list[Arch], raw: np.ndarray, m1: np.ndarray, m2: np.ndarray | None, calib: int) -> Report:
    """Fit the calibration on the first ``calib`` networks, score the rest."""
    n = len(archs)
    if not 2 <= calib < n:
        raise UserError(f"need at least 2 calibration networks and at least 1 held out; got {calib} of {n}")
    slope, intercept = fit_calibration(raw[:calib], m1[:calib])
    pred = slope * raw + intercept
    held = slice(calib, n)
    scores = {"raw": accuracy(raw[held], m1[held]), "calibrated": accuracy(pred[held], m1[held])}
    if m2 is not None:
        scores["noise"] = {"tau": kendall_tau(m1[held], m2[held]), **{f"pass2_{k}": v for k, v in accuracy(m2[held], m1[held]).items()}}
    info: dict[str, Any] = {
        "method": "least squares of measured vs raw predicted (sum of block medians)",
        "held_out": n - calib,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **{f"{k}_{name}": round(v, 4) for name, m in scores.items() for k, v in m.items()},
    }
    rows = [
        {
            "arch": str(a),
            "raw_pred_ms": round(float(raw[i]), 5),
            "pred_ms": round(float(pred[i]), 5),
            "measured_ms": round(float(m1[i]), 5),
            "measured2_ms": "" if m2 is None else round(float(m2[i]), 5),
            "split": "calibration" if i < calib else "held_out",
        }
        for i, a in enumerate(archs)
    ]
    return Report(rows, Calibration(slope, intercept, calib, info), scores)


def validate(
    table: LatencyTable,
    space: SearchSpace,
    backend: Backend,
    nets: int,
    calib: int | None = None,
    seed: int = 0,
    protocol: MeasureProtocol | None = None,
    progress: bool = True,
) -> tuple[LatencyTable, Report]:
    """Measure ``nets`` random networks, calibrate on ``calib`` of them (default 20%, at least 5)."""
    calib = calib if calib is not None else max(5, round(0.2 * nets))
    if nets < calib + 1:
        raise UserError(f"--nets {nets} leaves no held-out network after {calib} calibration networks")
    predictor = table.predictor(space)
    archs = random_archs(space, nets, seed)
    raw = predictor.raw_genomes(np.stack([a.genome for a in archs]))
    m1, m2 = measure_networks(archs, backend, protocol or VALIDATE_PROTOCOL, table.header["batch"], progress)
    report = analyse(archs, raw, m1, m2, calib)
    return table.with_calibration(report.calibration), report


def validate_measured(table: LatencyTable, space: SearchSpace, path: str | Path, calib: int | None = None) -> tuple[LatencyTable, Report]:
    """Calibrate from whole-network timings measured elsewhere: CSV arch, measured_ms[, measured2_ms]."""
    path = Path(path)
    try:
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise UserError(f"{path}: not a readable CSV ({exc})") from None
    if not rows or "arch" not in rows[0] or "measured_ms" not in rows[0]:
        raise UserError(f"{path}: expected columns arch, measured_ms[, measured2_ms] and at least one row")
    archs, m1, m2 = [], [], []
    for line, row in enumerate(rows, start=2):
        try:
            archs.append(Arch.parse(space, row.get("arch") or ""))
        except UserError as exc:
            raise UserError(f"{path}:{line}: {exc}") from None
        for col, out in (("measured_ms", m1), ("measured2_ms", m2)):
            text = (row.get(col) or "").strip()
            if col == "measured2_ms" and not text:
                continue
            try:
                v = float(text)
            except ValueError:
                raise UserError(f"{path}:{line}: non-numeric {col} {text!r}") from None
            if not v > 0:
                raise UserError(f"{path}:{line}: {col} must be positive, got {text!r}")
            out.append(v)
    second = np.array(m2) if len(m2) == len(m1) else None
    raw = table.predictor(space).raw_genomes(np.stack([a.genome for a in archs]))
    calib = calib if calib is not None else max(5, round(0.2 * len(archs)))
    report = analyse(archs, raw, np.array(m1), second, calib)
    return table.with_calibration(report.calibration), report


def write_report(report: Report, out_dir: str | Path, title: str = "") -> dict[str, Path]:
    """``validation.csv``, ``validation.png`` (predicted vs measured) and ``validation.json`` (figures)."""
    out = Path(out_dir)
    cols = ["arch", "raw_pred_ms", "pred_ms", "measured_ms", "measured2_ms", "split"]
    lines = [",".join(cols)] + [",".join(str(r[c]) for c in cols) for r in report.rows]
    atomic_write_text(out / "validation.csv", "\n".join(lines) + "\n")
    write_json(out / "validation.json", {"calibration": report.calibration.to_json(), "held_out": report.held_out})
    atomic_write_bytes(out / "validation.png", _scatter(report, title))
    return {"csv": out / "validation.csv", "png": out / "validation.png", "json": out / "validation.json"}


def _scatter(report: Report, title: str) -> bytes:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    meas = np.array([r["measured_ms"] for r in report.rows])
    fig, ax = plt.subplots(figsize=(6, 6), dpi=110)
    lo, hi = meas.min() * 0.85, meas.max() * 1.15
    line = np.array([lo, hi])
    ax.plot(line, line, "k-", lw=1, label="y = x")
    ax.fill_between(line, line * 0.9, line * 1.1, color="0.9", label="±10%")
    ax.fill_between(line, line * 0.95, line * 1.05, color="0.8", label="±5%")
    for split, marker in (("held_out", "o"), ("calibration", "s")):
        sel = [r for r in report.rows if r["split"] == split]
        m = [r["measured_ms"] for r in sel]
        ax.scatter(m, [r["raw_pred_ms"] for r in sel], s=12, marker=marker, c="tab:orange", alpha=0.6, label=f"raw sum ({split})")
        ax.scatter(m, [r["pred_ms"] for r in sel], s=12, marker=marker, c="tab:blue", alpha=0.8, label=f"calibrated ({split})")
    c = report.held_out["calibrated"]
    ax.set(xlim=(lo, hi), ylim=(lo, hi), xlabel="measured latency (ms)", ylabel="predicted latency (ms)")
    ax.set_title(
        f"{title}\nheld out: MAPE {c['mape']:.2f}%, ±5% {c['within_5']:.0f}%, ±10% {c['within_10']:.0f}%, τ {c['tau']:.3f}", fontsize=9
    )
    ax.legend(fontsize=7, loc="upper left")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()
