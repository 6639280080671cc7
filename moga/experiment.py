"""One experiment: a resolved config and everything derived from it.

``Experiment.load(path, overrides)`` is how every command and stage starts. It owns:

* the **model world** the config resolves to: the space trained, the space timed (``lut_space``), the dataset;
* the **run directory**: where each stage's files are (``supernet_file``, ``search_dir``, ``table_path`` ...),
  its lock (``locked``) and the one writer of ``config.yaml`` (``write_config``);
* the **trained artefacts**, each read one way with one set of checks: the latency tables (``table``,
  ``tables``) and the supernet (``supernet``, ``evaluator``);
* the **objectives** (``reads_accuracy``, ``needs_supernet``);
* the **identities** that say whether earlier files belong to this config (``identity``): the hash of the config
  sections a stage's, a retrain's or a rank correlation's output depends on.

Nothing here trains or searches: ``moga.pipeline``, ``moga.retrain`` and ``moga.rankcorr`` do, through it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from moga.config import RENAMED, ExperimentConfig, dump_config, load_config
from moga.objectives import constraint_metric
from moga.runio import config_hash
from supernet.errors import UserError
from supernet.io import atomic_write_text

if TYPE_CHECKING:
    import torch

    from lut.table import LatencyTable
    from supernet.data import Dataset
    from supernet.distributed import DistContext
    from supernet.estimate import Estimator
    from supernet.evaluate import SubnetEvaluator
    from supernet.space import SearchSpace
    from supernet.supernet import Supernet

# the config sections each output depends on: a file made with other values of these is another config's
IDENTITY_SECTIONS: dict[str, tuple[str, ...]] = {
    "lut": ("space", "lut"),
    "supernet": ("seed", "space", "data", "supernet"),
    "search": ("seed", "space", "data", "supernet", "lut", "search"),
    "retrain": ("seed", "space", "data", "retrain", "lut"),  # a retrained model's description (training: its fingerprint)
    "rankcorr": ("seed", "space", "data", "supernet", "retrain", "lut"),
    "rankcorr-benchmark": ("seed", "space", "data", "supernet"),
}
# keys added later, left out of the hashes at their defaults (earlier runs keep their hashes)
_HASH_DEFAULTS = {
    "search.accuracy": "supernet",
    "search.dir": "search",
    "retrain.nesterov": True,
    "supernet.distill": 0.0,
    "supernet.eval.score": "accuracy",
    "supernet.eval.additive_paths": 0,
}
# the settings that make the timed network another than the trained one, and the config keys that declare them
DECLARED = {"resolution": "lut.resolution", "num_classes": "lut.num_classes", "width_mult": "lut.width_mult"}


def _parent(dump: dict[str, Any], dotted: str) -> tuple[dict[str, Any], str]:
    """The mapping holding ``dotted`` (``supernet.eval.images``) in ``dump``, and its last key."""
    *parents, key = dotted.split(".")
    for part in parents:
        dump = dump[part]
    return dump, key


def _as_recorded(dump: dict[str, Any]) -> dict[str, Any]:
    """A config dump as the hashes of earlier runs saw it: renamed keys (``RENAMED``) under their old names,
    ``supernet.eval.channels_last`` only where it differs from ``supernet.channels_last`` (before, it was that),
    and the keys of ``_HASH_DEFAULTS`` only where they differ from their defaults."""
    for old, new in RENAMED.items():
        (target, old_key), (source, new_key) = _parent(dump, old), _parent(dump, new)
        target[old_key] = source.pop(new_key)
    for dotted, default in _HASH_DEFAULTS.items():
        parent, key = _parent(dump, dotted)
        if parent[key] == default:
            del parent[key]
    supernet = dump["supernet"]
    if supernet["eval"].get("channels_last") == supernet["channels_last"]:
        del supernet["eval"]["channels_last"]
    if not supernet["eval"]:
        del supernet["eval"]
    return dump


class Experiment:
    """A resolved experiment config with its space, data, run directory, tables and supernet (see the module)."""

    def __init__(self, cfg: ExperimentConfig) -> None:
        self.cfg = cfg

    @classmethod
    def load(cls, path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Experiment:
        """The experiment a YAML file plus ``section.key=value`` overrides describe (``UserError`` naming a bad key)."""
        return cls(load_config(path, overrides))

    # ------------------------------------------------------------------ the run directory
    @property
    def run(self) -> Path:
        return self.cfg.run_path

    @property
    def supernet_dir(self) -> Path:
        return self.run / "supernet"

    @property
    def supernet_file(self) -> Path:
        return self.supernet_dir / "supernet.pt"

    @property
    def search_dir(self) -> Path:
        return self.run / self.cfg.search.dir

    @property
    def front_file(self) -> Path:
        return self.search_dir / "pareto.csv"

    @property
    def rankcorr_dir(self) -> Path:
        return self.run / "rankcorr"

    def table_path(self, name: str) -> Path:
        return self.run / "lut" / f"{name}.json"

    @property
    def config_text(self) -> str:
        """The resolved config as YAML: what ``config.yaml`` holds and checkpoints record."""
        return dump_config(self.cfg)

    def write_config(self, directory: Path) -> None:
        """``<directory>/config.yaml``: the resolved config the files beside it were made with."""
        atomic_write_text(directory / "config.yaml", self.config_text)

    @contextlib.contextmanager
    def locked(self, directory: Path, ctx: DistContext) -> Iterator[None]:
        """Rank 0 holds ``directory``'s lock (``moga.runio.run_lock``); if it cannot, every rank stops (none waits)."""
        from moga.runio import run_lock
        from supernet.distributed import all_ranks_ok

        with contextlib.ExitStack() as stack:
            error: UserError | None = None
            if ctx.is_main:
                try:
                    stack.enter_context(run_lock(directory))
                except UserError as exc:
                    error = exc
            if not all_ranks_ok(error is None, ctx):
                raise error or UserError(f"rank 0 could not lock {directory}")
            yield

    # ------------------------------------------------------------------ identities
    def identity_sections(self, output: str) -> tuple[str, ...]:
        """The config sections ``output`` (a key of ``IDENTITY_SECTIONS``) depends on for this config: a search
        that reads no supernet accuracy does not depend on the data and supernet sections."""
        sections = IDENTITY_SECTIONS[output]
        if output == "search" and not self.needs_supernet:
            return tuple(k for k in sections if k not in ("data", "supernet"))
        return sections

    def identity(self, output: str) -> str:
        """Short hash of the config sections ``output`` depends on: equal hashes, same config for that output."""
        dump = _as_recorded(self.cfg.model_dump(mode="json"))
        return config_hash({k: dump[k] for k in self.identity_sections(output)})

    # ------------------------------------------------------------------ objectives
    @cached_property
    def reads_accuracy(self) -> bool:
        """Whether an objective or a constraint of the search reads accuracy."""
        s = self.cfg.search
        return any(o.name == "accuracy" for o in s.objectives) or any(constraint_metric(c) == "accuracy" for c in s.constraints)

    @property
    def needs_supernet(self) -> bool:
        """Whether the search reads accuracy from a trained supernet (not from a benchmark table, not at all)."""
        return self.reads_accuracy and self.cfg.search.accuracy == "supernet"

    # ------------------------------------------------------------------ what the config resolves to
    @cached_property
    def space(self) -> SearchSpace:
        """The space the supernet is trained on and searched."""
        from supernet.space import get_space

        s = self.cfg.space
        return get_space(s.name, num_classes=s.num_classes, resolution=s.resolution, width_mult=s.width_mult, variant=s.variant)

    @cached_property
    def lut_space(self) -> SearchSpace:
        """The space latency is measured for: ``space`` with ``lut.resolution``, ``lut.num_classes`` and
        ``lut.width_mult`` where set (latency of another input size, head or width than the network trained)."""
        from supernet.space import get_space

        s, lut = self.cfg.space, self.cfg.lut
        settings = {k: getattr(s, k) if getattr(lut, k) is None else getattr(lut, k) for k in DECLARED}
        return get_space(s.name, variant=s.variant, **settings)

    @cached_property
    def dataset(self) -> Dataset:
        """The experiment's data: train, the held-out ``search_val`` split (drawn with the experiment's seed), test."""
        from supernet.data import load_dataset

        d = self.cfg.data
        return load_dataset(
            d.kind,
            d.path,
            self.cfg.space.resolution,
            search_val_per_class=d.search_val_per_class,
            seed=self.cfg.seed,
            num_workers=d.workers,
        )

    # ------------------------------------------------------------------ latency tables
    def table_names(self, only: str | None = None) -> list[str]:
        """The names of the experiment's tables (``lut.tables``), or just ``only``, which it must name."""
        names = list(self.cfg.lut.tables)
        if only is not None and only not in names:
            raise UserError(f"the experiment names no latency table {only!r} (it has {', '.join(names) or 'none'})")
        return [only] if only is not None else names

    def table(self, name: str) -> LatencyTable | None:
        """The run's table ``name`` checked to fit ``lut_space`` and the settings ``lut.tables.<name>`` names;
        None while it is not built (a table that does not fit is a ``UserError``)."""
        from lut.measure import measured_with_differences
        from lut.table import LatencyTable

        tc, path = self.cfg.lut.tables[name], self.table_path(name)
        if not path.exists():
            return None
        table = LatencyTable.load(path)
        table.check_space(self.lut_space, batch=tc.batch, declared=DECLARED)
        differences = [] if tc.path or tc.published else measured_with_differences(table.header, tc.backend, tc.threads, tc.clock)
        if differences:
            raise UserError(
                f"table {table.source} was measured with other settings than lut.tables.{name} asks for: {', '.join(differences)}; "
                f"run `moga lut build` to measure it again"
            )
        return table

    def tables(self) -> dict[str, LatencyTable]:
        """Every table the experiment names, each checked (``table``); one not built yet is a ``UserError``.
        The search uses them as ``latency:<name>`` objectives (``latency`` alone is the first)."""
        tables = {}
        for name, tc in self.cfg.lut.tables.items():
            table = self.table(name)
            if table is None:
                source = f"import it from {tc.path or tc.published}" if tc.path or tc.published else "measure it"
                raise UserError(f"latency table {name!r} is not in {self.table_path(name).parent}: run `moga lut build` to {source}")
            tables[name] = table
        return tables

    def built_tables(self) -> dict[str, LatencyTable]:
        """The tables of the run that are built, each checked (a run that never built its tables has none)."""
        return {name: table for name in self.cfg.lut.tables if (table := self.table(name)) is not None}

    # ------------------------------------------------------------------ the trained supernet
    def supernet(self, purpose: str, device: str | torch.device | None = None, checkpoint: Path | None = None) -> Supernet:
        """The trained supernet (``checkpoint``, default ``supernet_file``) on ``device`` (default the config's),
        refused if it was trained for another space or with another data seed (its training images would be
        scored as held-out ones). ``purpose`` names what needs it in the error when there is none."""
        from supernet.train import load_supernet

        path = checkpoint or self.supernet_file
        if not path.exists():
            raise UserError(f"no trained supernet at {path}: {purpose} needs one; run `moga supernet train` (or `moga run`) first")
        return load_supernet(path, device or self.cfg.device, data_seed=self.cfg.seed, space=self.space)

    def estimator(self, net: Supernet, **settings: Any) -> Estimator:
        """What the search ranks by (``supernet.eval.score``, ``supernet.eval.additive_paths``): ``evaluator``'s
        per-path score, or the additive model of many paths' scores (``supernet.estimate``)."""
        from supernet.estimate import Estimator

        return Estimator(self.evaluator(net, **settings), self.cfg.supernet.eval, seed=self.cfg.seed)

    def evaluator(self, net: Supernet, **settings: Any) -> SubnetEvaluator:
        """BN-recalibrated accuracy estimates of ``net``'s paths on the experiment's ``search_val`` split."""
        from supernet.evaluate import SubnetEvaluator

        return SubnetEvaluator.from_config(net, self.dataset, self.cfg.supernet.eval, seed=self.cfg.seed, **settings)
