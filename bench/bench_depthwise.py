"""Benchmark: ``DepthwiseConv2d`` vs ``nn.Conv2d(groups=channels)`` forward + backward on CPU.

    .venv/bin/python bench/bench_depthwise.py            # the depthwise shapes of MoGA-A at 32², batch 128
    .venv/bin/python bench/bench_depthwise.py --repeats 10

Both run interleaved in one process, per shape, on the same tensors (channels_last); the table gives the
median milliseconds of one forward + backward pass (input and weight gradients) and the speed-up, and
the largest difference of outputs and gradients.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from supernet.depthwise import DepthwiseConv2d

# (batch, channels, input size, kernel, stride): MoGA-A at 32² (imagenet variant: maps 16..1; cifar: 32..4)
SHAPES = [
    (128, 96, 16, 5, 2),
    (128, 144, 8, 7, 1),
    (128, 240, 4, 5, 1),
    (128, 480, 2, 7, 1),
    (128, 672, 2, 3, 2),
    (128, 960, 1, 5, 1),
    (128, 144, 32, 7, 1),
    (128, 960, 4, 5, 1),
]


def run(conv: nn.Module, x: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, ...]:
    x = x.detach().requires_grad_()
    conv.zero_grad(set_to_none=True)
    y = conv(x)
    y.backward(g)
    return y.detach(), x.grad, conv.weight.grad


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"threads {torch.get_num_threads()}, channels_last, forward + backward, median of {args.repeats}")
    print(f"{'batch, channels, size, kernel, stride':<40} {'nn.Conv2d':>10} {'Depthwise':>10} {'speed-up':>9} {'max diff':>9}")
    total = {"plain": 0.0, "ours": 0.0}
    for b, c, hw, k, s in SHAPES:
        torch.manual_seed(0)
        ours = DepthwiseConv2d(c, k, s)
        plain = nn.Conv2d(c, c, k, s, k // 2, groups=c, bias=False)
        plain.weight.data.copy_(ours.weight.data)
        x = torch.randn(b, c, hw, hw).contiguous(memory_format=torch.channels_last)
        g = torch.randn_like(plain(x)).contiguous(memory_format=torch.channels_last)
        diff = max(float((a - r).abs().max()) for a, r in zip(run(ours, x, g), run(plain, x, g), strict=True))
        times: dict[str, list[float]] = {"plain": [], "ours": []}
        for _ in range(args.repeats):
            for name, conv in (("plain", plain), ("ours", ours)):
                t = time.perf_counter()
                run(conv, x, g)
                times[name].append(1000 * (time.perf_counter() - t))
        med = {name: statistics.median(v) for name, v in times.items()}
        for name in total:
            total[name] += med[name]
        print(
            f"{f'{b}, {c}, {hw}x{hw}, {k}x{k}, {s}':<40} {med['plain']:10.2f} {med['ours']:10.2f} {med['plain'] / med['ours']:8.1f}x {diff:9.1e}"
        )
    print(f"{'all shapes':<40} {total['plain']:10.2f} {total['ours']:10.2f} {total['plain'] / total['ours']:8.1f}x")


if __name__ == "__main__":
    main()
