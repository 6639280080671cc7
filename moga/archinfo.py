"""A readable description of one architecture: per-layer shapes, parameters, multiply-adds."""

from __future__ import annotations

from typing import Any

import pandas as pd

from supernet.arch import Arch
from supernet.errors import UserError
from supernet.model import block_cost, count


def _block_names(arch: Arch) -> list[str]:
    space = arch.space
    front = ["stem"] + (["separable"] if space.separable else [])
    return front + [f"layer{i + 1}" for i in range(space.num_layers)] + ["head"]


def describe(arch: Arch, lut_path: str | None = None) -> dict[str, Any]:
    """JSON-able facts about ``arch`` (arch, params, macs[, latency_ms]) plus a printable ``table``."""
    blocks = arch.space.walk(arch.genes)
    # a kernel larger than the map it sees is built cropped (SearchSpace.layer_shape): say so
    tokens = [
        c.token
        + (f" (as k{b.kernel})" if b.kind == "ir" and c.kernel != b.kernel else "")
        + (" (1x1 conv)" if b.kind == "skip" and not b.is_identity else "")
        for c, b in zip(arch.choices, blocks[-1 - arch.space.num_layers : -1], strict=True)
    ]
    ops = ["", ""][: len(blocks) - arch.space.num_layers - 1] + tokens + [""]
    rows = []
    for name, op, b in zip(_block_names(arch), ops, blocks, strict=True):
        params, macs = block_cost(b)
        rows.append(
            {
                "block": name,
                "op": op or b.kind,
                "input": f"{b.in_hw}x{b.in_hw}x{b.in_ch}",
                "output": f"{b.out_hw}x{b.out_hw}x{b.out_ch}",
                "stride": b.stride,
                "act": b.act,
                "params": f"{params:,}",
                "MAdds (M)": f"{macs / 1e6:.2f}",
            }
        )
    params, macs = count(arch)
    info: dict[str, Any] = {
        "arch": str(arch),
        "space": arch.space.name,
        "resolution": arch.space.resolution,
        "num_classes": arch.space.num_classes,
        "params": params,
        "macs": macs,
    }
    footer = f"params {params:,}   multiply-adds {macs / 1e6:.1f}M"
    if arch.code is not None:
        info["code"] = arch.code
    if arch.space.benchmark:
        from supernet.benchmark import load_benchmark

        bench = load_benchmark(arch.space.benchmark)
        try:
            bench.check_space(arch.space)
        except UserError:
            pass  # another resolution or width than the benchmarked one: no trained accuracy applies
        else:
            rec = bench.lookup(arch)
            info["benchmark"] = {"name": bench.name, "network": rec.code, "test_acc": list(rec.test_acc), "mean_acc": rec.mean_acc}
            same = "" if rec.code == arch.code else f" (as {rec.code}, the same network)"
            seeds = " / ".join(f"{a:.2f}" for a in rec.test_acc)
            footer += f"\n{bench.name}{same}: trained test accuracy {rec.mean_acc:.2f}% (seeds {seeds}; {bench.info.dataset})"
    if lut_path:
        from lut.table import LatencyTable

        table = LatencyTable.load(lut_path)
        info["latency_ms"] = float(table.predict(arch))
        footer += f"   predicted latency {info['latency_ms']:.3f} ms ({table.header.get('device', '?')})"
    info["table"] = f"{arch}\n\n{pd.DataFrame(rows).to_string(index=False)}\n\n{footer}"
    return info
