"""The run report (``moga report``): the page of a tiny run parsed back with ``html.parser`` and checked for
structure (sections in order, results first, collapsed header/spec/config), for clean cells (no NaN, None or
Python dict repr) and for being one small self-contained file.

The tiny run (``tests/tiny_experiment.py``) goes through every stage (latency table with whole-network
validation, supernet, search), then one retrain and a rank correlation of three models, a few optimizer steps each.
A second run on NAS-Bench-Macro reads accuracies from the benchmark table, so its front carries true accuracy
and regret.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from moga.cli import main
from moga.report import render_report
from moga.report_format import DASH, duration, interval, number, scaled, words
from tests.tiny_experiment import make_image_folder, write_experiment

SECTIONS = ["results", "costs", "supernet", "tables", "retrained", "rankcorr", "config"]


@dataclass
class Table:
    headers: list[str] = field(default_factory=list)
    cells: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)


class Page(HTMLParser):
    """What the checks need: sections in order, tables with their cells, ``details`` and where text sits."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.sections: list[str] = []
        self.tables: list[tuple[str, Table]] = []  # (section id, table)
        self.summaries: list[str] = []
        self.pre_in_details: list[bool] = []
        self.images: list[str] = []
        self.tags: set[str] = set()
        self.links: list[str] = []
        self._stack: list[str] = []
        self._cell: list[str] | None = None
        self._details = 0
        self._summary: list[str] | None = None
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.add(tag)
        if tag in ("img", "script", "link", "iframe"):
            self.links.append(a.get("src") or a.get("href") or "")
        if tag == "img":
            self.images.append(a.get("src") or "")
        if tag == "section":
            self.sections.append(a.get("id") or "")
        elif tag == "table":
            self.tables.append((self.sections[-1] if self.sections else "", Table()))
        elif tag == "tr" and self.tables:
            self.tables[-1][1].rows.append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "details":
            self._details += 1
        elif tag == "summary":
            self._summary = []
        elif tag == "pre":
            self.pre_in_details.append(self._details > 0)
        if tag not in ("img", "meta", "br"):
            self._stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            text = " ".join("".join(self._cell).split())
            table = self.tables[-1][1]
            table.cells.append(text)
            table.rows[-1].append(text)
            if tag == "th" and "thead" in self._stack:
                table.headers.append(text)
            self._cell = None
        elif tag == "details":
            self._details -= 1
        elif tag == "summary" and self._summary is not None:
            self.summaries.append("".join(self._summary).strip())
            self._summary = None
        if self._stack and self._stack[-1] == tag:
            self._stack.pop()

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        if self._summary is not None:
            self._summary.append(data)

    def section_tables(self, section: str) -> list[Table]:
        return [t for s, t in self.tables if s == section]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("report")
    run = root / "run"
    exp = write_experiment(
        root,
        run,
        lut={"tables": {"cpu": {"backend": "fake"}}, "validate_nets": 6},
        supernet={"steps": 4, "checkpoint_every": 2},
        search={"population": 8, "generations": 3},
    )
    assert main(["run", str(exp), "--no-progress"]) == 0
    tiny = ["retrain.max_steps=1", "retrain.epochs=1"]
    assert main(["retrain", str(exp), "--pick", "0", "--no-progress", *tiny]) == 0
    assert main(["rank-corr", str(exp), "--models", "3", "--resamples", "50", "--no-progress", *tiny]) == 0
    assert main(["report", str(run)]) == 0
    return run


