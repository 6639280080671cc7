"""Block tables published by hardware benchmarks, imported as moga tables: one table per device and metric.

A published table has one row per block and one column per device metric. Importing it needs only a
``PublishedFormat``: the device behind each column, and a key mapping (``keys``) from a moga block
(``BlockShape``) to the publisher's rows whose values sum to that block. Every block the space's shape walk can
place must map to rows that exist (else a ``UserError`` names the block); identity skips cost nothing and have
no entry. Entries carry the published value as ``median_ms`` (no spread is published: ``std_ms`` 0, ``count``
0); the header records ``device``, ``runtime``, ``provider``, ``source``, ``column`` and the ``metric`` /
``unit`` (``latency`` in ms, or ``energy`` in mJ: the entry then holds millijoules, objective ``energy:<table>``).

Shipped: HW-NAS-Bench's FBNet-space table (``assets/hw_nas_bench_fbnet/``, MIT) as ``hw-nas-bench-fbnet``.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lut.table import Entry, LatencyTable, space_blocks
from supernet.errors import UserError
from supernet.space import BlockShape, SearchSpace

ASSETS = Path(__file__).parent / "assets"


@dataclass(frozen=True)
class Column:
    """What one published column holds: where it was measured, and in which unit."""

    device: str
    runtime: str
    provider: str
    metric: str = "latency"  # latency | energy
    unit: str = "ms"


@dataclass(frozen=True)
class PublishedFormat:
    name: str
    source: str  # the publication, for the header
    key_column: str
    columns: dict[str, Column]
    keys: Callable[[BlockShape], list[str]]  # a block -> the rows it sums; ValueError: no such block published
    shipped: Path | None = None  # the copy moga ships

    def table_name(self, column: str) -> str:
        """File stem of a column's table: ``edgegpu_latency_ms`` -> ``edgegpu_latency``."""
        return column.rsplit("_", 1)[0]


def hw_nas_bench_keys(b: BlockShape) -> list[str]:
    """HW-NAS-Bench FBNet rows of one block (H, W: the block's input size). The benchmark's blocks are ReLU
    networks without squeeze-excite, with integer expansions and the expansion conv kept at e = 1."""
    hw = f"H{b.in_hw}_W{b.in_hw}"
    if b.act != "relu" or b.se_ch or (b.kind == "ir" and (b.expansion != int(b.expansion) or not b.has_expand)):
        raise ValueError("HW-NAS-Bench's blocks are ReLU, no squeeze-excite, integer expansion, expansion conv kept")
    if b.kind == "stem":
        return [f"ConvNorm_{hw}_Cin{b.in_ch}_Cout{b.out_ch}_kernel{b.kernel}_stride{b.stride}_group1"]
    if b.kind == "ir":
        return [f"ConvBlock_{hw}_Cin{b.in_ch}_Cout{b.out_ch}_exp{int(b.expansion)}_kernel{b.kernel}_stride{b.stride}_group{b.groups}"]
    if b.kind == "skip":
        return [f"Skip_{hw}_Cin{b.in_ch}_Cout{b.out_ch}_stride{b.stride}"]
    if b.kind == "head" and not b.fc_ch:  # 1x1 conv + BN + ReLU, global average pool, classifier
        return [
            f"ConvNorm_{hw}_Cin{b.in_ch}_Cout{b.mid_ch}_kernel1_stride1_group1",
            f"AvgP_H{b.in_hw}_W{b.in_hw}_Cin{b.mid_ch}_Cout{b.mid_ch}_kernel{b.in_hw}_stride1",
            f"FC_Cin{b.mid_ch}_Cout{b.out_ch}",
        ]
    raise ValueError(f"HW-NAS-Bench has no {b.kind} block of this form")


HW_NAS_BENCH = "HW-NAS-Bench (Li et al., ICLR 2021; GATECH-EIC/HW-NAS-Bench, MIT): FBNet-space lookup tables"
FORMATS: dict[str, PublishedFormat] = {
    "hw-nas-bench-fbnet": PublishedFormat(
        "hw-nas-bench-fbnet",
        HW_NAS_BENCH,
        "key",
        {
            "edgegpu_latency_ms": Column("jetson-tx2", "tensorrt", "gpu"),
            "edgegpu_energy_mJ": Column("jetson-tx2", "tensorrt", "gpu", "energy", "mJ"),
            "raspi4_latency_ms": Column("raspberry-pi-4", "tflite", "cpu"),
            "pixel3_latency_ms": Column("pixel-3", "tflite", "cpu"),
            "eyeriss_latency_ms": Column("eyeriss", "hw-nas-bench-estimate", "asic"),
            "eyeriss_energy_mJ": Column("eyeriss", "hw-nas-bench-estimate", "asic", "energy", "mJ"),
            "fpga_latency_ms": Column("fpga", "hw-nas-bench-estimate", "fpga"),
            "fpga_energy_mJ": Column("fpga", "hw-nas-bench-estimate", "fpga", "energy", "mJ"),
        },
        hw_nas_bench_keys,
        ASSETS / "hw_nas_bench_fbnet" / "hw-nas-bench-fbnet-blocks.csv",
    )
}


