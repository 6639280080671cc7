"""One self-contained HTML page summarising a run: config, cost per stage, fairness audit, latency-table
validation, search progress, Pareto plots and retrained models. PNGs are embedded, so the page can be mailed."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import pandas as pd

from moga.front import annotate, format_front, read_front
from supernet.errors import UserError
from supernet.io import atomic_write_text

CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;font-size:.85em}td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}
pre{background:#f6f6f6;padding:.8em;overflow:auto;font-size:.8em}img{max-width:100%}.muted{color:#888}"""


def _img(path: Path) -> str:
    if not path.exists():
        return ""
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<p><img alt="{html.escape(path.name)}" src="data:image/png;base64,{data}"></p>'


def _table(df: pd.DataFrame) -> str:
    return df.to_html(index=False, float_format=lambda v: f"{v:.4g}", border=0)


def _section(title: str, body: str) -> str:
    return f"<h2>{html.escape(title)}</h2>\n{body}\n" if body.strip() else ""


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def build_report(run_dir: str | Path) -> Path:
    run = Path(run_dir)
    if not run.is_dir():
        raise UserError(f"no run directory at {run}")
    parts = [f"<h1>moga run: {html.escape(run.name)}</h1>"]

    stages = _json(run / "stages.json")
    if stages:
        rows = [{"stage": k, **{kk: vv for kk, vv in v.items() if kk != "hash"}} for k, v in stages.items()]
        parts.append(_section("Cost per stage", _table(pd.DataFrame(rows))))

    fairness = _json(run / "supernet" / "fairness.json")
    if fairness:
        summary = {k: v for k, v in fairness.items() if not isinstance(v, list | dict)}
        parts.append(_section("Supernet fairness audit", f"<pre>{html.escape(json.dumps(summary, indent=2))}</pre>"))
    parts.append(_section("Supernet training curves", _img(run / "supernet" / "curves.png")))

    for table in sorted((run / "lut").glob("*.json")) if (run / "lut").is_dir() else []:
        info = _json(table)
        header = info.get("header", {})
        calib = info.get("calibration") or {}
        body = f"<pre>{html.escape(json.dumps({'header': header, 'calibration': calib}, indent=2))}</pre>"
        body += "".join(_img(p) for p in sorted((run / "lut").glob(f"{table.stem}*validation*.png")))
        parts.append(_section(f"Latency table {table.stem}", body))

    search = run / "search"
    if (search / "pareto.csv").exists():
        front, _ = annotate(read_front(search))
        parts.append(
            _section(
                "Pareto front",
                f"<pre>{html.escape(format_front(front))}</pre>" + _img(search / "pareto.png") + _img(search / "pareto_pairs.png"),
            )
        )
        parts.append(_section("Search progress (hypervolume of normalised objectives)", _img(search / "hypervolume.png")))
        if (search / "hypervolume.csv").exists():
            gens = pd.read_csv(search / "hypervolume.csv")
            cols = [
                c
                for c in ("generation", "evaluated", "eval_s", "bookkeeping_s", "hypervolume", "hv_ratio", "igd", "front_size")
                if c in gens
            ]
            parts.append(_table(gens[cols]))

    summary = run / "retrain" / "summary.csv"
    if summary.exists():
        parts.append(_section("Retrained models", _table(pd.read_csv(summary))))

    if (run / "config.yaml").exists():
        parts.append(_section("Resolved config", f"<pre>{html.escape((run / 'config.yaml').read_text())}</pre>"))
    page = f"<!doctype html><html><head><meta charset='utf-8'><title>moga {html.escape(run.name)}</title><style>{CSS}</style></head><body>{''.join(parts)}</body></html>"
    out = run / "report.html"
    atomic_write_text(out, page)
    return out
