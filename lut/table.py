"""Latency lookup tables: the JSON format, strict loading, the space check and vectorised prediction.

A table is plain JSON::

    {"schema_version": 1,
     "header": {"device": ..., "runtime": ..., "runtime_version": ..., "provider": ..., "threads": 1, ...},
     "entries": {"ir:56x56x24-24:k3e3:s1:se0:relu": {"median_ms": .., "mean_ms": .., "std_ms": .., "count": ..}, ...},
     "calibration": {"slope": .., "intercept": .., "fitted_on": .., ...}}       # optional

Keys are ``BlockShape.key`` of every distinct block the space can hold (``space_blocks``), so a table is
greppable and a missing key names the block. Besides the required ``HEADER_FIELDS`` a header may say how
it was measured (``clock``, ``protocol``). A network's raw latency is the sum of its blocks' ``median_ms``;
the optional linear calibration (fitted on measured whole networks, see ``lut.validate``) maps raw to
predicted latency.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from supernet.arch import Arch
from supernet.errors import UserError
from supernet.io import read_json, write_json
from supernet.space import BlockShape, SearchSpace, get_space, space_from_spec, space_spec

SCHEMA_VERSION = 1
# header field -> accepted JSON types; all are required
HEADER_FIELDS: dict[str, tuple[type, ...]] = {
    "device": (str,),
    "runtime": (str,),
    "runtime_version": (str,),
    "provider": (str,),
    "threads": (int,),
    "batch": (int,),
    "dtype": (str,),
    "space": (str,),
    "resolution": (int,),
    "num_classes": (int,),
    "width_mult": (int, float),
    "variant": (str,),
    "opset": (int,),
    "cpu_model": (str,),
    "hostname": (str,),
    "date": (str,),
}
# the header fields that must agree with the experiment's space
SPACE_FIELDS = ("space", "resolution", "num_classes", "width_mult", "variant")
TIMING_FIELDS = ("median_ms", "mean_ms", "std_ms")


def space_blocks(space: SearchSpace) -> dict[str, BlockShape]:
    """Every distinct block the space can place, keyed by ``BlockShape.key``, input to output.

    Identity skips cost nothing, so they have no entry (a skip that projects, 1x1 conv + BN, has one).
    """
    shapes = [space.stem] + ([space.separable] if space.separable else [])
    shapes += [space.layer_shape(i, c) for i, n in enumerate(space.n_choices) for c in range(n)]
    shapes.append(space.head)
    return {s.key: s for s in shapes if not s.is_identity}


def space_header(space: SearchSpace) -> dict[str, Any]:
    """The header fields naming the space; ``space_spec`` is the whole space, so that a table of a custom
    (YAML) space can be shown and validated without that file."""
    return {
        "space": space.name,
        "resolution": space.resolution,
        "num_classes": space.num_classes,
        "width_mult": space.width_mult,
        "variant": space.variant,
        "space_spec": space_spec(space),
    }


def header_space(header: dict[str, Any]) -> SearchSpace:
    """The space a table was measured for: its stored description, else its registered name."""
    if isinstance(header.get("space_spec"), dict):
        return space_from_spec(header["space_spec"])
    return get_space(
        header["space"],
        num_classes=header["num_classes"],
        resolution=header["resolution"],
        width_mult=header["width_mult"],
        variant=header["variant"],
    )


@dataclass(frozen=True)
class Entry:
    """Timing statistics of one block, in milliseconds; ``count`` = timed runs (0: not reported)."""

    median_ms: float
    mean_ms: float
    std_ms: float
    count: int

    def to_json(self) -> dict[str, Any]:
        return {"median_ms": self.median_ms, "mean_ms": self.mean_ms, "std_ms": self.std_ms, "count": self.count}


@dataclass(frozen=True)
class Calibration:
    """``predicted = slope * raw + intercept``; ``info`` keeps what it was fitted on and how well it did."""

    slope: float = 1.0
    intercept: float = 0.0
    fitted_on: int = 0
    info: dict[str, Any] = field(default_factory=dict, compare=False)

    def apply(self, raw: np.ndarray | float) -> np.ndarray | float:
        return self.slope * raw + self.intercept

    def describe(self) -> str:
        return f"{self.slope:.4f} * raw {'-' if self.intercept < 0 else '+'} {abs(self.intercept):.4f} ms"

    def to_json(self) -> dict[str, Any]:
        return {"slope": self.slope, "intercept": self.intercept, "fitted_on": self.fitted_on, **self.info}


@dataclass(frozen=True)
class Predictor:
    """Per-layer latency arrays of one space, built once; ``predict_genomes`` is a gather and a sum."""

    fixed_ms: float  # stem + separable + head
    layer_ms: tuple[np.ndarray, ...]  # layer l -> latency of each choice
    calibration: Calibration

    _n_choices: np.ndarray = field(init=False, repr=False)
    _offsets: np.ndarray = field(init=False, repr=False)
    _flat: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        n = np.array([len(a) for a in self.layer_ms], dtype=np.int64)
        object.__setattr__(self, "_n_choices", n)
        object.__setattr__(self, "_offsets", np.concatenate([[0], np.cumsum(n)[:-1]]).astype(np.int64))
        object.__setattr__(self, "_flat", np.concatenate(self.layer_ms).astype(np.float64))

    def raw_genomes(self, genomes: np.ndarray) -> np.ndarray:
        """Uncalibrated latency (ms) of each row of an (N, L) integer genome array."""
        g = np.asarray(genomes)
        if g.ndim != 2 or g.shape[1] != len(self.layer_ms) or not np.issubdtype(g.dtype, np.integer):
            raise UserError(f"genomes must be an (N, {len(self.layer_ms)}) integer array, got shape {g.shape} of {g.dtype}")
        if g.size and (g.min() < 0 or (g >= self._n_choices).any()):
            raise UserError("genomes hold a choice index outside the space's range")
        return self.fixed_ms + self._flat[g + self._offsets].sum(axis=1)

    def predict_genomes(self, genomes: np.ndarray) -> np.ndarray:
        """Calibrated latency (ms) of each row of an (N, L) integer genome array."""
        return np.asarray(self.calibration.apply(self.raw_genomes(genomes)))


@dataclass(frozen=True)
class LatencyTable:
    header: dict[str, Any]
    entries: dict[str, Entry]
    calibration: Calibration | None = None
    source: str = "<table>"  # file name, for messages
    _predictors: dict[SearchSpace, Predictor] = field(default_factory=dict, compare=False, repr=False)

    # ------------------------------------------------------------------ file format
    def to_json(self) -> dict[str, Any]:
        obj: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "header": self.header,
            "entries": {k: e.to_json() for k, e in self.entries.items()},
        }
        if self.calibration is not None:
            obj["calibration"] = self.calibration.to_json()
        return obj

    def save(self, path: str | Path) -> Path:
        """Atomic write: a reader never sees half a table, an interrupted save leaves the old one."""
        write_json(path, self.to_json())
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> LatencyTable:
        path = Path(path)
        return cls.from_json(read_json(path, "latency table"), source=path.name)

    @classmethod
    def from_json(cls, obj: Any, source: str = "<table>") -> LatencyTable:
        where = f"latency table {source}"
        if not isinstance(obj, dict):
            raise UserError(f"{where}: expected a JSON object with schema_version, header and entries")
        for part in ("schema_version", "header", "entries"):
            if part not in obj:
                raise UserError(f"{where}: missing {part!r}")
        if obj["schema_version"] != SCHEMA_VERSION:
            raise UserError(f"{where}: unsupported schema_version {obj['schema_version']!r} (this moga reads {SCHEMA_VERSION})")
        header = _check_header(obj["header"], where)
        entries = _check_entries(obj["entries"], where)
        calibration = _check_calibration(obj["calibration"], where) if obj.get("calibration") is not None else None
        return cls(header, entries, calibration, source)

    def with_calibration(self, calibration: Calibration | None) -> LatencyTable:
        return replace(self, calibration=calibration, _predictors={})

    # ------------------------------------------------------------------ checks
    def check_space(
        self, space: SearchSpace, batch: int | None = None, user: str = "the experiment", declared: dict[str, str] | None = None
    ) -> None:
        """Refuse a table measured for another space, resolution, classes, width, variant or batch. ``declared``:
        field -> the setting by which ``user`` states that its latency is for another value than it trains."""
        want = space_header(space)
        for name in SPACE_FIELDS:
            have = self.header[name]
            if have != want[name]:
                label = name.replace("_", " ")
                hint = ""
                if declared and name in declared:
                    hint = (
                        f" (if its figures are meant for {label} {have} while training {want[name]}, declare it: {declared[name]}: {have})"
                    )
                raise UserError(f"table {self.source} was measured for {label} {have}, {user} uses {want[name]}{hint}")
        if batch is not None and self.header["batch"] != batch:
            raise UserError(f"table {self.source} was measured at batch {self.header['batch']}, {user} uses batch {batch}")
        missing = [k for k in space_blocks(space) if k not in self.entries]
        if missing:
            shown = ", ".join(missing[:3]) + (f" (and {len(missing) - 3} more)" if len(missing) > 3 else "")
            raise UserError(
                f"table {self.source} lacks {len(missing)} entries of space {space.name!r} at resolution {space.resolution}: {shown} "
                "(`moga lut build` measures them; a device table needs them imported)"
            )

    # ------------------------------------------------------------------ prediction
    def predictor(self, space: SearchSpace) -> Predictor:
        """Checked once per space; then ``predict_genomes`` costs a gather and a sum per architecture."""
        if space not in self._predictors:
            self.check_space(space)
            ms = {k: e.median_ms for k, e in self.entries.items()}

            def lat(shape: BlockShape) -> float:
                return 0.0 if shape.is_identity else ms[shape.key]

            fixed = sum(lat(s) for s in (space.stem, space.separable, space.head) if s is not None)
            layers = tuple(np.array([lat(space.layer_shape(i, c)) for c in range(n)]) for i, n in enumerate(space.n_choices))
            self._predictors[space] = Predictor(fixed, layers, self.calibration or Calibration())
        return self._predictors[space]

    def predict_raw(self, arch: Arch) -> float:
        return float(self.predictor(arch.space).raw_genomes(arch.genome[None, :])[0])

    def predict(self, arch: Arch) -> float:
        """Calibrated latency (ms) of one architecture; raises ``UserError`` if the table does not fit its space."""
        return float(self.predictor(arch.space).predict_genomes(arch.genome[None, :])[0])


# ----------------------------------------------------------------------------- validation helpers
def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _check_header(header: Any, where: str) -> dict[str, Any]:
    if not isinstance(header, dict):
        raise UserError(f"{where}: 'header' must be an object")
    missing = [k for k in HEADER_FIELDS if k not in header]
    if missing:
        raise UserError(f"{where}: header lacks field(s) {', '.join(missing)}")
    for name, types in HEADER_FIELDS.items():
        v = header[name]
        if not isinstance(v, types) or isinstance(v, bool):
            raise UserError(f"{where}: header field {name!r} must be {' or '.join(t.__name__ for t in types)}, got {v!r}")
    return dict(header)


def _check_entries(entries: Any, where: str) -> dict[str, Entry]:
    if not isinstance(entries, dict) or not entries:
        raise UserError(f"{where}: 'entries' must be a non-empty object of key -> timings")
    out = {}
    for key, e in entries.items():
        if not isinstance(e, dict):
            raise UserError(f"{where}: entry {key!r} must be an object with {', '.join(TIMING_FIELDS)}, count")
        for name in (*TIMING_FIELDS, "count"):
            if name not in e:
                raise UserError(f"{where}: entry {key!r} lacks {name!r}")
            v = e[name]
            if not _is_number(v):
                raise UserError(f"{where}: entry {key!r} has non-numeric {name} {v!r}")
            if v < 0:
                raise UserError(f"{where}: entry {key!r} has negative {name} {v!r}")
        if not isinstance(e["count"], int):
            raise UserError(f"{where}: entry {key!r} has non-integer count {e['count']!r}")
        out[key] = Entry(float(e["median_ms"]), float(e["mean_ms"]), float(e["std_ms"]), e["count"])
    return out


def _check_calibration(cal: Any, where: str) -> Calibration:
    if not isinstance(cal, dict):
        raise UserError(f"{where}: 'calibration' must be an object with slope and intercept")
    for name in ("slope", "intercept"):
        if not _is_number(cal.get(name)):
            raise UserError(f"{where}: calibration {name} must be a number, got {cal.get(name)!r}")
    if cal["slope"] <= 0:
        raise UserError(f"{where}: calibration slope must be positive, got {cal['slope']!r}")
    fitted_on = cal.get("fitted_on", 0)
    info = {k: v for k, v in cal.items() if k not in ("slope", "intercept", "fitted_on")}
    return Calibration(float(cal["slope"]), float(cal["intercept"]), int(fitted_on) if _is_number(fitted_on) else 0, info)
