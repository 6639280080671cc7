"""Reading a Pareto front back: filter it, find the knee, the best model under latency budgets.

On a benchmarked space the front also carries ``true_accuracy`` and ``regret`` (``moga.truefront``); they are
shown, and ``regret_summary`` gives the median regret of the front and the knee's.

The search's own estimate is the ``accuracy`` column (%), or ``neg_loss`` (minus the supernet's validation loss,
larger is better) when the supernet scored paths that way (``score_column``): the knee, the best model under a
budget and sorting use whichever the front has; ``--min-accuracy`` needs a true ``accuracy`` column.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from moga.objectives import ESTIMATES
from supernet.errors import UserError
from supernet.readers import ColumnKind, read_csv_checked

# what each column of pareto.csv holds (``float``: NaN means "unknown", e.g. no ground truth for a network)
FRONT_COLUMNS: dict[str, ColumnKind] = {
    "id": "int",
    "arch": "str",
    "accuracy": "finite",
    "neg_loss": "finite",
    "params": "finite",
    "macs": "finite",
    "generation": "int",
    "rank": "int",
    "crowding": "float",
    "feasible": "bool",
    "true_accuracy": "float",
    "regret": "float",
    "latency_ms*": "finite",  # latency_ms, or latency_ms:<table> for each table
}


def read_front(path: str | Path) -> pd.DataFrame:
    """``pareto.csv`` itself, or a run directory / search directory holding one; every row is checked (a
    garbage row, a NaN latency, an id given twice: one ``UserError`` naming file, row and column)."""
    path = Path(path)
    if path.is_file() and path.suffix != ".csv":
        hint = "; it looks like an experiment config: give its run directory" if path.suffix in (".yaml", ".yml") else ""
        raise UserError(f"{path}: not a pareto.csv (give a run directory, its search/ directory or the CSV itself){hint}")
    for candidate in (path, path / "pareto.csv", path / "search" / "pareto.csv"):
        if candidate.is_file():
            return read_csv_checked(candidate, FRONT_COLUMNS, required=("id", "arch"), unique=("id",), what="Pareto front")
    raise UserError(f"no pareto.csv at {path} (give a run directory, its search/ directory or the CSV itself)")


def latency_column(front: pd.DataFrame) -> str | None:
    return "latency_ms" if "latency_ms" in front else next((c for c in front if c.startswith("latency_ms")), None)


def score_column(front: pd.DataFrame) -> str | None:
    """The column of the search's own estimate, larger is better: ``accuracy`` (%) or ``neg_loss`` (minus the
    validation loss, ``supernet.eval.score: neg_loss``); None for a search without an accuracy objective."""
    return next((c for c in ESTIMATES if c in front), None)


def two_d_front(front: pd.DataFrame, x: str, y: str | None = None) -> list:
    """Row labels of the models non-dominated in (``y`` max, ``x`` min) alone, by increasing ``x``: the ones a
    user picking by accuracy and latency chooses from (a front of more objectives also holds models that are
    there only for, e.g., their parameter count). ``y``: default ``score_column``."""
    y = y or score_column(front)
    data = front[[x, y]].dropna().sort_values([x, y], ascending=[True, False])
    best, keep = -np.inf, []
    for idx, acc in data[y].items():  # 2-D front: accuracy strictly increasing with cost
        if acc > best:
            keep.append(idx)
            best = acc
    return keep


def knee_index(front: pd.DataFrame, x: str, y: str | None = None) -> int | None:
    """Row label of the knee of the accuracy-vs-cost trade-off: on the 2-D non-dominated subset, the point
    farthest from the straight line joining its two extremes (in normalised units). ``y``: default ``score_column``."""
    y = y or score_column(front)
    data = front[[x, y]].dropna()
    keep = two_d_front(front, x, y)
    if len(keep) < 3:
        return keep[-1] if keep else None
    pts = data.loc[keep].to_numpy(float)
    pts = (pts - pts.min(0)) / np.maximum(np.ptp(pts, 0), 1e-12)
    a, b = pts[0], pts[-1]
    d = b - a
    dist = np.abs(d[0] * (pts[:, 1] - a[1]) - d[1] * (pts[:, 0] - a[0])) / np.linalg.norm(d)
    return keep[int(np.argmax(dist))]


def best_under(front: pd.DataFrame, x: str, budgets: list[float], y: str | None = None) -> dict[float, int | None]:
    """For each budget, the row label with the highest ``y`` (default ``score_column``: accuracy or neg_loss) whose
    ``x`` is within it."""
    y = y or score_column(front)
    out: dict[float, int | None] = {}
    for budget in budgets:
        ok = front[front[x] <= budget]
        out[budget] = None if ok.empty else int(ok[y].idxmax())
    return out


def default_budgets(front: pd.DataFrame, x: str) -> list[float]:
    lo, hi = float(front[x].min()), float(front[x].max())
    return [round(lo + q * (hi - lo), 3) for q in (0.25, 0.5, 0.75)] if hi > lo else [hi]


def annotate(front: pd.DataFrame, budgets: list[float] | None = None) -> tuple[pd.DataFrame, list[float]]:
    """Add a ``mark`` column: ``knee`` and ``best<=B`` for each latency budget B."""
    x = latency_column(front) or ("macs" if "macs" in front else None)
    front = front.copy()
    front["mark"] = ""
    if x is None or front.empty or score_column(front) is None:  # a search without accuracy: no trade-off to mark
        return front, []
    budgets = budgets or default_budgets(front, x)
    knee = knee_index(front, x)
    if knee is not None:
        front.loc[knee, "mark"] = "knee"
    for budget, idx in best_under(front, x, budgets).items():
        if idx is not None:
            front.loc[idx, "mark"] = (front.loc[idx, "mark"] + f" best<={budget:g}").strip()
    return front, budgets


def filter_front(front: pd.DataFrame, max_latency: float | None, min_accuracy: float | None, sort: str | None) -> pd.DataFrame:
    x = latency_column(front)
    if max_latency is not None:
        if x is None:
            raise UserError("this front has no latency column, so --max-latency cannot apply")
        front = front[front[x] <= max_latency]
    if min_accuracy is not None:
        if "accuracy" not in front and score_column(front) is not None:
            raise UserError(
                f"this front has no accuracy column (its search scored networks by {score_column(front)}, "
                f"{ESTIMATES[str(score_column(front))]}), so --min-accuracy cannot apply"
            )
        if "accuracy" not in front:
            raise UserError("this front has no accuracy column (its search had no accuracy objective), so --min-accuracy cannot apply")
        front = front[front["accuracy"] >= min_accuracy]
    if sort:
        if sort not in front:
            raise UserError(f"cannot sort by {sort!r}: columns are {', '.join(front.columns)}")
        front = front.sort_values(sort, ascending=sort not in ("accuracy", "neg_loss", "params"))
    return front


def format_front(front: pd.DataFrame) -> str:
    show = front.copy()
    if "params" in show:
        show["params"] = (show["params"] / 1e6).map("{:.2f}M".format)
    if "macs" in show:
        show["macs"] = (show["macs"] / 1e6).map("{:.1f}M".format)
    for col in show:
        if col.startswith("latency_ms"):
            show[col] = show[col].map("{:.3f}".format)
        elif col in ("accuracy", "true_accuracy", "regret"):
            show[col] = show[col].map("{:.2f}".format)
        elif col == "neg_loss":
            show[col] = show[col].map("{:.4f}".format)
    lat = [c for c in show if c.startswith("latency_ms")]
    cols = [c for c in ["id", "accuracy", "neg_loss", "true_accuracy", "regret", *lat, "params", "macs", "mark", "arch"] if c in show]
    return show[cols].to_string(index=False)


def regret_summary(front: pd.DataFrame) -> str | None:
    """One line on a front with ground truth: median regret over its models and the knee's (None without)."""
    if "regret" not in front or front["regret"].dropna().empty:
        return None
    line = f"ground truth: median regret {front['regret'].median():.2f} pp over {len(front)} models"
    x, y = latency_column(front), score_column(front)
    if x is not None and y is not None:
        sub = front.loc[two_d_front(front, x, y)]
        line += f" ({sub['regret'].median():.2f} pp over the {len(sub)} on the {y}-latency front)"
    knee = front[front["mark"].str.contains("knee")] if "mark" in front else front.iloc[:0]
    if len(knee):
        k = knee.iloc[0]
        line += f", knee (id {k['id']}) {k['regret']:.2f} pp at true accuracy {k['true_accuracy']:.2f} %"
    return line
