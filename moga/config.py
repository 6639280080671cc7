"""Experiment configuration: one typed section per component, defaults defined only here.

Load with ``load_config(path, overrides)``: YAML (safe loader) plus ``section.key=value`` overrides
whose values are parsed as YAML scalars. Unknown keys and wrong types raise ``UserError`` naming the key.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from lut.measure import BLOCK_PROTOCOL
from supernet.config import DataConfig, RetrainConfig, Section, SpaceConfig, SupernetConfig
from supernet.device import DEVICE_NAME
from supernet.errors import UserError
from supernet.readers import DuplicateKeyError, read_yaml, yaml_loads

MAX_SEED = 2**63 - 1  # what every generator seeded from it (numpy, torch) accepts
MAX_WEIGHT = 1e6  # objective weights are relative; bounded so that their sum (the normaliser) stays finite
# a run name is one plain path component (runs/<name>); ``run_dir`` is the way to choose a path
PLAIN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*")


class TableConfig(Section):
    path: str | None = None  # an existing table (e.g. imported from a phone); None = build here
    published: str | None = None  # <format>:<column> of a published block table moga ships, e.g. hw-nas-bench-fbnet:pixel3_latency_ms
    backend: Literal["onnxruntime-cpu", "onnxruntime-cuda", "torch-cuda", "fake"] = "onnxruntime-cpu"  # torch-cuda: CUDA events
    device_name: str = "local-cpu"
    threads: int = Field(default=1, ge=1)
    batch: int = Field(default=1, ge=1)
    warmup: int = Field(default=BLOCK_PROTOCOL.warmup, ge=0)  # the block-table protocol (lut.measure.BLOCK_PROTOCOL)
    runs: int = Field(default=BLOCK_PROTOCOL.runs, ge=1)
    rounds: int = Field(default=BLOCK_PROTOCOL.rounds, ge=1)
    clock: Literal["wall", "cpu"] = "wall"  # cpu: thread CPU time (1-thread CPU only), robust on a shared machine

    @model_validator(mode="after")
    def _one_source(self) -> TableConfig:
        if self.path and self.published:
            raise ValueError("give path (a table file) or published (a shipped block table), not both")
        if self.published is not None and ":" not in self.published:
            raise ValueError(f"published must be <format>:<column>, e.g. hw-nas-bench-fbnet:pixel3_latency_ms, got {self.published!r}")
        return self


class LutConfig(Section):
    tables: dict[str, TableConfig] = Field(default_factory=lambda: {"cpu": TableConfig()})
    # latency of another network than the one trained, declared (the table check refuses silent mismatches):
    resolution: int | None = None  # at another input size than training (e.g. 224 for a phone)
    num_classes: int | None = Field(default=None, ge=1)  # with another head (HW-NAS-Bench's CIFAR-100 tables for CIFAR-10)
    width_mult: float | None = Field(default=None, gt=0, le=8)  # at another width (a reduced-width proxy supernet)
    validate_nets: int = Field(default=0, ge=0)  # whole networks measured to calibrate; 0 skips


class ObjectiveConfig(Section):
    name: str  # accuracy | latency | latency:<table> | energy:<table> (an energy table) | params | macs
    weight: float = Field(default=1.0, ge=0, le=MAX_WEIGHT)  # relative: only the ratios matter
    maximize: bool | None = None  # default: accuracy and params maximised, latency and macs minimised


class SearchConfig(Section):
    population: int = Field(default=40, ge=4)
    generations: int = Field(default=10, ge=1)
    objectives: list[ObjectiveConfig] = Field(
        default_factory=lambda: [
            ObjectiveConfig(name="accuracy", weight=0.4),
            ObjectiveConfig(name="latency", weight=0.4),
            ObjectiveConfig(name="params", weight=0.2),
        ]
    )
    constraints: list[str] = Field(default_factory=list)  # e.g. "latency <= 12", "params <= 6e6"
    weighted_crowding: bool = True
    crossover: Literal["uniform", "one_point", "two_point"] = "uniform"
    crossover_prob: float = Field(default=0.9, ge=0, le=1)
    mutation_prob: float | None = Field(default=None, ge=0, le=1)  # per layer; None = 1 / layers
    reinforced_ratio: float = Field(default=0.5, ge=0, le=1)  # share of mutations proposed by the controller
    controller_lr: float = Field(default=0.1, gt=0)
    initial: Literal["homogeneous", "random"] = "homogeneous"  # all-k3e3 ... all-k7e6se first, then random (BENCHMARKS.md)
    algorithm: Literal["nsga2", "random"] = "nsga2"
    # where the accuracy objective comes from: the trained supernet's estimate, or the space's benchmark table
    # (the mean trained accuracy of the network; needs a benchmarked space, e.g. nasbench_macro; no supernet)
    accuracy: Literal["supernet", "benchmark"] = "supernet"
    seed: int | None = Field(
        default=None, ge=0, le=MAX_SEED
    )  # the search's own seed (default: the experiment's); the data split keeps the experiment's
    # the search's directory in the run: another one runs another search (other objectives) over the same trained
    # supernet, e.g. `moga search experiments/fbnet_devices.yaml search.dir=search_tx2 'search.objectives=[...]'`
    dir: str = Field(default="search", pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")

    @field_validator("objectives")
    @classmethod
    def _weights(cls, v: list[ObjectiveConfig]) -> list[ObjectiveConfig]:
        if not v:
            raise ValueError("at least one objective is needed")
        if sum(o.weight for o in v) <= 0:
            raise ValueError("objective weights are all zero")
        return v


class ExperimentConfig(Section):
    name: str = "experiment"
    seed: int = Field(default=0, ge=0, le=MAX_SEED)
    device: str = "cpu"  # cpu | cuda | cuda:N
    run_dir: str | None = None  # default: runs/<name>
    space: SpaceConfig = Field(default_factory=SpaceConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    supernet: SupernetConfig = Field(default_factory=SupernetConfig)
    lut: LutConfig = Field(default_factory=LutConfig)
    search: SearchConfig = Field(default_factory=SearchConfig)
    retrain: RetrainConfig = Field(default_factory=RetrainConfig)

    @field_validator("name")
    @classmethod
    def _plain_name(cls, v: str) -> str:
        if not PLAIN_NAME.fullmatch(v) or v in (".", ".."):
            raise ValueError("a run name must be a plain name (letters, digits, _ . + -; no / or ..); choose a directory with run_dir")
        return v

    @field_validator("device")
    @classmethod
    def _device_name(cls, v: str) -> str:
        if not DEVICE_NAME.fullmatch(v):
            raise ValueError(f"device {v!r} is not supported: use cpu, cuda or cuda:N")
        return v  # whether this machine has it is checked when a command starts using it (supernet.device)

    @property
    def run_path(self) -> Path:
        return Path(self.run_dir or f"runs/{self.name}")

    def section_dump(self, *names: str) -> dict[str, Any]:
        """The parts of the resolved config that a stage depends on (for its skip/resume hash)."""
        dump = self.model_dump(mode="json")
        return {n: dump[n] for n in names}


def _known_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        keys.append(prefix + name)
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            keys += _known_keys(ann, f"{prefix}{name}.")
    return keys


# what pydantic puts into an error's location besides keys: the validator or union member that failed
_TYPE_TAGS = {"bool", "str", "int", "float", "none", "bytes"}
_TAG_PREFIXES = ("function-", "literal[", "list[", "dict[", "tuple[", "set[", "union[", "tagged-union[", "is-instance[")


def _validator_tag(part: str) -> bool:
    return part in _TYPE_TAGS or part.startswith(_TAG_PREFIXES)


# keys of earlier versions: an old config is told the new name instead of "unknown key"
RENAMED = {
    "supernet.bn_calib_images": "supernet.eval.calib_images",
    "supernet.bn_calib_batch_size": "supernet.eval.calib_batch_size",
    "supernet.eval_images": "supernet.eval.images",
    "supernet.eval_batch_size": "supernet.eval.batch_size",
}


def _explain(exc: ValidationError, source: str) -> UserError:
    err = exc.errors()[0]
    key = ".".join(str(p) for p in err["loc"] if not _validator_tag(str(p)))
    if err["type"] == "extra_forbidden":
        if key in RENAMED:
            return UserError(f"{source}: config key {key!r} was renamed: use {RENAMED[key]}")
        close = difflib.get_close_matches(key, _known_keys(ExperimentConfig), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return UserError(f"{source}: unknown config key {key!r}{hint}")
    value = err.get("input")
    message = err["msg"].removeprefix("Value error, ")  # our own validators' messages, as written
    shown = f" (got {value!r})" if not isinstance(value, dict | list) else ""
    return UserError(f"{source}: config key {key!r}: {message}{shown}")


def _section_keys() -> set[str]:
    """Dotted keys of the config's sections (``search``, ``lut``, ...): they take a mapping, never a value."""
    keys = _known_keys(ExperimentConfig)
    return {k for k in keys if any(other.startswith(k + ".") for other in keys)}


