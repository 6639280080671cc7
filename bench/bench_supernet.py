"""Benchmark: the FairNAS step with shared stem features vs 12 standalone path steps, and throughput.

    .venv/bin/python bench/bench_supernet.py                      # MoGA space, cifar variant 32², batch 128
    .venv/bin/python bench/bench_supernet.py --batch 32 --repeats 3
    .venv/bin/python bench/bench_supernet.py --variant imagenet   # the 10x cheaper 32² variant

Measured in one process, interleaved, so ratios are comparable on a shared, noisy machine:

* fair step   - ``supernet_step``: stem + separable once, 12 path forward/backward passes into the detached
                features, one backward through the shared part, one SGD update;
* 12 paths    - the same 12 paths as 12 standalone single-path steps (full forward/backward including the
                stem, and an SGD update each), i.e. what a direct implementation of a fair step costs;
* standalone  - a plain training loop of MoGA-A (``build_model``), batch ``--batch``.

Throughput is in path-images/s (images x paths per second), so the supernet and a standalone network
compare directly. Peak memory is the process's peak RSS during each method (the kernel's high-water mark
is reset through ``/proc/self/clear_refs`` before each), minus the RSS before it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from supernet import build_model, get_space
from supernet.sampler import FairSampler
from supernet.supernet import Supernet
from supernet.train import Precision, supernet_step


def _rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def peak_rss_mb(fn: Callable[[], None]) -> float:
    """Extra peak resident memory while ``fn`` runs (MB), via the kernel's resettable high-water mark."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return float("nan")
    before = _rss_kb("VmRSS")
    fn()
    return (_rss_kb("VmHWM") - before) / 1024


def timed(fn: Callable[[], None]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--space", default="moga")
    p.add_argument("--variant", default="cifar")
    p.add_argument("--resolution", type=int, default=32)
    p.add_argument("--width-mult", type=float, default=1.0)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--repeats", type=int, default=2, help="timed rounds (after one warm-up round); medians reported")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--no-channels-last", action="store_true")
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    channels_last = not args.no_channels_last
    fmt = torch.channels_last if channels_last else torch.contiguous_format

    space = get_space(args.space, num_classes=10, resolution=args.resolution, width_mult=args.width_mult, variant=args.variant)
    torch.manual_seed(0)
    net = Supernet(space).train().to(memory_format=fmt)
    standalone = build_model("moga_a", num_classes=10, resolution=args.resolution, width_mult=args.width_mult, variant=args.variant)
    standalone = standalone.train().to(memory_format=fmt)
    x = torch.randn(args.batch, 3, args.resolution, args.resolution).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (args.batch,))
    criterion = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    sgd = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9, nesterov=True)
    sgd_standalone = torch.optim.SGD(standalone.parameters(), lr=1e-3, momentum=0.9, nesterov=True)
    precision = Precision(torch.device("cpu"), False)
    paths = FairSampler(space.n_choices, seed=0).sample()
    m = len(paths)

    def fair_step() -> None:
        sgd.zero_grad(set_to_none=True)
        supernet_step(net, x, y, paths, criterion, precision, "mean")
        sgd.step()

    def path_steps() -> None:
        for genes in paths:
            sgd.zero_grad(set_to_none=True)
            criterion(net(x, genes), y).backward()
            sgd.step()

    def standalone_steps() -> None:  # m updates, so the work matches one fair step
        for _ in range(m):
            sgd_standalone.zero_grad(set_to_none=True)
            criterion(standalone(x), y).backward()
            sgd_standalone.step()

    methods = {"fair step": fair_step, f"{m} path steps": path_steps, f"MoGA-A x{m}": standalone_steps}
    memory = {name: peak_rss_mb(fn) for name, fn in methods.items()}  # also the warm-up round
    times: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(args.repeats):
        for name, fn in methods.items():
            times[name].append(timed(fn))
    med = {name: statistics.median(t) for name, t in times.items()}
    path_images = m * args.batch

    print(
        f"{space.name} space, {args.variant} variant {args.resolution}², width {args.width_mult}, batch {args.batch}, {m} paths, threads {torch.get_num_threads()}, channels_last {channels_last}"
    )
    for name in methods:
        print(
            f"  {name:<16} {med[name]:7.2f} s   {path_images / med[name]:7.1f} path-images/s   peak +{memory[name]:6.0f} MB   runs {[round(t, 2) for t in times[name]]}"
        )
    ratio = med["fair step"] / med[f"{m} path steps"]
    ips = med[f"MoGA-A x{m}"] / med["fair step"]
    print(f"fair step / sum of {m} standalone path steps = {ratio:.3f}  (target <= 0.9)")
    print(f"supernet path-images/s / standalone MoGA-A images/s = {ips:.3f}")
    if args.json:
        Path(args.json).write_text(
            json.dumps({"args": vars(args), "seconds": times, "peak_mb": memory, "fair_ratio": ratio, "throughput_ratio": ips}, indent=2)
        )


if __name__ == "__main__":
    main()
