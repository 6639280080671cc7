"""``moga arch show | sample``: inspect one architecture, draw random ones (and the space options that
``moga export`` shares)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from moga.cli.argtypes import add_actions, at_least, positive_float
from supernet.space import IMAGENET


def register(sub: argparse._SubParsersAction) -> None:
    arch = add_actions(sub, "arch", "inspect architectures")
    p = arch.add_parser("show", help="per-layer table, parameters and multiply-adds of one architecture")
    p.add_argument("arch", help="zoo name (moga_a, fairnas_c, ...), architecture string, or digit code (--space nasbench_macro 22212220)")
    space_args(p)
    p.add_argument("--lut", default=None, help="latency table JSON: adds the predicted latency")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_show)
    p = arch.add_parser("sample", help="random architecture strings of a space")
    space_args(p)
    p.set_defaults(space="moga")
    p.add_argument("-n", type=at_least(1), default=5)
    p.add_argument("--seed", type=at_least(0), default=0)
    p.set_defaults(func=cmd_sample)


def space_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--space", default=None, help="search space name or YAML path (default: the zoo model's, else moga)")
    d = IMAGENET
    p.add_argument(
        "--resolution", type=at_least(8), default=None, help=f"default {d.resolution}, or the benchmark's setting for a benchmarked space"
    )
    p.add_argument("--num-classes", type=at_least(1), default=None, help=f"default {d.num_classes}, or the benchmark's setting")
    p.add_argument("--width-mult", type=positive_float, default=None, help=f"default {d.width_mult}, or the benchmark's setting")
    p.add_argument("--variant", default=None, help=f"{d.variant} (default) or cifar (stride-1 stem for 32x32 inputs)")


def space(args: argparse.Namespace, name: str) -> Any:
    """The space ``name`` resolved with the given settings; unset ones default to the space's benchmark setting
    (NAS-Bench-Macro: 32², 10 classes) if it has one, else to ImageNet (``supernet.space.IMAGENET``)."""
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
        else IMAGENET.kwargs()
    )
    given = {k: getattr(args, k) for k in defaults if getattr(args, k) is not None}
    return get_space(name, **(defaults | given))


def resolve(args: argparse.Namespace) -> Any:
    """The architecture ``args.arch`` (zoo name, string or digit code) in the space the options name."""
    from supernet import resolve_arch
    from supernet.zoo import zoo_entry, zoo_name

    space_name = args.space or (zoo_entry(args.arch)[0] if zoo_name(args.arch) else "moga")
    return resolve_arch(args.arch, space(args, space_name))


def cmd_show(args: argparse.Namespace) -> None:
    from moga.archinfo import describe

    info = describe(resolve(args), args.lut)
    if args.json:
        print(json.dumps({k: v for k, v in info.items() if k != "table"}, indent=2))
    else:
        print(info["table"])


def cmd_sample(args: argparse.Namespace) -> None:
    import numpy as np

    from supernet import Arch

    drawn_from = space(args, args.space)
    rng = np.random.default_rng(args.seed)
    for _ in range(args.n):
        print(Arch.random(drawn_from, rng))
