"""``moga lut ...``: build, show, validate, export-blocks and import latency tables (CLI glue over ``lut``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from lut.validate import VALIDATE_PROTOCOL
from moga.cli.argtypes import add_actions, add_overrides, at_least, positive_float
from supernet.errors import UserError
from supernet.space import IMAGENET


def register(sub: argparse._SubParsersAction) -> None:
    act = add_actions(sub, "lut", "latency lookup tables: build, show, validate, export blocks, import timings")

    p = act.add_parser("build", help="measure (or load and check) the experiment's latency tables into <run_dir>/lut/")
    p.add_argument("experiment", help="experiment YAML")
    add_overrides(p)
    p.add_argument("--table", default=None, help="only this table of lut.tables")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_build)

    p = act.add_parser("show", help="header, entries summary and calibration of a table")
    p.add_argument("table", help="table JSON")
    p.add_argument("--entries", action="store_true", help="also list every entry")
    p.set_defaults(func=cmd_show)

    p = act.add_parser("validate", help="measure random whole networks, calibrate the table, report accuracy")
    p.add_argument("table", help="table JSON (the calibration is stored in it)")
    p.add_argument("--nets", type=at_least(1), default=None, help="random networks to measure (calibration + held out)")
    p.add_argument("--calib", type=at_least(1), default=None, help="networks used to fit the calibration (default 20%%, at least 5)")
    p.add_argument("--seed", type=at_least(0), default=0)
    p.add_argument("--out", default=None, help="report directory (default: <table>_validation/ beside the table)")
    vp = VALIDATE_PROTOCOL
    p.add_argument("--warmup", type=at_least(0), default=vp.warmup, help=f"untimed runs per network (default {vp.warmup})")
    p.add_argument("--runs", type=at_least(1), default=vp.runs, help=f"timed runs per network and round (default {vp.runs})")
    p.add_argument(
        "--rounds", type=at_least(1), default=vp.rounds, help=f"rounds per measurement pass, two passes interleaved (default {vp.rounds})"
    )
    p.add_argument("--measured", default=None, help="CSV arch,measured_ms[,measured2_ms] timed on the table's device instead")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_validate)
    _register_export_and_import(act)


def _register_export_and_import(act: argparse._SubParsersAction) -> None:
    """``moga lut export-blocks`` and ``moga lut import``: timing blocks on another device and reading the timings back."""
    p = act.add_parser("export-blocks", help="write every block (and optionally whole networks) as ONNX, to time on a device")
    p.add_argument("experiment", help="experiment YAML")
    p.add_argument("out_dir", help="output directory")
    add_overrides(p)
    p.add_argument("--table", default=None, help="take the batch size from this table of lut.tables (default: the first)")
    p.add_argument("--nets", type=at_least(0), default=0, help="also export N random whole networks for on-device validation")
    p.add_argument("--seed", type=at_least(0), default=0)
    p.set_defaults(func=cmd_export_blocks)

    p = act.add_parser(
        "import",
        help="build a table from block timings measured elsewhere (CSV key,median_ms[,mean_ms,std_ms,count]), "
        "or one table per device and metric from a published block table (--format)",
    )
    p.add_argument("csv", nargs="?", help="measured timings CSV (with --format: the published table, default the copy moga ships)")
    p.add_argument("--format", default=None, help="a published block table's format: hw-nas-bench-fbnet")
    p.add_argument("--column", action="append", default=None, help="with --format: only this column (repeatable; default all)")
    p.add_argument("--out", required=True, help="table JSON to write (with --format: a directory, one <column>.json per column)")
    p.add_argument("--device", help="device name, e.g. pixel7-gpu (a published format names its devices)")
    p.add_argument("--runtime", help="runtime name, e.g. tflite")
    p.add_argument("--runtime-version", default="unknown")
    p.add_argument("--provider", help="execution provider / delegate, e.g. gpu")
    p.add_argument("--threads", type=at_least(1), default=1)
    p.add_argument("--batch", type=at_least(1), default=1)
    p.add_argument("--cpu-model", default="unknown", help="the device's processor, for the header")
    p.add_argument("--space", required=True, help="search space name or YAML path")
    p.add_argument("--resolution", type=at_least(8), required=True)
    p.add_argument("--num-classes", type=at_least(1), required=True)
    p.add_argument("--width-mult", type=positive_float, default=IMAGENET.width_mult, help=f"default {IMAGENET.width_mult}")
    p.add_argument("--variant", default=IMAGENET.variant, help=f"default {IMAGENET.variant}")
    p.set_defaults(func=cmd_import)


def cmd_build(args: argparse.Namespace) -> None:
    from moga.experiment import Experiment
    from moga.pipeline import build_experiment_tables  # the `moga run` lut stage: one implementation

    build_experiment_tables(Experiment.load(args.experiment, args.overrides), only=args.table, progress=not args.no_progress)


def _report(calibrated: Any, report: Any, path: Path, out: str | None) -> None:
    from lut.validate import write_report

    out_dir = Path(out) if out else path.with_name(f"{path.stem}_validation")
    files = write_report(report, out_dir, f"{path.name}: {calibrated.header['device']}")
    calibrated.save(path)
    print(report.summary())
    print(f"calibration stored in {path}; report: {files['csv']}, {files['png']}")


def cmd_validate(args: argparse.Namespace) -> None:
    from lut.measure import MeasureProtocol, backend_for_header
    from lut.table import LatencyTable, header_space
    from lut.validate import validate, validate_measured

    path = Path(args.table)
    table = LatencyTable.load(path)
    space = header_space(table.header)
    table.check_space(space, user="the space named in its header")
    if args.measured:
        calibrated, report = validate_measured(table, space, args.measured, args.calib)
        _report(calibrated, report, path, args.out)
        return
    if args.nets is None:
        raise UserError("give --nets N (random networks to measure here) or --measured CSV (timings from the device)")
    backend = backend_for_header(table.header)
    try:
        protocol = MeasureProtocol(args.warmup, args.runs, args.rounds)
        calibrated, report = validate(table, space, backend, args.nets, args.calib, args.seed, protocol, progress=not args.no_progress)
    finally:
        backend.close()
    _report(calibrated, report, path, args.out)


def cmd_show(args: argparse.Namespace) -> None:
    import numpy as np

    from lut.table import LatencyTable, header_space

    table = LatencyTable.load(args.table)
    print(f"{args.table}")
    for k, v in table.header.items():
        shown = f"{len(v['layers'])} searchable layers (the whole space, stored)" if k == "space_spec" and isinstance(v, dict) else v
        print(f"  {k:<16} {shown}")
    med = np.array([e.median_ms for e in table.entries.values()])
    unit = table.header.get("unit", "ms")  # an imported energy table holds mJ in its median_ms fields
    kinds: dict[str, int] = {}
    for key in table.entries:
        kinds[key.split(":")[0]] = kinds.get(key.split(":")[0], 0) + 1
    print(
        f"entries: {len(med)} ({', '.join(f'{n} {k}' for k, n in kinds.items())}); median_ms from {med.min():.4f} to {med.max():.4f}, sum {med.sum():.3f}"
    )
    cal = table.calibration
    if cal is None:
        print("calibration: none (run `moga lut validate`)")
    else:
        print(f"calibration: predicted = {cal.describe()}, fitted on {cal.fitted_on} networks")
        i = cal.info
        if "mape_calibrated" in i:
            noise = f" (between two measurement passes: τ {i['tau_noise']:.3f})" if "tau_noise" in i else ""
            print(
                f"  held out {i.get('held_out', '?')}: MAPE {i['mape_calibrated']:.2f}%, within ±5% {i['within_5_calibrated']:.0f}%, "
                f"within ±10% {i['within_10_calibrated']:.0f}%, τ {i['tau_calibrated']:.3f}{noise}"
            )
    try:
        predictor = table.predictor(header_space(table.header))
    except UserError as exc:
        print(f"prediction: unavailable ({exc})")
    else:
        lo = predictor.fixed_ms + sum(a.min() for a in predictor.layer_ms)
        hi = predictor.fixed_ms + sum(a.max() for a in predictor.layer_ms)
        print(
            f"space range: {predictor.calibration.apply(lo):.3f} to {predictor.calibration.apply(hi):.3f} {unit} (raw {lo:.3f} to {hi:.3f})"
        )
    if args.entries:
        width = max(len(k) for k in table.entries)
        for k, e in table.entries.items():
            print(f"  {k:<{width}}  {e.median_ms:9.4f} {unit}  (mean {e.mean_ms:.4f}, std {e.std_ms:.4f}, n {e.count})")


def cmd_export_blocks(args: argparse.Namespace) -> None:
    from lut.build import export_blocks
    from moga.experiment import Experiment

    exp = Experiment.load(args.experiment, args.overrides)
    names = exp.table_names(args.table)
    batch = exp.cfg.lut.tables[names[0]].batch if names else 1
    space = exp.lut_space
    n = export_blocks(space, args.out_dir, batch=batch, nets=args.nets, seed=args.seed)
    nets = f" and {n['nets']} networks (nets/manifest.csv)" if n["nets"] else ""
    print(f"wrote {n['blocks']} blocks (manifest.csv){nets} of space {space.name} at {space.resolution}, batch {batch}, to {args.out_dir}")


def cmd_import(args: argparse.Namespace) -> None:
    from lut.build import import_csv
    from supernet.space import get_space

    space = get_space(
        args.space, num_classes=args.num_classes, resolution=args.resolution, width_mult=args.width_mult, variant=args.variant
    )
    if args.format:
        _import_published(args, space)
        return
    lacking = [f"--{n}" for n in ("device", "runtime", "provider") if getattr(args, n) is None]
    if lacking or args.csv is None:
        raise UserError(f"a timings CSV import needs {', '.join((['the CSV'] if args.csv is None else []) + lacking)} (or --format)")
    header = {
        "device": args.device,
        "runtime": args.runtime,
        "runtime_version": args.runtime_version,
        "provider": args.provider,
        "threads": args.threads,
        "batch": args.batch,
        "cpu_model": args.cpu_model,
    }
    table = import_csv(args.csv, space, header)
    table.save(args.out)
    print(
        f"imported {len(table.entries)} entries for {space.name} at {space.resolution} ({args.device}, {args.runtime}/{args.provider}) -> {args.out}"
    )


def _import_published(args: argparse.Namespace, space: Any) -> None:
    from lut.published import get_format, import_published

    tables = import_published(space, get_format(args.format), args.csv, args.column)
    out = Path(args.out)
    for name, table in tables.items():
        table.save(out / f"{name}.json")
        h = table.header
        print(
            f"{out / name}.json: {h['device']} ({h['runtime']}/{h['provider']}) {h['metric']} in {h['unit']}, {len(table.entries)} entries"
        )
    print(f"imported {len(tables)} table(s) of {args.format} for {space.name} at {space.resolution}, {space.num_classes} classes")
