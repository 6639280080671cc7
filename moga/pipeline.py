"""``moga run``: latency tables -> supernet -> search -> report, each stage skipped when its output exists
for the same config and resumed when it was interrupted.

``stages.json`` in the run directory records, per stage, the hash of the config sections it depends on,
its status, its wall time and the size and SHA-256 of its outputs (``moga.stagelog``): a stage is skipped
only while its outputs verify, otherwise it runs again from its intact files, with a one-line note. A
finished stage whose sections changed is refused with the changed keys named (results of another config are
never silently mixed or overwritten): use another ``run_dir``.

The supernet stage runs only when the search reads supernet accuracy (``needs_supernet``): with
``search.accuracy: benchmark`` (accuracies from the space's benchmark table) or no accuracy objective or
constraint it is skipped, and the search stage's hash then leaves out the data and supernet sections it does
not depend on.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from moga.config import ExperimentConfig, dump_config
from moga.experiment import experiment_dataset, experiment_space, locked_on_rank0
from moga.runio import atomic_write_text, config_hash
from moga.stagelog import Output, StageLog
from supernet.errors import UserError
from supernet.io import differences
from supernet.readers import read_yaml

# the config sections each stage's output depends on
STAGE_SECTIONS: dict[str, tuple[str, ...]] = {
    "lut": ("space", "lut"),
    "supernet": ("seed", "space", "data", "supernet"),
    "search": ("seed", "space", "data", "supernet", "lut", "search"),
}


def stage_sections(cfg: ExperimentConfig, stage: str) -> tuple[str, ...]:
    """The config sections ``stage``'s output depends on for this config."""
    if stage == "search" and not needs_supernet(cfg):
        return tuple(k for k in STAGE_SECTIONS[stage] if k not in ("data", "supernet"))
    return STAGE_SECTIONS[stage]


def stage_hash(cfg: ExperimentConfig, stage: str) -> str:
    dump = cfg.model_dump(mode="json")
    for key, default in (("accuracy", "supernet"), ("dir", "search")):  # defaults leave the hashes of earlier runs as they were
        if dump["search"][key] == default:
            del dump["search"][key]
    return config_hash({k: dump[k] for k in stage_sections(cfg, stage)})


def stage_outputs(cfg: ExperimentConfig, stage: str) -> list[Output]:
    """The files ``stage`` leaves in the run directory, verified before the stage is skipped (``moga.stagelog``)."""
    if stage == "lut":
        return [Output(f"lut/{name}.json", accept=lambda path, name=name: _table_fits(cfg, name, path)) for name in cfg.lut.tables]
    if stage == "supernet":
        return [Output("supernet/supernet.pt"), Output("supernet/last.pt", required=False)]
    return [Output(f"{cfg.search.dir}/{name}") for name in ("state.json", "history.csv", "pareto.csv")]


def _table_fits(cfg: ExperimentConfig, name: str, path: Path) -> bool:
    """A table changed since the stage wrote it is still its output if it loads and fits (``lut validate``
    stores a calibration in place)."""
    from lut.build import lut_space
    from lut.table import LatencyTable

    try:
        LatencyTable.load(path).check_space(lut_space(cfg), batch=cfg.lut.tables[name].batch)
    except UserError:
        return False
    return True


def run_stage(log: StageLog, cfg: ExperimentConfig, stage: str, fn: Callable[[], dict[str, Any] | None]) -> None:
    log.run(stage, stage_hash(cfg, stage), fn, stage_outputs(cfg, stage))


def check_run_dir(cfg: ExperimentConfig, log: StageLog) -> None:
    """Refuse to reuse a run directory whose recorded stages were made with other settings."""
    saved = cfg.run_path / "config.yaml"
    try:  # only to name what changed: a missing or damaged copy (rewritten below) names less, never blocks the run
        old = read_yaml(saved, "run config") or {} if saved.exists() else {}
    except UserError:
        old = {}
    old = old if isinstance(old, dict) else {}
    new = cfg.model_dump(mode="json")
    for stage in STAGE_SECTIONS:
        sections = stage_sections(cfg, stage)
        entry = log.stages.get(stage)
        if entry and entry.get("hash") != stage_hash(cfg, stage):
            changed = differences({k: old.get(k) for k in sections}, {k: new[k] for k in sections})
            shown = "; ".join(changed[:5]) or "(unknown)"
            raise UserError(
                f"{cfg.run_path} holds a {stage} stage made with other settings (changed: {shown}); "
                f"pass run_dir=<new directory> or name=<new name> to start a separate run"
            )