def get_format(name: str) -> PublishedFormat:
    if name not in FORMATS:
        raise UserError(f"unknown published table format {name!r}: moga reads {', '.join(sorted(FORMATS))}")
    return FORMATS[name]


def read_rows(path: Path, fmt: PublishedFormat) -> dict[str, dict[str, float]]:
    """key -> column -> value, for the format's columns; malformed files are user errors naming the line."""
    try:
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            missing = [c for c in (fmt.key_column, *fmt.columns) if c not in (reader.fieldnames or [])]
            if missing:
                raise UserError(f"{path}: not a {fmt.name} table, it lacks column(s) {', '.join(missing)}")
            rows: dict[str, dict[str, float]] = {}
            for line, row in enumerate(reader, start=2):
                key = row[fmt.key_column]
                if key in rows:
                    raise UserError(f"{path}:{line}: duplicate key {key!r}")
                rows[key] = {c: _value(row[c], f"{path}:{line} ({key}) column {c}") for c in fmt.columns}
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise UserError(f"{path}: not a readable CSV ({exc})") from None
    return rows


def _value(text: str | None, where: str) -> float:
    try:
        v = float(text or "")
    except ValueError:
        raise UserError(f"{where}: non-numeric value {text!r}") from None
    if not math.isfinite(v) or v < 0:
        raise UserError(f"{where}: value {text!r} is not a finite non-negative number")
    return v


def block_rows(space: SearchSpace, fmt: PublishedFormat, rows: dict[str, Any], where: str) -> dict[str, list[str]]:
    """moga key -> published rows, for every block of the space; a block without rows is a ``UserError``."""
    mapped, lacking = {}, []
    for key, shape in space_blocks(space).items():
        try:
            names = fmt.keys(shape)
        except ValueError as exc:
            raise UserError(f"{where}: block {key} of space {space.name!r} cannot be imported: {exc}") from None
        absent = [n for n in names if n not in rows]
        if absent:
            lacking.append(f"{key} (needs {', '.join(absent)})")
        mapped[key] = names
    if lacking:
        shown = "; ".join(lacking[:2]) + (f" (and {len(lacking) - 2} more)" if len(lacking) > 2 else "")
        raise UserError(
            f"{where}: {len(lacking)} block(s) of space {space.name!r} at resolution {space.resolution}, {space.num_classes} classes, "
            f"width {space.width_mult:g} are not in the table: {shown} (a published table holds only the networks its authors "
            "measured; an experiment training another declares the tables' setting: lut.resolution, lut.num_classes, lut.width_mult)"
        )
    return mapped


def import_published(
    space: SearchSpace, fmt: PublishedFormat, path: str | Path | None = None, columns: list[str] | None = None
) -> dict[str, LatencyTable]:
    """One table per column (default: every column of the format), named by ``PublishedFormat.table_name``."""
    from lut.build import make_header  # build imports this module's neighbours; keep the graph one-way

    src = Path(path) if path is not None else fmt.shipped
    if src is None:
        raise UserError(f"format {fmt.name} ships no table: give the CSV")
    for c in columns or []:
        if c not in fmt.columns:
            raise UserError(f"{fmt.name} has no column {c!r}: it has {', '.join(fmt.columns)}")
    rows = read_rows(src, fmt)
    mapped = block_rows(space, fmt, rows, str(src))
    tables = {}
    for col in columns or list(fmt.columns):
        d = fmt.columns[col]
        info = {"runtime": d.runtime, "runtime_version": "unknown", "provider": d.provider, "threads": 0, "opset": 0}
        header = make_header(space, info, d.device, 1) | {"dtype": "unknown", "cpu_model": "unknown", "hostname": "unknown"}
        header |= {"metric": d.metric, "unit": d.unit, "source": fmt.source, "format": fmt.name, "column": col, "imported_from": src.name}
        entries = {}
        for key, names in mapped.items():
            value = sum(rows[n][col] for n in names)
            entries[key] = Entry(value, value, 0.0, 0)
        name = fmt.table_name(col)
        tables[name] = LatencyTable(header, entries, None, f"{name}.json")
    return tables


def published_table(space: SearchSpace, ref: str) -> LatencyTable:
    """The table of ``<format>:<column>`` (the shipped copy) for ``space``: ``lut.tables.<name>.published``."""
    fmt_name, _, column = ref.partition(":")
    fmt = get_format(fmt_name)
    return next(iter(import_published(space, fmt, None, [column]).values()))