def test_report_sections_in_order_results_first(tiny_run):
    page = Page((tiny_run / "report.html").read_text())
    assert page.sections == SECTIONS
    results = page.section_tables("results")
    picks = results[0]
    assert picks.headers[:3] == ["pick", "id", "accuracy (%)"] and "latency cpu (ms)" in picks.headers
    assert {"params", "MACs"} <= set(picks.headers)
    main_rows = [row for row in picks.rows[1:] if len(row) == len(picks.headers)]
    notes = [row[0] for row in picks.rows[1:] if len(row) == 1]  # under each pick: its architecture and command
    assert len(main_rows) == len(notes) >= 1
    roles = " · ".join(row[0] for row in main_rows)
    assert "knee" in roles and "fastest" in roles and "most accurate" in roles and "best ≤" in roles
    front = pd.read_csv(tiny_run / "search" / "pareto.csv").set_index("id")
    for row, note in zip(main_rows, notes, strict=True):
        config, pick = re.search(r"moga retrain (\S+) --pick (\d+)", note).groups()
        assert config == str(tiny_run / "config.yaml") and Path(config).is_file()
        assert pick == row[1] and note.startswith(front.loc[int(pick), "arch"])
    assert any("retrained: test accuracy" in c for c in picks.cells)  # row 0 was retrained
    text = (tiny_run / "report.html").read_text()
    assert "architectures evaluated" in text and "hypervolume reached" in text
    evaluated = len(pd.read_csv(tiny_run / "search" / "history.csv"))
    assert re.search(rf'<div class="v">{evaluated}</div>', text)


def test_report_cells_are_clean(tiny_run):
    page = Page((tiny_run / "report.html").read_text())
    cells = [c for _, t in page.tables for c in t.cells]
    assert len(cells) > 100
    bad = [c for c in cells if re.search(r"\b(nan|NaN|None|null|inf)\b", c) or re.search(r"[{}]|\[\s*'|':", c)]
    assert bad == []
    costs = page.section_tables("costs")[0]
    assert costs.headers == ["stage", "status", "wall time", "what it did", "files"]
    assert [row[0] for row in costs.rows[1:]] == ["lut", "supernet", "search", "retrain", "rank-corr"]
    assert "table cpu: 15 entries (fake 1, 1 thread(s), batch 1)" in costs.cells and any("path-images/s" in c for c in costs.cells)


def test_report_supernet_and_latency_sections(tiny_run):
    page = Page((tiny_run / "report.html").read_text())
    heat = next(t for t in page.section_tables("supernet") if t.headers and t.headers[0] == "layer")
    assert heat.headers == ["layer", "k3e2", "k3e2se", "k5e2", "k5e2se", "skip", "spread"]
    assert [row[0] for row in heat.rows[1:]] == ["1", "2", "3"]
    assert heat.rows[2][5] == DASH  # the stride-2 layer offers no skip
    text = (tiny_run / "report.html").read_text()
    assert "Strictly fair" in text and "random-path accuracy" in text
    lut_tables = page.section_tables("tables")
    assert any(t.headers and t.headers[0] == "held-out networks" for t in lut_tables)  # validated: its figures
    assert "predicted = " in " ".join(c for t in lut_tables for c in t.cells)


def test_report_is_one_small_file_with_the_detail_collapsed(tiny_run):
    text = (tiny_run / "report.html").read_text()
    page = Page(text)
    assert len(text.encode()) < 600_000
    assert page.images and all(src.startswith("data:image/png;base64,") for src in page.images)
    assert all(src.startswith("data:") for src in page.links) and "script" not in page.tags
    assert not re.search(r"(src|href)=\"https?:", text)
    assert page.pre_in_details and all(page.pre_in_details)  # header, space spec and config: never inline
    assert "Full header of lut/cpu.json" in page.summaries
    assert "Space spec the table was measured for" in page.summaries
    assert "Resolved config (config.yaml)" in page.summaries
    assert render_report(tiny_run) == text  # a pure function of the run directory


