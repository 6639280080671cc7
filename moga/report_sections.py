"""The run report's sections after the results (``moga.report_results``): cost per stage, supernet, latency
tables, retrained models, rank correlation; each read from the run directory's files into display values.

Every function takes the run directory (and the resolved config as a dict) and returns what its section
shows, or None when the run has no such stage; nothing is recomputed. A missing or unreadable file leaves its
part of the page out. The page itself is ``moga/templates/report.html`` (``moga.report``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from moga.report_format import DASH, Table, count, duration, interval, is_missing, number, png_data_uri, scaled, words
from supernet.errors import UserError


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from the run directory; None when the file is missing or unreadable (the section is left out)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


# hex digests that pandas would read as numbers when they happen to be all digits ("00123456") or look like an
# exponent ("12345e678901")
TEXT_COLUMNS = {"arch_id": str, "config_hash": str}


def read_csv(path: Path) -> pd.DataFrame | None:
    try:
        return pd.read_csv(path, dtype=TEXT_COLUMNS)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError):
        return None


def read_stage_record(run: Path) -> dict[str, dict[str, Any]]:
    """``stages.json`` as ``moga run`` checks it; empty when missing or damaged (the section is left out)."""
    from moga.stagelog import read_stages

    try:
        return read_stages(run / "stages.json") if (run / "stages.json").is_file() else {}
    except UserError:
        return {}


def table_names(run: Path, cfg: dict[str, Any]) -> list[str]:
    """The experiment's latency tables, the primary (first) one first."""
    named = list((cfg.get("lut") or {}).get("tables") or {})
    found = sorted(p.stem for p in (run / "lut").glob("*.json")) if (run / "lut").is_dir() else []
    return [n for n in named if n in found] + [n for n in found if n not in named]


def latency_label(col: str, tables: list[str]) -> str:
    """``latency_ms`` -> ``latency cpu (ms)`` (the primary table), ``latency_ms:gpu`` -> ``latency gpu (ms)``."""
    name = col.partition(":")[2] or (tables[0] if tables else "")
    return f"latency {name} (ms)".replace("  ", " ")


# ----------------------------------------------------------------------------- cost per stage
STAGE_FILES = {
    "lut": "lut/",
    "supernet": "supernet/ (supernet.pt, curves.csv, fairness.json)",
    "search": "search/ (pareto.csv, history.csv, hypervolume.csv)",
}


def stage_costs(run: Path, cfg: dict[str, Any]) -> Table | None:
    stages = read_stage_record(run)
    rows = []
    for name, entry in stages.items():
        if not isinstance(entry, dict):
            continue
        if name == "search" and "supernet" not in stages and (cfg.get("search") or {}).get("accuracy") == "benchmark":
            rows.append(
                [
                    "supernet",
                    "skipped",
                    DASH,
                    "not needed: accuracies read from the space's benchmark table (search.accuracy: benchmark)",
                    DASH,
                ]
            )
        rows.append(
            [name, words(entry.get("status", DASH)), duration(entry.get("wall_s")), _stage_work(run, name, entry), _stage_files(run, name)]
        )
    summary = read_csv(run / "retrain" / "summary.csv")
    if summary is not None and len(summary):
        wall = summary["train_wall_s"].sum() if "train_wall_s" in summary else None
        rows.append(
            [
                "retrain",
                "done",
                duration(wall),
                f"{len(summary)} model(s) trained from scratch (training time)",
                "retrain/ (summary.csv, <arch id>/)",
            ]
        )
    for report in _rankcorr_reports(run):
        rows.append(["rank-corr", "done", _rankcorr_wall(report[1]), _rankcorr_work(report[1]), f"{report[0].relative_to(run)}/"])
    if not rows:
        return None
    return Table(["stage", "status", "wall time", "what it did", "files"], rows, {2})


def _stage_work(run: Path, name: str, entry: dict[str, Any]) -> str:
    if name == "lut":
        tables = entry.get("tables") or {}
        if not isinstance(tables, dict):
            return words(tables)
        return "; ".join(f"table {t}: {count(n)} entries{_measured_with(run, t)}" for t, n in tables.items())
    if name == "supernet":
        curves = read_csv(run / "supernet" / "curves.csv")
        text = f"{count(entry.get('steps'))} steps, {words(entry.get('sampler', DASH))} sampler"
        if curves is not None and "images_per_s" in curves and len(curves) > 1:
            text += f", {number(curves['images_per_s'].iloc[1:].mean(), 0)} path-images/s"
        return text
    if name == "search":
        gens = read_csv(run / "search" / "hypervolume.csv")
        text = f"{count(entry.get('evaluations'))} architectures evaluated, {count(entry.get('front_size'))} on the front"
        if gens is not None and "eval_s" in gens:
            text += f"; {len(gens)} generations, {duration(gens['eval_s'].sum())} scoring"
        return text
    known = {"hash", "status", "wall_s"}
    return "; ".join(f"{k}: {words(v)}" for k, v in entry.items() if k not in known) or DASH


