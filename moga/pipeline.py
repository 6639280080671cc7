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

from moga.experiment import DECLARED, Experiment
from moga.stagelog import Output, StageLog
from supernet.errors import UserError
from supernet.io import differences
from supernet.readers import read_yaml

STAGES = ("lut", "supernet", "search")


def stage_outputs(exp: Experiment, stage: str) -> list[Output]:
    """The files ``stage`` leaves in the run directory, verified before the stage is skipped (``moga.stagelog``)."""
    if stage == "lut":
        return [Output(f"lut/{name}.json", accept=lambda path, name=name: _table_fits(exp, name)) for name in exp.cfg.lut.tables]
    if stage == "supernet":
        return [Output("supernet/supernet.pt"), Output("supernet/last.pt", required=False)]
    return [Output(f"{exp.cfg.search.dir}/{name}") for name in ("state.json", "history.csv", "pareto.csv")]


def _table_fits(exp: Experiment, name: str) -> bool:
    """A table changed since the stage wrote it is still its output if it loads and fits (``lut validate``
    stores a calibration in place)."""
    try:
        exp.table(name)
    except UserError:
        return False
    return True


def run_stage(log: StageLog, exp: Experiment, stage: str, fn: Callable[[], dict[str, Any] | None]) -> None:
    log.run(stage, exp.identity(stage), fn, stage_outputs(exp, stage))


def check_run_dir(exp: Experiment, log: StageLog) -> None:
    """Refuse to reuse a run directory whose recorded stages were made with other settings."""
    saved = exp.run / "config.yaml"
    try:  # only to name what changed: a missing or damaged copy (rewritten below) names less, never blocks the run
        old = read_yaml(saved, "run config") or {} if saved.exists() else {}
    except UserError:
        old = {}
    old = old if isinstance(old, dict) else {}
    new = exp.cfg.model_dump(mode="json")
    for stage in STAGES:
        sections = exp.identity_sections(stage)
        entry = log.stages.get(stage)
        if entry and entry.get("hash") != exp.identity(stage):
            changed = differences({k: old.get(k) for k in sections}, {k: new[k] for k in sections})
            shown = "; ".join(changed[:5]) or "(unknown)"
            raise UserError(
                f"{exp.run} holds a {stage} stage made with other settings (changed: {shown}); "
                f"pass run_dir=<new directory> or name=<new name> to start a separate run"
            )


