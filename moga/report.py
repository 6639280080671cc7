"""``report.html``: the page a user opens after ``moga run``, results first.

A pure function of the run directory: its files are read (``moga.report_results``, ``moga.report_sections``), turned into display
strings (``moga.report_format``) and rendered with the Jinja2 template ``moga/templates/report.html`` into
one self-contained page (PNGs inlined as ``data:`` URIs, no script, no network). Section order: results
(front plot, the models worth picking with their retrain commands, evaluations, hypervolume), cost per stage,
supernet (curves, fairness audit), latency tables, retrained models, rank correlation, resolved config.
Sections whose stage has not run are left out. ``bench/report_screenshot.sh`` shows it in headless Chromium.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
import yaml

from moga import report_sections as sections
from moga.report_results import results
from supernet.errors import UserError
from supernet.io import atomic_write_text

SECTION_TITLES = {
    "results": "Results",
    "costs": "Cost per stage",
    "supernet": "Supernet",
    "tables": "Latency tables",
    "retrained": "Retrained models",
    "rankcorr": "Rank correlation",
    "config": "Config",
}


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("moga", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _config(run: Path) -> tuple[dict[str, Any], str]:
    path = run / "config.yaml"
    if not path.is_file():
        return {}, ""
    text = path.read_text()
    try:
        cfg = yaml.safe_load(text)
    except yaml.YAMLError:
        cfg = None
    return (cfg if isinstance(cfg, dict) else {}), text


def _subtitle(cfg: dict[str, Any]) -> list[str]:
    space = cfg.get("space") or {}
    facts = []
    if space:
        facts.append(
            f"space {Path(str(space.get('name', '?'))).stem} at {space.get('resolution', '?')}², {space.get('num_classes', '?')} classes"
        )
    if cfg.get("data"):
        facts.append(f"data {cfg['data'].get('kind', '?')}")
    if cfg.get("device"):
        facts.append(f"device {cfg['device']}")
    if "seed" in cfg:
        facts.append(f"seed {cfg['seed']}")
    return facts


def render_report(run_dir: str | Path) -> str:
    """The report page of ``run_dir`` as HTML text."""
    run = Path(run_dir)
    if not run.is_dir():
        raise UserError(f"no run directory at {run}")
    cfg, config_text = _config(run)
    context: dict[str, Any] = {
        "results": results(run, cfg),
        "costs": sections.stage_costs(run, cfg),
        "supernet": sections.supernet(run, cfg),
        "tables": sections.latency_tables(run, cfg),
        "retrained": sections.retrained(run, cfg),
        "rankcorr": sections.rank_correlations(run),
        "config": config_text,
    }
    nav = [(key, title) for key, title in SECTION_TITLES.items() if context[key]]
    name = str(cfg.get("name") or run.name)
    return (
        _environment()
        .get_template("report.html")
        .render(name=name, run_dir=str(run), subtitle=_subtitle(cfg), nav=nav, titles=SECTION_TITLES, **context)
    )


def build_report(run_dir: str | Path) -> Path:
    """Write ``<run_dir>/report.html``; returns its path."""
    out = Path(run_dir) / "report.html"
    page = render_report(run_dir)
    atomic_write_text(out, page)
    return out
