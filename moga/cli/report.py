"""``moga report``: ``<run_dir>/report.html`` summarising a run."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="write <run_dir>/report.html summarising a run")
    p.add_argument("run_dir", help="run directory")
    p.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> None:
    from moga.report import build_report

    print(f"report: {build_report(args.run_dir)}")
