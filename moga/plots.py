"""Plots people would rather look at than read: Pareto fronts, hypervolume, training curves."""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from supernet.io import atomic_write_bytes

LABELS = {"accuracy": "accuracy (%)", "neg_loss": "−val loss (supernet)", "params": "parameters (M)", "macs": "multiply-adds (M)"}
SCALE = {"params": 1e-6, "macs": 1e-6}


def _label(col: str) -> str:
    return LABELS.get(col, col.replace("latency_ms", "latency (ms)"))


def _values(df: pd.DataFrame, col: str) -> pd.Series:
    return df[col] * SCALE.get(col, 1.0)


def _save(fig: plt.Figure, path: str | Path) -> None:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def pareto_plot(history: pd.DataFrame, front: pd.DataFrame, x: str, y: str, path: str | Path, color: str | None = "params") -> None:
    """All evaluated architectures in grey, the front on top (coloured by ``color``), row ids labelled."""
    fig, ax = plt.subplots(figsize=(7, 5))
    ax.scatter(_values(history, x), _values(history, y), s=8, c="0.8", label="evaluated")
    ordered = front.sort_values(x)
    if color and color in front and color not in (x, y):
        sc = ax.scatter(
            _values(ordered, x), _values(ordered, y), s=36, c=_values(ordered, color), cmap="viridis", label="Pareto front", zorder=3
        )
        fig.colorbar(sc, ax=ax, label=_label(color))
    else:
        ax.scatter(_values(ordered, x), _values(ordered, y), s=36, c="C3", label="Pareto front", zorder=3)
    if "id" in ordered:
        for _, row in ordered.iterrows():
            ax.annotate(
                str(row["id"]),
                (row[x] * SCALE.get(x, 1.0), row[y] * SCALE.get(y, 1.0)),
                fontsize=7,
                xytext=(3, 3),
                textcoords="offset points",
            )
    ax.set_xlabel(_label(x))
    ax.set_ylabel(_label(y))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    _save(fig, path)


def pairwise_plot(history: pd.DataFrame, front: pd.DataFrame, columns: list[str], path: str | Path) -> None:
    pairs = list(combinations(columns, 2))
    fig, axes = plt.subplots(1, len(pairs), figsize=(4.5 * len(pairs), 4), squeeze=False)
    for ax, (a, b) in zip(axes[0], pairs, strict=True):
        ax.scatter(_values(history, a), _values(history, b), s=6, c="0.8")
        ax.scatter(_values(front, a), _values(front, b), s=18, c="C3")
        ax.set_xlabel(_label(a))
        ax.set_ylabel(_label(b))
        ax.grid(alpha=0.3)
    fig.suptitle("evaluated (grey) and Pareto front (red)")
    _save(fig, path)


def line_plot(df: pd.DataFrame, x: str, ys: list[str], path: str | Path, title: str = "") -> None:
    fig, axes = plt.subplots(1, len(ys), figsize=(4.5 * len(ys), 3.5), squeeze=False)
    for ax, y in zip(axes[0], ys, strict=True):
        data = df[[x, y]].dropna()
        ax.plot(data[x], data[y], marker="o" if len(data) < 40 else None)
        ax.set_xlabel(x)
        ax.set_ylabel(y)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    _save(fig, path)