# ----------------------------------------------------------------------------- stages
def build_experiment_tables(cfg: ExperimentConfig, only: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Measure (or import and check) every latency table the experiment names into ``<run_dir>/lut/``.

    Builds resume: measured entries are kept. Tables given by ``path`` are checked and copied. With
    ``lut.validate_nets`` a fresh table is also validated on whole networks and calibrated.
    """
    from lut.build import DECLARED, build_table, lut_space, table_path
    from lut.measure import MeasureProtocol, make_backend
    from lut.published import published_table
    from lut.table import LatencyTable
    from lut.validate import validate, write_report

    if only is not None and only not in cfg.lut.tables:
        raise UserError(f"the experiment names no latency table {only!r} (it has {', '.join(cfg.lut.tables) or 'none'})")
    space = lut_space(cfg)
    tables = {}
    for name in [only] if only else list(cfg.lut.tables):
        tc = cfg.lut.tables[name]
        dest = table_path(cfg, name)
        if tc.path or tc.published:
            table = LatencyTable.load(tc.path) if tc.path else published_table(space, tc.published)
            table.check_space(space, batch=tc.batch, declared=DECLARED)
            tables[name] = table
            table.save(dest)
            print(
                f"[lut] {name}: {tc.path or tc.published} fits space {space.name} at {space.resolution} ({table.header['device']}) -> {dest}"
            )
            continue
        backend = make_backend(tc.backend, tc.threads, tc.clock)
        try:
            start = time.perf_counter()
            protocol = MeasureProtocol(tc.warmup, tc.runs, tc.rounds)
            table, n = build_table(space, backend, dest, device=tc.device_name, batch=tc.batch, protocol=protocol, progress=progress)
            done = "up to date" if n == 0 else f"measured {n} of {len(table.entries)} entries in {time.perf_counter() - start:.0f} s"
            print(f"[lut] {name}: {done} ({tc.backend}, {tc.threads} thread(s), batch {tc.batch}) -> {dest}")
            if cfg.lut.validate_nets and table.calibration is None:
                table, report = validate(table, space, backend, cfg.lut.validate_nets, seed=cfg.seed, progress=progress)
                write_report(report, dest.with_name(f"{dest.stem}_validation"), f"{dest.name}: {table.header['device']}")
                table.save(dest)
                print(report.summary())
        finally:
            backend.close()
        tables[name] = table
    return tables


def lut_stage(cfg: ExperimentConfig, progress: bool) -> dict[str, Any]:
    tables = build_experiment_tables(cfg, progress=progress)
    return {"tables": {name: len(t.entries) for name, t in tables.items()}}


def supernet_stage(cfg: ExperimentConfig, ctx: Any, device: Any, progress: bool, resume: bool = True) -> dict[str, Any]:
    """Train (or resume: ``moga run`` always does, ``moga supernet train`` only with ``--resume``) the supernet."""
    from supernet.train import train_supernet

    train_supernet(
        experiment_space(cfg),
        experiment_dataset(cfg),
        cfg.supernet,
        cfg.run_path / "supernet",
        seed=cfg.seed,
        device=device,
        resume=resume,
        config_text=dump_config(cfg),
        dist=ctx,
        progress=progress,
    )
    return {"steps": cfg.supernet.steps, "sampler": cfg.supernet.sampler}


def needs_accuracy(cfg: ExperimentConfig) -> bool:
    return any(o.name == "accuracy" for o in cfg.search.objectives) or any(c.strip().startswith("accuracy") for c in cfg.search.constraints)


def needs_supernet(cfg: ExperimentConfig) -> bool:
    """Whether the search reads accuracy from a trained supernet (not from a benchmark table, not at all)."""
    return needs_accuracy(cfg) and cfg.search.accuracy == "supernet"


def check_accuracy_source(cfg: ExperimentConfig) -> None:
    """``search.accuracy: benchmark`` needs a space whose benchmark describes it exactly (a ``UserError`` if not)."""
    if cfg.search.accuracy == "benchmark":
        from moga.truefront import GroundTruth

        GroundTruth.for_space(experiment_space(cfg), required=True)


def supernet_skip_reason(cfg: ExperimentConfig) -> str:
    if needs_accuracy(cfg):
        return f"search.accuracy is benchmark (accuracies from the {experiment_space(cfg).benchmark} table)"
    return "no search objective or constraint reads accuracy"


def search_stage(cfg: ExperimentConfig, resume: bool, progress: bool, writer: bool = True) -> dict[str, Any]:
    from lut.build import load_tables, lut_space
    from moga.metrics import ArchMetrics, shared_across_ranks
    from moga.search import Search

    space = experiment_space(cfg)
    accuracy = None
    check_accuracy_source(cfg)
    if needs_accuracy(cfg) and cfg.search.accuracy == "benchmark":
        from moga.truefront import GroundTruth

        truth = GroundTruth.for_space(space, required=True)
        assert truth is not None
        accuracy = truth.accuracy
    elif needs_accuracy(cfg):
        from supernet.evaluate import SubnetEvaluator
        from supernet.train import load_supernet

        path = cfg.run_path / "supernet" / "supernet.pt"
        if not path.exists():
            raise UserError(f"no trained supernet at {path}: run `moga supernet train` (or `moga run`) first")
        net = load_supernet(path, cfg.device, data_seed=cfg.seed, space=space)
        evaluator = SubnetEvaluator.from_config(net, experiment_dataset(cfg), cfg.supernet.eval, seed=cfg.seed)
        accuracy = shared_across_ranks(evaluator.evaluate)
    metrics = ArchMetrics(space, load_tables(cfg), accuracy, lut_space(cfg))
    seed = cfg.seed if cfg.search.seed is None else cfg.search.seed
    search = Search(space, cfg.search, metrics, cfg.run_path / cfg.search.dir, seed, stage_hash(cfg, "search"), writer=writer)
    result = search.run(resume=resume, progress=progress)
    return {"evaluations": len(result.history), "front_size": len(result.pareto)}


def check_search_setup(cfg: ExperimentConfig) -> None:
    """The search's objectives and constraints against the latency tables (exact metric ranges) and its accuracy
    source, so a search that cannot run is refused before a supernet is trained for it."""
    from lut.build import load_tables, lut_space
    from moga.metrics import ArchMetrics
    from moga.objectives import check_satisfiable, make_objectives, parse_constraint

    check_accuracy_source(cfg)
    metrics = ArchMetrics(experiment_space(cfg), load_tables(cfg), None, lut_space(cfg))
    make_objectives([(o.name, o.weight, o.maximize) for o in cfg.search.objectives], metrics.tables, metrics.others)
    check_satisfiable([parse_constraint(c, metrics.tables, metrics.others) for c in cfg.search.constraints], metrics.bounds)


def run_experiment(cfg: ExperimentConfig, progress: bool = True) -> Path:
    from lut.build import lut_space
    from moga.report import build_report
    from supernet.distributed import init_distributed

    ctx, device = init_distributed(cfg.device)
    run = cfg.run_path
    with locked_on_rank0(run, ctx):
        log = StageLog(run, writer=ctx.is_main)
        check_run_dir(cfg, log)
        experiment_space(cfg), lut_space(cfg)  # the spaces (trained, timed) resolve before anything is written
        check_accuracy_source(cfg)  # before measuring latency for a search that cannot run
        if ctx.is_main:
            atomic_write_text(run / "config.yaml", dump_config(cfg))
        main_progress = progress and ctx.is_main
        if ctx.is_main:  # measuring latency in parallel on one machine would corrupt the timings
            run_stage(log, cfg, "lut", lambda: lut_stage(cfg, main_progress))
        _barrier(ctx)
        if not log.done("search", stage_hash(cfg, "search"), stage_outputs(cfg, "search")):
            check_search_setup(cfg)
        if needs_supernet(cfg):
            run_stage(log, cfg, "supernet", lambda: supernet_stage(cfg, ctx, device, main_progress))
        elif ctx.is_main:
            print(f"[supernet] not needed, skipped: {supernet_skip_reason(cfg)}")
        run_stage(log, cfg, "search", lambda: search_stage(cfg, True, main_progress, ctx.is_main))
        if ctx.is_main:
            report = build_report(run)
            print(f"[report] {report}")
    return run


def _barrier(ctx: Any) -> None:
    if getattr(ctx, "active", False):
        import torch.distributed as dist

        dist.barrier()
