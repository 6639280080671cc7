"""The ``moga`` command line. Each sub-command is a thin wrapper over a library function; user
errors (``UserError``) print one line and exit 2, never a traceback."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from moga.cli_types import at_least, positive_float
from supernet.errors import UserError


def _space_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--space", default=None, help="search space name or YAML path (default: the zoo model's, else moga)")
    p.add_argument("--resolution", type=at_least(8), default=None, help="default 224, or the benchmark's setting for a benchmarked space")
    p.add_argument("--num-classes", type=at_least(1), default=None, help="default 1000, or the benchmark's setting")
    p.add_argument("--width-mult", type=positive_float, default=None, help="default 1.0, or the benchmark's setting")
    p.add_argument("--variant", default=None, help="imagenet (default) or cifar (stride-1 stem for 32x32 inputs)")


def _space(args: argparse.Namespace, name: str):
    """The space ``name`` resolved with the given settings; unset ones default to the space's benchmark setting
    (NAS-Bench-Macro: 32², 10 classes) if it has one, else to ImageNet (224², 1000 classes)."""
    from supernet import get_space
    from supernet.benchmark import BENCHMARKS

    benchmark = BENCHMARKS.get(get_space(name).benchmark or "")
    defaults = (
        {
            "resolution": benchmark.resolution,
            "num_classes": benchmark.num_classes,
            "width_mult": benchmark.width_mult,
            "variant": benchmark.variant,
        }
        if benchmark
        else {"resolution": 224, "num_classes": 1000, "width_mult": 1.0, "variant": "imagenet"}
    )
    given = {k: getattr(args, k) for k in defaults if getattr(args, k) is not None}
    return get_space(name, **(defaults | given))


def _resolve(args: argparse.Namespace):
    from supernet import resolve_arch
    from supernet.zoo import zoo_entry, zoo_name

    space_name = args.space or (zoo_entry(args.arch)[0] if zoo_name(args.arch) else "moga")
    return resolve_arch(args.arch, _space(args, space_name))


def cmd_arch_show(args: argparse.Namespace) -> None:
    from moga.archinfo import describe

    info = describe(_resolve(args), args.lut)
    if args.json:
        print(json.dumps({k: v for k, v in info.items() if k != "table"}, indent=2))
    else:
        print(info["table"])


def cmd_arch_sample(args: argparse.Namespace) -> None:
    import numpy as np

    from supernet import Arch

    space = _space(args, args.space)
    rng = np.random.default_rng(args.seed)
    for _ in range(args.n):
        print(Arch.random(space, rng))


def cmd_export(args: argparse.Namespace) -> None:
    from supernet.export import export_onnx, onnx_parity
    from supernet.model import MobileNet

    arch = _resolve(args)
    model = MobileNet(arch).eval()
    shape = (1, 3, arch.space.resolution, arch.space.resolution)
    path = export_onnx(model, shape, args.onnx)
    err = onnx_parity(model, path, shape)
    print(f"wrote {path} ({arch.space.name}, input {shape}); onnxruntime max |diff| vs torch = {err:.2e}")


class OneLineErrors(argparse.ArgumentParser):
    """A usage mistake is one line too (``moga: error: ...``, exit 2), like every other error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"moga: error: {self.prog}: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrors(prog="moga", description="Hardware-aware neural architecture search (MoGA / FairNAS).")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    arch = sub.add_parser("arch", help="inspect architectures").add_subparsers(dest="arch_command", required=True, metavar="ACTION")
    p = arch.add_parser("show", help="per-layer table, parameters and multiply-adds of one architecture")
    p.add_argument("arch", help="zoo name (moga_a, fairnas_c, ...), architecture string, or digit code (--space nasbench_macro 22212220)")
    _space_args(p)
    p.add_argument("--lut", default=None, help="latency table JSON: adds the predicted latency")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_arch_show)
    p = arch.add_parser("sample", help="random architecture strings of a space")
    _space_args(p)
    p.set_defaults(space="moga")
    p.add_argument("-n", type=at_least(1), default=5)
    p.add_argument("--seed", type=at_least(0), default=0)
    p.set_defaults(func=cmd_arch_sample)

    p = sub.add_parser("export", help="export a standalone network to ONNX (parity-checked with onnxruntime)")
    p.add_argument("arch", help="zoo name or architecture string")
    _space_args(p)
    p.add_argument("--onnx", required=True, help="output .onnx path")
    p.set_defaults(func=cmd_export)

    for register in _extra_commands():
        register(sub)
    _intermix_overrides(parser)
    return parser


class IntermixedParser(OneLineErrors):
    """Lets ``key=value`` overrides come after the options (``... --pick 3 retrain.epochs=1``).

    A plain parser binds the ``nargs="*"`` overrides as soon as it meets the experiment path, so later ones
    are "unrecognized"; intermixed parsing collects positionals around the options. The flag guards the
    recursion: ``parse_known_intermixed_args`` itself calls ``parse_known_args``.
    """

    _intermixing = False

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        if self._intermixing:
            return super().parse_known_args(args, namespace)
        self._intermixing = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixing = False


def _intermix_overrides(parser: argparse.ArgumentParser) -> None:
    """Every command taking ``key=value`` overrides parses intermixed (``moga search EXP.yaml --resume
    search.generations=8``). Only those: intermixed parsing refuses parsers that hold sub-commands, and the
    sub-parsers action builds plain parsers, so the class is set here, once, on the finished tree."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in set(action.choices.values()):
                _intermix_overrides(child)
        elif action.dest == "overrides":
            parser.__class__ = IntermixedParser


def _extra_commands() -> list[Callable[[argparse._SubParsersAction], None]]:
    """Sub-commands contributed by the pipeline stages (each module registers its own)."""
    from moga import cli_lut, cli_retrain, cli_run, cli_supernet

    return [cli_lut.register, cli_supernet.register, cli_run.register, cli_retrain.register]


# the operation an OSError interrupted, by the innermost call in its traceback that names one
_OPERATIONS = {
    "mkdir": "create directory",
    "makedirs": "create directory",
    "mkstemp": "create a file in",
    "open": "open",
    "read_text": "read",
    "read_bytes": "read",
    "write_text": "write",
    "write_bytes": "write",
    "savefig": "write",
    "replace": "replace",
    "rename": "rename",
    "unlink": "delete",
    "rmtree": "delete",
    "rmdir": "delete",
    "iterdir": "list",
    "scandir": "list",
    "listdir": "list",
    "copyfile": "copy",
    "copytree": "copy",
    "stat": "inspect",
}


def os_error_line(exc: OSError) -> str:
    """``cannot <operation> <path>: <reason>`` for an OSError that reached the command line."""
    import re
    import traceback

    from supernet.errors import os_error_message

    operation = "access"
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        called = [frame.name, *re.findall(r"(\w+)\(", frame.line or "")]
        hit = next((_OPERATIONS[c] for c in reversed(called) if c in _OPERATIONS), None)
        if hit:
            operation = hit
            break
    return os_error_message(exc, operation)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. The error boundary: a ``UserError`` or an ``OSError`` on a path becomes one line on
    stderr and exit code 2 (writes are atomic, so nothing is left half-written); Ctrl-C is exit 130."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error already printed as one line
        return int(exc.code or 0)
    try:
        args.func(args)
    except UserError as exc:
        print(f"moga: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"moga: error: {os_error_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("moga: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
