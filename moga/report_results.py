"""The report's first section: what the search found and which models to pick from it.

The front plot, key figures (architectures evaluated, front size, hypervolume reached and, on a benchmarked
space, the share of the true front's), and the models worth picking: the knee, the most accurate model under
each default latency budget (``moga.front``), the fastest and the most accurate, each with its accuracy (true
accuracy and regret on a benchmarked space), latency per table, params, MACs and the ``moga retrain``
command that trains it.

When the supernet scored paths by minus their validation loss (``supernet.eval.score: neg_loss``) the front's
estimate is ``neg_loss``, shown as "−val loss (supernet)": the picks are made by it and worded for a loss
("lowest-loss"), and no column claims to be an accuracy but ``true_accuracy``.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from moga.front import best_under, default_budgets, knee_index, latency_column, read_front, regret_summary, score_column, two_d_front
from moga.report_format import DASH, Table, count, duration, is_missing, number, png_data_uri, scaled
from moga.report_sections import latency_label, read_csv, read_stage_record, table_names
from supernet.errors import UserError

# per estimate column (``moga.front.score_column``): its header, formatter, the trade-off's name, the best pick's words
ESTIMATE_WORDS: dict[str, tuple[str, Any, str, str]] = {
    "accuracy": ("accuracy (%)", number, "accuracy", "most accurate"),
    "neg_loss": ("−val loss (supernet)", lambda v: number(v, 4), "validation-loss", "lowest-loss"),
}


@dataclass
class Results:
    cards: list[tuple[str, str, str]]  # label, value, explanation
    front_png: str | None
    picks: Table
    pick_note: str
    regret_line: str | None
    front: Table
    progress_pngs: list[str]
    generations: Table | None
    extra: list[str] = field(default_factory=list)


def retrain_command(run: Path, cfg: dict[str, Any]) -> str:
    """``moga retrain <run_dir>/config.yaml --pick``: the run's own resolved config, so the command needs no
    other file and writes into this run's ``retrain/``."""
    run_dir = cfg.get("run_dir") or (f"runs/{cfg['name']}" if cfg.get("name") else str(run))
    return f"moga retrain {shlex.quote(str(Path(run_dir) / 'config.yaml'))} --pick"


def pick_roles(front: pd.DataFrame, x: str) -> dict[int, list[str]]:
    """Row label -> why it is worth picking: the knee, the best under each default budget, the fastest, the most
    accurate (ties to the faster one; by ``neg_loss``: the lowest loss)."""
    roles: dict[int, list[str]] = {}
    y = str(score_column(front))

    def add(idx: Any, role: str) -> None:
        if idx is not None:
            roles.setdefault(int(idx), []).append(role)

    unit = "ms" if x.startswith("latency") else "M MACs"
    scale = 1.0 if x.startswith("latency") else 1e-6
    add(knee_index(front, x), "knee")
    for budget, idx in best_under(front, x, default_budgets(front, x)).items():
        add(idx, f"best ≤ {budget * scale:.3g} {unit}")
    add(front[x].idxmin(), "fastest" if x.startswith("latency") else "smallest")
    add(front.sort_values([y, x], ascending=[False, True]).index[0], ESTIMATE_WORDS[y][3])
    return roles


def _front_columns(front: pd.DataFrame, tables: list[str]) -> list[tuple[str, str, Any]]:
    """(column, header, formatter) of the front's numbers, in reading order."""
    y = score_column(front) or "accuracy"
    cols: list[tuple[str, str, Any]] = [("id", "id", count), (y, *ESTIMATE_WORDS[y][:2])]
    if "true_accuracy" in front:
        cols += [("true_accuracy", "true accuracy (%)", number), ("regret", "regret (pp)", number)]
    cols += [(c, latency_label(c, tables), lambda v: number(v, 3)) for c in front if c.startswith("latency_ms")]
    cols += [(c, h, f) for c, h, f in (("params", "params", scaled), ("macs", "MACs", scaled)) if c in front]
    return cols


def front_table(front: pd.DataFrame, tables: list[str], first: list[tuple[str, list[str]]] | None = None) -> Table:
    """The front's rows as display strings; ``first``: leading (header, cell per row) columns."""
    cols = _front_columns(front, tables)
    lead = first or []
    rows = [[cells[i] for _, cells in lead] + [fmt(row[c]) for c, _, fmt in cols] for i, (_, row) in enumerate(front.iterrows())]
    return Table([h for h, _ in lead] + [h for _, h, _ in cols], rows, set(range(len(lead), len(lead) + len(cols))))


