"""``moga export``: a standalone network to ONNX, parity-checked with onnxruntime."""

from __future__ import annotations

import argparse

from moga.cli.arch import resolve, space_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a standalone network to ONNX (parity-checked with onnxruntime)")
    p.add_argument("arch", help="zoo name or architecture string")
    space_args(p)
    p.add_argument("--onnx", required=True, help="output .onnx path")
    p.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> None:
    from supernet.export import export_onnx, onnx_parity
    from supernet.model import MobileNet

    arch = resolve(args)
    model = MobileNet(arch).eval()
    shape = (1, 3, arch.space.resolution, arch.space.resolution)
    path = export_onnx(model, shape, args.onnx)
    err = onnx_parity(model, path, shape)
    print(f"wrote {path} ({arch.space.name}, input {shape}); onnxruntime max |diff| vs torch = {err:.2e}")