# ----------------------------------------------------------------------------- stages
def build_experiment_tables(exp: Experiment, only: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Measure (or import and check) every latency table the experiment names into ``<run_dir>/lut/``.

    Builds resume: measured entries are kept. Tables given by ``path`` are checked and copied. With
    ``lut.validate_nets`` a fresh table is also validated on whole networks and calibrated.
    """
    from lut.build import build_table
    from lut.measure import MeasureProtocol, make_backend
    from lut.published import published_table
    from lut.table import LatencyTable
    from lut.validate import validate, write_report

    cfg = exp.cfg
    space = exp.lut_space
    tables = {}
    for name in exp.table_names(only):
        tc = cfg.lut.tables[name]
        dest = exp.table_path(name)
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


def lut_stage(exp: Experiment, progress: bool) -> dict[str, Any]:
    tables = build_experiment_tables(exp, progress=progress)
    return {"tables": {name: len(t.entries) for name, t in tables.items()}}


def supernet_stage(exp: Experiment, ctx: Any, device: Any, progress: bool, resume: bool = True) -> dict[str, Any]:
    """Train (or resume: ``moga run`` always does, ``moga supernet train`` only with ``--resume``) the supernet."""
    from supernet.train import train_supernet

    cfg = exp.cfg
    train_supernet(
        exp.space,
        exp.dataset,
        cfg.supernet,
        exp.supernet_dir,
        seed=cfg.seed,
        device=device,
        resume=resume,
        config_text=exp.config_text,
        dist=ctx,
        progress=progress,
    )
    return {"steps": cfg.supernet.steps, "sampler": cfg.supernet.sampler}


def check_accuracy_source(exp: Experiment) -> None:
    """``search.accuracy: benchmark`` needs a space whose benchmark describes it exactly (a ``UserError`` if not)."""
    if exp.cfg.search.accuracy == "benchmark":
        from moga.truefront import GroundTruth

        GroundTruth.for_space(exp.space, required=True)


def supernet_skip_reason(exp: Experiment) -> str:
    if exp.reads_accuracy:
        return f"search.accuracy is benchmark (accuracies from the {exp.space.benchmark} table)"
    return "no search objective or constraint reads accuracy"


def search_stage(exp: Experiment, resume: bool, progress: bool, writer: bool = True) -> dict[str, Any]:
    from moga.metrics import ArchMetrics, shared_across_ranks
    from moga.search import Search

    cfg = exp.cfg
    accuracy = None
    check_accuracy_source(exp)
    if exp.reads_accuracy and cfg.search.accuracy == "benchmark":
        from moga.truefront import GroundTruth

        truth = GroundTruth.for_space(exp.space, required=True)
        assert truth is not None
        accuracy = truth.accuracy
    elif exp.needs_supernet:
        accuracy = shared_across_ranks(exp.estimator(exp.supernet("the search")))
    metrics = ArchMetrics(exp.space, exp.tables(), accuracy, exp.lut_space)
    seed = cfg.seed if cfg.search.seed is None else cfg.search.seed
    truth = ground_truth(exp)
    search = Search(exp.space, cfg.search, metrics, exp.search_dir, seed, exp.identity("search"), writer=writer, truth=truth)
    result = search.run(resume=resume, progress=progress)
    return {"evaluations": len(result.history), "front_size": len(result.pareto)}


def ground_truth(exp: Experiment) -> Any:
    """The benchmark of the network the search's models are (``GroundTruth``), or None: the space's own, or for a
    proxy supernet (``lut.*`` declaring the full network) the full network's."""
    from moga.truefront import GroundTruth

    if exp.cfg.search.accuracy == "benchmark" or exp.lut_space == exp.space:
        return GroundTruth.for_space(exp.space, required=exp.cfg.search.accuracy == "benchmark")
    return GroundTruth.for_space(exp.lut_space)


def check_search_setup(exp: Experiment) -> None:
    """The search's objectives and constraints against the latency tables (exact metric ranges) and its accuracy
    source, so a search that cannot run is refused before a supernet is trained for it."""
    from moga.metrics import ArchMetrics
    from moga.objectives import check_satisfiable, parse_search

    check_accuracy_source(exp)
    metrics = ArchMetrics(exp.space, exp.tables(), None, exp.lut_space)
    check_satisfiable(parse_search(exp.cfg.search, metrics.tables, metrics.others, exp.cfg.supernet.eval.score)[1], metrics.bounds)


def run_experiment(exp: Experiment, progress: bool = True) -> Path:
    from moga.report import build_report
    from supernet.distributed import init_distributed

    ctx, device = init_distributed(exp.cfg.device)
    with exp.locked(exp.run, ctx):
        log = StageLog(exp.run, writer=ctx.is_main)
        check_run_dir(exp, log)
        _ = exp.space, exp.lut_space  # the spaces (trained, timed) resolve before anything is written
        check_accuracy_source(exp)  # before measuring latency for a search that cannot run
        if ctx.is_main:
            exp.write_config(exp.run)
        main_progress = progress and ctx.is_main
        if ctx.is_main:  # measuring latency in parallel on one machine would corrupt the timings
            run_stage(log, exp, "lut", lambda: lut_stage(exp, main_progress))
        _barrier(ctx)
        if not log.done("search", exp.identity("search"), stage_outputs(exp, "search")):
            check_search_setup(exp)
        if exp.needs_supernet:
            run_stage(log, exp, "supernet", lambda: supernet_stage(exp, ctx, device, main_progress))
        elif ctx.is_main:
            print(f"[supernet] not needed, skipped: {supernet_skip_reason(exp)}")
        run_stage(log, exp, "search", lambda: search_stage(exp, True, main_progress, ctx.is_main))
        if ctx.is_main:
            print(f"[report] {build_report(exp.run)}")
    return exp.run


def _barrier(ctx: Any) -> None:
    if getattr(ctx, "active", False):
        import torch.distributed as dist

        dist.barrier()
