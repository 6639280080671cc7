"""Display values for the run report: every cell a string, a missing or undefined number shown as a dash
(never ``nan`` or ``None``), nested records flattened into words (never a Python ``repr``)."""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

DASH = "–"


@dataclass
class Table:
    """A rendered table: header, rows of strings, and which columns hold numbers (right-aligned)."""

    columns: list[str]
    rows: list[list[str]]
    numeric: set[int] = field(default_factory=set)
    notes: list[list[str]] = field(default_factory=list)  # per row: extra lines (e.g. the architecture, a command)


def is_missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return math.isnan(float(value))
    except (TypeError, ValueError):
        return isinstance(value, str) and value.strip().lower() in ("", "nan", "none", "null")


def number(value: Any, digits: int = 2, scale: float = 1.0, unit: str = "") -> str:
    """``value * scale`` with ``digits`` decimals and an optional unit; a dash when missing or not a number."""
    if is_missing(value) or isinstance(value, bool):
        return DASH
    try:
        v = float(value) * scale
    except (TypeError, ValueError):
        return str(value)
    return f"{v:,.{digits}f}{unit}"


def count(value: Any) -> str:
    return number(value, 0)


def scaled(value: Any, digits: int = 2) -> str:
    """A count with a prefix: ``2.50 M``, ``17.3 k``, ``860 k`` (parameters, multiply-adds); ``digits``
    decimals below 10, one fewer below 100, none above."""
    if is_missing(value) or isinstance(value, bool):
        return DASH
    v = abs(float(value))
    scale, unit = next(((s, u) for s, u in ((1e9, " G"), (1e6, " M"), (1e3, " k")) if v >= s), (1.0, ""))
    v /= scale
    return number(value, (digits if v < 10 else max(0, digits - 1) if v < 100 else 0) if scale > 1 else 0, 1 / scale, unit)


def duration(seconds: Any) -> str:
    """``42 s``, ``8 min 12 s``, ``2 h 05 min``."""
    if is_missing(seconds):
        return DASH
    s = float(seconds)
    if s < 0.1:
        return "< 0.1 s"
    if s < 60:
        return f"{s:.1f} s" if s < 10 else f"{s:.0f} s"
    if s < 3600:
        return f"{int(s // 60)} min {int(s % 60):02d} s"
    return f"{int(s // 3600)} h {int(s % 3600 // 60):02d} min"


def words(value: Any) -> str:
    """A scalar, list or mapping as plain words: ``{'cpu': 83}`` -> ``cpu 83``."""
    if isinstance(value, Mapping):
        return ", ".join(f"{k} {words(v)}" for k, v in value.items()) or DASH
    if isinstance(value, str):
        return value or DASH
    if isinstance(value, Sequence):
        return ", ".join(words(v) for v in value) or DASH
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return number(value, 4).rstrip("0").rstrip(".") if not is_missing(value) else DASH
    return DASH if value is None else str(value)


def interval(stat: Mapping[str, Any] | None, digits: int = 3) -> str:
    """``{"value": v, "ci95": [lo, hi]}`` -> ``0.412 (95% CI 0.30 to 0.51)``; a dash when undefined."""
    if not stat or is_missing(stat.get("value")):
        return DASH
    text = number(stat["value"], digits)
    lo, hi = [*(stat.get("ci95") or []), None, None][:2]
    if not is_missing(lo) and not is_missing(hi):
        text += f" (95% CI {number(lo, digits)} to {number(hi, digits)})"
    return text


def png_data_uri(path: Path) -> str | None:
    """The PNG inlined as a ``data:`` URI (the page needs no other file), or None when there is none.

    Re-encoded with a 256-colour palette (flattened on white, no dithering): a plot keeps its look at about a
    third of matplotlib's RGBA bytes. A file PIL cannot read is inlined as it is."""
    if not path.is_file():
        return None
    data = path.read_bytes()
    try:
        with Image.open(io.BytesIO(data)) as img:
            flat = Image.alpha_composite(Image.new("RGBA", img.size, "white"), img.convert("RGBA")).convert("RGB")
        small = io.BytesIO()
        flat.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(small, "PNG", optimize=True)
        data = min(data, small.getvalue(), key=len)
    except (OSError, ValueError):
        pass
    return "data:image/png;base64," + base64.b64encode(data).decode()