def results(run: Path, cfg: dict[str, Any]) -> Results | None:
    search = run / "search"
    try:
        front = read_front(search)
    except UserError:
        return None
    y = score_column(front)
    if y is None:  # a search without an accuracy objective: no accuracy-latency picks to show
        return None
    _, _, trade, best = ESTIMATE_WORDS[y]
    tables = table_names(run, cfg)
    x = latency_column(front) or ("macs" if "macs" in front else None)
    history = read_csv(search / "history.csv")
    gens = read_csv(search / "hypervolume.csv")
    cards = [
        ("architectures evaluated", count(len(history)) if history is not None else DASH, "by the search, each scored on every objective"),
        ("on the Pareto front", count(len(front)), "no other evaluated model is better on every objective at once"),
    ]
    if gens is not None and len(gens):
        last = gens.iloc[-1]
        cards.append(
            (
                "hypervolume reached",
                number(last.get("hypervolume"), 3),
                f"normalised objectives, after {count(last['generation'])} generations",
            )
        )
        if "hv_ratio" in gens and not is_missing(last["hv_ratio"]):
            cards.append(
                (
                    "of the true front's hypervolume",
                    number(100 * last["hv_ratio"], 1, unit=" %"),
                    "the front re-scored with true accuracies",
                )
            )
    wall = sum(float(v.get("wall_s") or 0) for v in read_stage_record(run).values())
    if wall:
        cards.append(("wall time", duration(wall), "every stage of `moga run`"))

    command = retrain_command(run, cfg)
    retrained = _retrained_rows(run)
    picks = front_table(front.iloc[:0], tables)
    pick_note = "the front has no latency or MACs column to pick along"
    if x is not None and len(front):
        roles = pick_roles(front, x)
        chosen = front.loc[sorted(roles, key=lambda i: (front.loc[i, x], i))]
        picks = front_table(chosen, tables, [("pick", [" · ".join(roles[int(i)]) for i in chosen.index])])
        for _, row in chosen.iterrows():
            done = retrained.get(int(row["id"]))
            picks.notes.append([str(row["arch"]), f"{command} {int(row['id'])}", *([f"retrained: {done}"] if done else [])])
        budgets = ", ".join(f"{b * (1.0 if x.startswith('latency') else 1e-6):.3g}" for b in default_budgets(front, x))
        pick_note = (
            f"knee: the best {trade}-for-{'latency' if x.startswith('latency') else 'MACs'} trade-off on the front; "
            f"best ≤ B: the {best} model within B (budgets at a quarter, half and three quarters of the front's range: {budgets})."
        )
    all_rows = front.sort_values([x, "id"]) if x else front
    full = front_table(all_rows, tables)
    for _, row in all_rows.iterrows():
        full.notes.append([str(row["arch"])])
    extra = []
    if x is not None and "params" in front:
        n2 = len(two_d_front(front, x))
        extra.append(
            f"{n2} of the {len(front)} front models are on the {trade}-vs-{x.split('_')[0]} front alone; the rest are there for their parameter count."
        )
    return Results(
        cards=cards,
        front_png=png_data_uri(search / "pareto.png"),
        picks=picks,
        pick_note=pick_note,
        regret_line=regret_summary(front.assign(mark=_marks(front, x))) if x else None,
        front=full,
        progress_pngs=[u for u in (png_data_uri(search / "hypervolume.png"), png_data_uri(search / "pareto_pairs.png")) if u],
        generations=_generations(gens),
        extra=extra,
    )


def _marks(front: pd.DataFrame, x: str) -> pd.Series:
    marks = pd.Series("", index=front.index)
    knee = knee_index(front, x)
    if knee is not None:
        marks[knee] = "knee"
    return marks


def _retrained_rows(run: Path) -> dict[int, str]:
    """Front row id -> ``test accuracy 71.2 % (arch id …)`` for the picks already retrained."""
    summary = read_csv(run / "retrain" / "summary.csv")
    out: dict[int, str] = {}
    if summary is None or "source" not in summary:
        return out
    for _, row in summary.iterrows():
        kind, _, value = str(row["source"]).partition(" ")
        if kind == "row" and value.isdigit():
            out[int(value)] = f"test accuracy {number(row.get('test_acc'))} % (retrain/{row.get('arch_id', '')}/)"
    return out


def _generations(gens: pd.DataFrame | None) -> Table | None:
    if gens is None or gens.empty:
        return None
    spec = [
        ("generation", "generation", count),
        ("evaluated", "new architectures", count),
        ("total_evaluated", "evaluated so far", count),
        ("eval_s", "evaluation time", duration),
        ("bookkeeping_s", "search overhead", duration),
        ("hypervolume", "hypervolume", lambda v: number(v, 4)),
        ("hv_ratio", "hv ratio", lambda v: number(v, 3)),
        ("igd", "IGD", lambda v: number(v, 4)),
        ("front_size", "front size", count),
    ]
    spec = [s for s in spec if s[0] in gens]
    rows = [[fmt(row[c]) for c, _, fmt in spec] for _, row in gens.iterrows()]
    return Table([h for _, h, _ in spec], rows, set(range(len(spec))))