def test_report_of_a_benchmark_space_shows_true_accuracy_and_regret(tmp_path):
    make_image_folder(tmp_path / "data", classes=tuple(f"c{i}" for i in range(10)), train=1, val=1)
    space = {"name": "nasbench_macro", "resolution": 32, "num_classes": 10, "width_mult": 1.0, "variant": "imagenet"}
    exp = write_experiment(
        tmp_path, tmp_path / "run", space=space, data={"search_val_per_class": 1},
        search={"accuracy": "benchmark", "population": 8, "generations": 2},
    )  # fmt: skip
    assert main(["run", str(exp), "--no-progress"]) == 0
    text = (tmp_path / "run" / "report.html").read_text()
    page = Page(text)
    assert page.sections == ["results", "costs", "tables", "config"]  # no supernet was trained
    picks = page.section_tables("results")[0]
    assert {"true accuracy (%)", "regret (pp)"} <= set(picks.headers)
    assert "of the true front&#39;s hypervolume" in text and "median regret" in text
    costs = page.section_tables("costs")[0]
    assert costs.rows[2][:2] == ["supernet", "skipped"]


def test_report_of_an_empty_or_missing_run(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 0
    page = Page((tmp_path / "empty" / "report.html").read_text())
    assert page.sections == ["results"] and page.tables == []
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "no run directory" in capsys.readouterr().err


def test_display_values():
    assert number(float("nan")) == DASH and number(None) == DASH and number("x") == "x"
    assert number(1234.5678, 1, unit=" %") == "1,234.6 %"
    assert scaled(2_500_000) == "2.50 M" and scaled(1732) == "1.73 k" and scaled(859_910) == "860 k"
    assert scaled(98_900_000, 1) == "99 M" and scaled(17_320) == "17.3 k" and scaled(12) == "12" and scaled(None) == DASH
    assert words({"cpu": 83, "gpu": {"a": [1, 2]}}) == "cpu 83, gpu a 1, 2" and words(None) == DASH and words(True) == "yes"
    assert duration(5.04) == "5.0 s" and duration(492) == "8 min 12 s" and duration(7500) == "2 h 05 min" and duration(math.nan) == DASH
    assert duration(0.01) == "< 0.1 s"
    assert interval({"value": 0.41234, "ci95": [0.3, None]}) == "0.412" and interval({"value": None, "ci95": [None, None]}) == DASH
    assert interval({"value": 0.5, "ci95": [0.25, 0.75]}) == "0.500 (95% CI 0.250 to 0.750)"
    from moga.report_sections import latency_label

    assert (
        latency_label("latency_ms", ["cpu", "gpu"]) == "latency cpu (ms)"
        and latency_label("latency_ms:gpu", ["cpu", "gpu"]) == "latency gpu (ms)"
    )


def test_picks_of_a_front():
    from moga.report_results import pick_roles

    front = pd.DataFrame(
        {
            "id": [0, 1, 2, 3, 4],
            "accuracy": [40.0, 60.0, 64.0, 66.0, 66.0],
            "latency_ms": [1.0, 1.2, 2.0, 3.0, 3.5],
            "macs": [1e6, 2e6, 3e6, 4e6, 5e6],
        }
    )
    roles = pick_roles(front, "latency_ms")
    assert roles == {0: ["fastest"], 1: ["knee", "best ≤ 1.62 ms"], 2: ["best ≤ 2.25 ms", "best ≤ 2.88 ms"], 3: ["most accurate"]}
    assert 4 not in roles  # as accurate as row 3, slower
    by_macs = pick_roles(front, "macs")
    assert "smallest" in by_macs[0] and any(r.endswith("M MACs") for rs in by_macs.values() for r in rs)


def test_screenshot_script_without_chromium_says_so(tmp_path):
    import subprocess

    script = Path(__file__).parents[1] / "bench" / "report_screenshot.sh"
    done = subprocess.run(["/bin/bash", str(script), str(tmp_path)], env={"PATH": str(tmp_path)}, capture_output=True, text=True)
    assert done.returncode == 0 and "no Chromium" in done.stdout


def test_rank_correlation_against_a_benchmark_shows_baselines_and_ceiling(tmp_path):
    """The benchmark mode's ``rankcorr.json`` (shape of ``moga.rankcorr.rank_correlation_benchmark``)."""
    import json

    from moga.report_sections import rank_correlations, stage_costs

    stat = {"value": 0.5, "ci95": [0.4, 0.6]}
    folder = tmp_path / "rankcorr" / "benchmark_nasbench_macro"
    folder.mkdir(parents=True)
    report = {
        "kendall_tau": stat, "spearman_rho": stat, "top_k_overlap": {"value": None, "ci95": [None, None]}, "top_k": 10,
        "bootstrap": {"resamples": 100, "seed": 0, "interval": "percentile, 95%"},
        "proxies": {"flops": {"kendall_tau": stat, "spearman_rho": stat}, "params": {"kendall_tau": stat, "spearman_rho": stat}},
        "supernet_neg_loss": {"kendall_tau": stat, "spearman_rho": stat}, "seed_to_seed_tau": {"value": 0.88, "ci95": [0.87, 0.89]},
        "benchmark": "nasbench_macro", "models": 100, "scoring": {"wall_seconds": 75.0},
        "supernet_acc": "SubnetEvaluator", "true_acc": "CIFAR-10: mean of the 3 seeds",
    }  # fmt: skip
    (folder / "rankcorr.json").write_text(json.dumps(report))
    (view,) = rank_correlations(tmp_path)
    assert view.title == "against nasbench_macro"
    assert [row[0] for row in view.stats.rows] == [
        "supernet estimate", "supernet, minus cross-entropy", "flops (no training)", "params (no training)",
        "ceiling: seed-to-seed τ of the ground truth",
    ]  # fmt: skip
    assert view.stats.rows[0] == ["supernet estimate", "0.500 (95% CI 0.400 to 0.600)", "0.500 (95% CI 0.400 to 0.600)", DASH]
    assert view.stats.rows[-1][1] == "0.880 (95% CI 0.870 to 0.890)"
    costs = stage_costs(tmp_path, {})
    assert costs is not None and costs.rows == [
        ["rank-corr", "done", "1 min 15 s", "100 networks of nasbench_macro scored by the supernet", "rankcorr/benchmark_nasbench_macro/"]
    ]


def test_rank_correlation_report_lists_every_baseline_of_the_current_format(tmp_path):
    """``rankcorr.json`` with ``baselines`` (per-path scores, counts, zero-cost proxies) and a named estimate."""
    import json

    from moga.report_sections import rank_correlations

    stat = {"value": 0.5, "ci95": [0.4, 0.6]}
    other = {"kendall_tau": {"value": 0.3, "ci95": [0.2, 0.4]}, "spearman_rho": stat, "top_k_overlap": stat, "within_depth_tau": 0.1}
    folder = tmp_path / "rankcorr" / "benchmark_nasbench_macro_heldout"
    folder.mkdir(parents=True)
    report = {
        "kendall_tau": stat, "spearman_rho": stat, "top_k_overlap": stat, "top_k": 100, "benchmark": "nasbench_macro", "models": 1000,
        "baselines": {"supernet_neg_loss": other, "flops": other, "neg_skips": other, "synflow": other},
        "estimate": {"estimate": "additive(neg_loss, 600 paths)"}, "supernet_acc": "SubnetEvaluator", "seed_to_seed_tau": stat,
    }  # fmt: skip
    (folder / "rankcorr.json").write_text(json.dumps(report))
    (view,) = rank_correlations(tmp_path)
    assert [row[0] for row in view.stats.rows] == [
        "supernet estimate", "supernet, minus cross-entropy", "flops (no training)", "minus the skips (no training)",
        "synflow (zero-cost)", "ceiling: seed-to-seed τ of the ground truth",
    ]  # fmt: skip
    assert view.stats.rows[1][1] == "0.300 (95% CI 0.200 to 0.400)" and view.stats.rows[1][3] != DASH
    assert dict(view.facts)["estimate"].startswith("additive(neg_loss, 600 paths)")