def _measured_with(run: Path, table: str) -> str:
    header = (read_json(run / "lut" / f"{table}.json") or {}).get("header") or {}
    if not header.get("runtime"):
        return ""
    return f" ({header['runtime']} {header.get('runtime_version', '')}, {words(header.get('threads', DASH))} thread(s), batch {words(header.get('batch', DASH))})"


def _stage_files(run: Path, name: str) -> str:
    if name == "lut" and (run / "lut").is_dir():
        return ", ".join(str(p.relative_to(run)) for p in sorted((run / "lut").iterdir()) if p.suffix == ".json" or p.is_dir()) or "lut/"
    return STAGE_FILES.get(name, f"{name}/")


# ----------------------------------------------------------------------------- supernet
@dataclass
class Fairness:
    verdict: str
    strict: bool
    choices: list[str]
    rows: list[tuple[str, list[tuple[str, float]], str]]  # layer, (count, shade 0..1) per choice, spread


@dataclass
class Supernet:
    curves_png: str | None
    facts: list[tuple[str, str]]
    fairness: Fairness | None


def supernet(run: Path, cfg: dict[str, Any]) -> Supernet | None:
    folder = run / "supernet"
    if not folder.is_dir():
        return None
    curves = read_csv(folder / "curves.csv")
    facts: list[tuple[str, str]] = []
    if curves is not None and len(curves):
        tail = curves.tail(max(1, len(curves) // 10))
        facts += [
            ("steps", count(curves["step"].iloc[-1]) if "step" in curves else DASH),
            ("training loss (last 10 % of steps)", number(tail["loss"].mean(), 3) if "loss" in tail else DASH),
            (
                "training accuracy, paths of the step (last 10 %)",
                number(tail["train_acc"].mean(), 1, unit=" %") if "train_acc" in tail else DASH,
            ),
            ("throughput", number(curves["images_per_s"].iloc[1:].mean(), 0, unit=" path-images/s") if len(curves) > 1 else DASH),
            ("training time", duration(curves["elapsed_s"].iloc[-1]) if "elapsed_s" in curves else DASH),
        ]
    facts.append(("random-path accuracy", _random_path_accuracy(run, curves, cfg)))
    return Supernet(png_data_uri(folder / "curves.png"), facts, fairness(read_json(folder / "fairness.json")))


def _random_path_accuracy(run: Path, curves: pd.DataFrame | None, cfg: dict[str, Any]) -> str:
    """The last validation of fixed random paths during training, else the search's estimates (its first
    generation holds random paths too, but not only), else why there is none."""
    if curves is not None and "val_acc" in curves and curves["val_acc"].notna().any():
        last = curves.dropna(subset=["val_acc"]).iloc[-1]
        best = (
            f", best path {number(last['val_acc_best'], 1)} %" if "val_acc_best" in curves and not is_missing(last["val_acc_best"]) else ""
        )
        paths = (cfg.get("supernet") or {}).get("eval_paths")
        return f"{number(last['val_acc'], 1)} % mean over {paths or 'the'} random paths at step {count(last['step'])}{best}"
    history = read_csv(run / "search" / "history.csv")
    note = "not measured (supernet.eval_paths: 0)"
    if history is not None and "accuracy" in history and len(history):
        acc = history["accuracy"]
        note += (
            f"; the search's estimates over its {len(acc)} paths: median {number(acc.median(), 1)} %, "
            f"range {number(acc.min(), 1)} to {number(acc.max(), 1)} %"
        )
    return note


def fairness(audit: dict[str, Any] | None) -> Fairness | None:
    layers = (audit or {}).get("layers")
    if not isinstance(layers, list) or not layers:
        return None
    choices: list[str] = []
    for layer in layers:
        choices += [c for c in layer.get("counts", {}) if c not in choices]
    top = max((max(layer["counts"].values(), default=0) for layer in layers), default=0) or 1
    rows = []
    for layer in layers:
        counts = layer.get("counts", {})
        cells = [(count(counts[c]), counts[c] / top) if c in counts else (DASH, 0.0) for c in choices]
        rows.append((str(layer.get("layer", "")), cells, count(layer.get("spread"))))
    spread = max(int(layer.get("spread", 0)) for layer in layers)
    step = audit.get("max_step_spread")
    held = bool(audit.get("strict")) and spread <= 1
    sampler, steps = audit.get("sampler", "?"), count(audit.get("steps"))
    if held:
        verdict = f"Strictly fair: over {steps} steps of the {sampler} sampler every choice of every layer was trained equally often (within one update; largest spread in a step {count(step)})."
    else:
        verdict = (
            f"Not strictly fair ({sampler} sampler, {steps} steps): a layer's choices were trained up to {count(spread)} updates apart."
        )
    return Fairness(verdict, held, choices, rows)


# ----------------------------------------------------------------------------- latency tables
@dataclass
class LatencyTableView:
    name: str
    summary: list[tuple[str, str]]
    validation_png: str | None
    validation: Table | None
    header_json: str
    spec_json: str


def latency_tables(run: Path, cfg: dict[str, Any]) -> list[LatencyTableView]:
    return [view for name in table_names(run, cfg) if (view := latency_table(run, name)) is not None]


def latency_table(run: Path, name: str) -> LatencyTableView | None:
    data = read_json(run / "lut" / f"{name}.json")
    if data is None:
        return None
    header = dict(data.get("header") or {})
    spec = header.pop("space_spec", None)
    protocol = header.get("protocol") or {}
    calib = data.get("calibration")
    summary = [
        ("device", words(header.get("device", DASH))),
        ("runtime", f"{words(header.get('runtime', DASH))} {words(header.get('runtime_version', ''))}".strip()),
        ("provider", words(header.get("provider", DASH))),
        (
            "threads · batch · dtype",
            f"{words(header.get('threads', DASH))} · {words(header.get('batch', DASH))} · {words(header.get('dtype', DASH))}",
        ),
        ("entries", count(len(data.get("entries") or {}))),
        (
            "space",
            f"{words(header.get('space', DASH))} at {words(header.get('resolution', DASH))}², width {words(header.get('width_mult', DASH))}, {words(header.get('variant', DASH))}",
        ),
        ("protocol", ", ".join(f"{k} {words(v)}" for k, v in protocol.items()) if isinstance(protocol, dict) else words(protocol)),
        ("machine", f"{words(header.get('cpu_model', DASH))} ({words(header.get('hostname', DASH))})"),
        ("measured", words(header.get("date", DASH))),
        ("calibration", _calibration(calib)),
    ]
    folder = run / "lut" / f"{name}_validation"
    return LatencyTableView(
        name=name,
        summary=summary,
        validation_png=png_data_uri(folder / "validation.png"),
        validation=_validation(read_json(folder / "validation.json")),
        header_json=json.dumps(header, indent=2),
        spec_json=json.dumps(spec, indent=2) if spec is not None else "",
    )


def _calibration(calib: Any) -> str:
    if not isinstance(calib, dict) or is_missing(calib.get("slope")):
        return "none: a network's latency is the sum of its layers' entries"
    sign = "−" if float(calib.get("intercept", 0)) < 0 else "+"
    text = f"predicted = {number(calib['slope'], 4)} × sum {sign} {number(abs(float(calib.get('intercept', 0))), 4)} ms"
    return text + (f", fitted on {count(calib['fitted_on'])} networks" if not is_missing(calib.get("fitted_on")) else "")


def _validation(report: dict[str, Any] | None) -> Table | None:
    held = (report or {}).get("held_out")
    if not isinstance(held, dict):
        return None
    rows = []
    for name in ("raw", "calibrated"):
        m = held.get(name)
        if isinstance(m, dict):
            rows.append(
                [
                    f"{name} sum",
                    number(m.get("mape"), 2, unit=" %"),
                    number(m.get("within_5"), 1, unit=" %"),
                    number(m.get("within_10"), 1, unit=" %"),
                    number(m.get("tau"), 3),
                ]
            )
    noise = held.get("noise")
    if isinstance(noise, dict):
        rows.append(
            [
                "second pass vs first (noise)",
                number(noise.get("pass2_mape"), 2, unit=" %"),
                number(noise.get("pass2_within_5"), 1, unit=" %"),
                DASH,
                number(noise.get("tau"), 3),
            ]
        )
    return Table(["held-out networks", "MAPE", "within ±5 %", "within ±10 %", "Kendall τ"], rows, {1, 2, 3, 4}) if rows else None


# ----------------------------------------------------------------------------- retrained models, rank correlation
RETRAIN_COLUMNS = {
    "arch_id": ("arch id", str),
    "source": ("from", str),
    "test_acc": ("test accuracy (%)", number),
    "supernet_acc": ("supernet estimate (%)", number),
    "benchmark_acc": ("benchmark accuracy (%)", number),
    "params": ("params", scaled),
    "macs": ("MACs", scaled),
    "measured_latency_ms": ("measured latency (ms)", lambda v: number(v, 3)),
    "epochs": ("epochs", lambda v: number(v, 1)),
    "train_wall_s": ("training time", duration),
}


def retrained(run: Path, cfg: dict[str, Any]) -> Table | None:
    summary = read_csv(run / "retrain" / "summary.csv")
    if summary is None or summary.empty:
        return None
    tables = table_names(run, cfg)
    spec = []
    for c in RETRAIN_COLUMNS:
        if c == "measured_latency_ms":  # the tables' predictions first, then the measurement
            spec += [
                (t, f"{latency_label(t, tables)[:-5]} table (ms)", lambda v: number(v, 3)) for t in summary if t.startswith("latency_ms")
            ]
        if c in summary:
            spec.append((c, *RETRAIN_COLUMNS[c]))
    table = Table([h for _, h, _ in spec], [], {i for i, (c, _, _) in enumerate(spec) if c not in ("arch_id", "source")})
    for _, row in summary.iterrows():
        table.rows.append([DASH if is_missing(row[c]) else fmt(row[c]) for c, _, fmt in spec])
        table.notes.append([str(row["arch"])] if "arch" in summary else [])
    return table


@dataclass
class RankCorr:
    title: str
    png: str | None
    facts: list[tuple[str, str]]
    stats: Table


def _rankcorr_reports(run: Path) -> list[tuple[Path, dict[str, Any]]]:
    folder = run / "rankcorr"
    dirs = [folder, *sorted(folder.glob("benchmark_*"))] if folder.is_dir() else []
    return [(d, r) for d in dirs if (r := read_json(d / "rankcorr.json")) is not None]


def _rankcorr_wall(report: dict[str, Any]) -> str:
    scoring = report.get("scoring") or {}
    return duration(scoring.get("wall_seconds")) if scoring else DASH


def _rankcorr_work(report: dict[str, Any]) -> str:
    if report.get("benchmark"):
        return f"{count(report.get('models'))} networks of {report['benchmark']} scored by the supernet"
    return f"{count(report.get('models'))} models trained from scratch × {count(report.get('seeds', 1))} seed(s)"


BASELINE_NAMES = {
    "supernet_acc": "supernet, top-1 of each path",
    "supernet_neg_loss": "supernet, minus cross-entropy",
    "neg_skips": "minus the skips (no training)",
    "latency_ms": "latency (no training)",
}
ZERO_COST_NAMES = ("synflow", "naswot", "snip", "grad_norm")


def _baseline_label(name: str) -> str:
    return BASELINE_NAMES.get(name) or f"{name} ({'zero-cost' if name in ZERO_COST_NAMES else 'no training'})"


def _baseline_rows(report: dict[str, Any]) -> list[list[str]]:
    """The rows beside the estimate: ``baselines`` (raw per-path scores, counts, zero-cost proxies), or, in a
    ``rankcorr.json`` written before it, ``supernet_neg_loss`` and ``proxies``."""
    if isinstance(report.get("baselines"), dict):
        items = list(report["baselines"].items())
    else:
        items = [("supernet_neg_loss", report["supernet_neg_loss"])] if isinstance(report.get("supernet_neg_loss"), dict) else []
        items += list((report.get("proxies") or {}).items())
    rows = []
    for name, stats in items:
        top = interval(stats["top_k_overlap"]) if isinstance(stats.get("top_k_overlap"), dict) else DASH
        rows.append([_baseline_label(name), interval(stats.get("kendall_tau")), interval(stats.get("spearman_rho")), top])
    return rows


def _estimate_words(report: dict[str, Any]) -> str:
    what = report.get("supernet_acc", DASH)
    estimate = report.get("estimate")
    return f"{estimate['estimate']} ({what})" if isinstance(estimate, dict) and "estimate" in estimate else what


def rank_correlations(run: Path) -> list[RankCorr]:
    out = []
    for folder, report in _rankcorr_reports(run):
        bench = report.get("benchmark")
        rows = [
            [
                "supernet estimate",
                interval(report.get("kendall_tau")),
                interval(report.get("spearman_rho")),
                interval(report.get("top_k_overlap")),
            ]
        ]
        rows += _baseline_rows(report)
        if isinstance(report.get("seed_to_seed_tau"), dict):
            rows.append(["ceiling: seed-to-seed τ of the ground truth", interval(report["seed_to_seed_tau"]), DASH, DASH])
        truth = report.get("true_acc") or report.get("standalone_acc") or DASH
        facts = [
            ("models", count(report.get("models"))),
            ("estimate", words(_estimate_words(report))),
            ("ground truth", words(truth)),
            ("top-k", count(report.get("top_k"))),
        ]
        boot = report.get("bootstrap") or {}
        if boot:
            facts.append(("intervals", f"{words(boot.get('interval', DASH))} bootstrap, {count(boot.get('resamples'))} resamples"))
        out.append(
            RankCorr(
                title=f"against {bench}" if bench else "against standalone training",
                png=png_data_uri(folder / "rankcorr.png"),
                facts=facts,
                stats=Table(["ranked by", "Kendall τ", "Spearman ρ", f"top-{count(report.get('top_k'))} overlap"], rows, {1, 2, 3}),
            )
        )
    return out