def apply_override(raw: dict[str, Any], override: str) -> None:
    """Set ``section.key=value`` in ``raw``; an override that cannot apply is blamed by name (never the next one)."""
    if "=" not in override:
        raise UserError(f"override {override!r} is not of the form section.key=value")
    key, text = override.split("=", 1)
    try:
        value = yaml_loads(text) if text else None
    except DuplicateKeyError as exc:
        raise UserError(f"override {override!r}: {exc}") from None
    except yaml.YAMLError:  # not YAML: the text itself (the config's types decide whether it fits)
        value = text
    parts = key.strip().split(".")
    if key.strip() in _section_keys() and not isinstance(value, dict):
        raise UserError(
            f"override {override!r}: {key.strip()!r} is a config section, not a value (set one of its keys: {key.strip()}.<key>=...)"
        )
    node = raw
    for i, part in enumerate(parts[:-1]):
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            where = ".".join(parts[: i + 1])
            raise UserError(f"override {override!r}: {where!r} is not a config section (it holds {node!r})")
    node[parts[-1]] = value


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> ExperimentConfig:
    raw: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        source = str(path)
        raw = read_yaml(path, "config file") or {}
        if not isinstance(raw, dict):
            raise UserError(f"{path}: expected a mapping of config sections at the top level")
        raw.setdefault("name", Path(path).stem)
    for ov in overrides:
        apply_override(raw, ov)
    try:
        return ExperimentConfig.model_validate(raw)
    except ValidationError as exc:
        raise _explain(exc, source) from None


def dump_config(cfg: ExperimentConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
