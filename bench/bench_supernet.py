"""Benchmark: the FairNAS step with shared stem features vs 12 standalone path steps, and throughput.

    .venv/bin/python bench/bench_supernet.py --variant imagenet   # MoGA space, ImageNet strides at 32², batch 128
    .venv/bin/python bench/bench_supernet.py --variant imagenet --width-mult 0.5 --batch 64   # the quickstart's
    .venv/bin/python bench/bench_supernet.py --width-mult 0.25    # cifar strides (32x32 maps): 16x the work

Learning efficiency (item 11): train a supernet on the embedded CIFAR-10 subset with ``supernet.*``
overrides, then report random-path validation accuracy (BN recalibrated) and, with ``--standalone``, a
standalone network trained for the same number of optimizer updates with the same settings:

    .venv/bin/python bench/bench_supernet.py learn --variant imagenet --width-mult 0.5 steps=300 batch_size=64 warmup_steps=10
    .venv/bin/python bench/bench_supernet.py learn --variant imagenet --width-mult 0.5 --no-supernet --standalone random steps=300 batch_size=64 warmup_steps=10

Measured in one process, interleaved, so ratios are comparable on a shared, noisy machine:

* fair step   - ``supernet_step``: stem + separable once, 12 path forward/backward passes into the detached
                features, one backward through the shared part, one SGD update;
* 12 paths    - the same 12 paths as 12 standalone single-path steps (full forward/backward including the
                stem, and an SGD update each), i.e. what a direct implementation of a fair step costs;
* 12 standalone - the same 12 paths extracted into 12 standalone networks, each with its own optimizer;
* standalone  - a plain training loop of MoGA-A (``build_model``), batch ``--batch``.

Throughput is in path-images/s (images x paths per second), so the supernet and a standalone network
compare directly. Peak memory is the process's peak RSS during each method (the kernel's high-water mark
is reset through ``/proc/self/clear_refs``) minus the RSS before it, after one warm-up run, each method in
a fresh process (memory a method frees stays mapped by malloc and would flatter the methods measured later).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from supernet import Arch, build_model, get_space
from supernet.data import Dataset
from supernet.optim import Precision
from supernet.sampler import FairSampler
from supernet.step import supernet_step
from supernet.supernet import Supernet


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


def _memory_in_subprocess(method: str) -> float:
    """Peak memory of one method in a fresh process: in one process, memory freed by the method measured
    first stays mapped (malloc keeps it) and would make every later method look cheaper."""
    argv, skip = [], False
    for a in sys.argv[1:]:  # drop --json PATH / --json=PATH: only the parent writes results
        if not skip and not a.startswith("--json"):
            argv.append(a)
        skip = a == "--json"
    done = subprocess.run([sys.executable, __file__, *argv, "--only", method], capture_output=True, text=True, check=True)
    return float(json.loads(done.stdout.strip().splitlines()[-1])["peak_mb"])


def timed(fn: Callable[[], None]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", nargs="?", default="step", choices=["step", "learn"], help="step timing (default) or a learning run")
    p.add_argument("overrides", nargs="*", help="learn: SupernetConfig key=value settings, e.g. steps=40 lr=0.2")
    p.add_argument("--standalone", default=None, help="learn: also train this zoo model (or 'random': a random path) from scratch")
    p.add_argument("--eval-paths", type=int, default=4, help="learn: random paths validated")
    p.add_argument("--no-supernet", action="store_true", help="learn: only the --standalone network")
    p.add_argument("--calib", type=int, default=500, help="learn: BN recalibration images")
    p.add_argument("--val", type=int, default=0, help="learn: validation images (0: all 1000 of search_val)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--space", default="moga")
    p.add_argument("--variant", default="cifar")
    p.add_argument("--resolution", type=int, default=32)
    p.add_argument("--width-mult", type=float, default=1.0)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--repeats", type=int, default=2, help="timed rounds (after one warm-up round); medians reported")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--no-channels-last", action="store_true")
    p.add_argument("--json", default=None, help="also write the results here")
    p.add_argument("--only", default=None, help=argparse.SUPPRESS)  # internal: one method once, print its peak memory
    args = p.parse_intermixed_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.mode == "learn":
        learn(args)
        return
    channels_last = not args.no_channels_last
    fmt = torch.channels_last if channels_last else torch.contiguous_format

    space = get_space(args.space, num_classes=10, resolution=args.resolution, width_mult=args.width_mult, variant=args.variant)
    torch.manual_seed(0)
    net = Supernet(space).train().to(memory_format=fmt)
    # the plain standalone loop: MoGA-A in the MoGA space, elsewhere the path of every layer's last choice
    ref_name, ref = (
        ("MoGA-A", "moga_a") if space.name == "moga" else ("last-choice path", Arch(space, tuple(n - 1 for n in space.n_choices)))
    )
    standalone = build_model(ref, args.space, num_classes=10, resolution=args.resolution, width_mult=args.width_mult, variant=args.variant)
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

    # the literal baseline: the same m paths as m standalone networks, each with its own optimizer
    singles = [net.extract(Arch(space, genes)).train().to(memory_format=fmt) for genes in paths]
    single_sgds = [torch.optim.SGD(s.parameters(), lr=1e-3, momentum=0.9, nesterov=True) for s in singles]

    def standalone_paths() -> None:
        for single, opt in zip(singles, single_sgds, strict=True):
            opt.zero_grad(set_to_none=True)
            criterion(single(x), y).backward()
            opt.step()

    def shared_part() -> None:  # what the fair step saves, m - 1 times: stem + separable forward/backward
        features = net.shared_features(x)
        features.backward(torch.ones_like(features))

    def standalone_steps() -> None:  # m updates, so the work matches one fair step
        for _ in range(m):
            sgd_standalone.zero_grad(set_to_none=True)
            criterion(standalone(x), y).backward()
            sgd_standalone.step()

    methods = {
        "fair step": fair_step,
        f"{m} path steps": path_steps,
        f"{m} standalone": standalone_paths,
        f"{ref_name} x{m}": standalone_steps,
        "shared part": shared_part,
    }
    if args.only is not None:
        fn = methods[args.only]
        fn()  # warm-up: one-time allocations (weights' gradients, momentum, oneDNN caches)
        print(json.dumps({"peak_mb": peak_rss_mb(fn)}))
        return
    memory = {name: _memory_in_subprocess(name) for name in methods}
    times: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(args.repeats):
        for name, fn in methods.items():
            times[name].append(timed(fn))
    med = {name: statistics.median(t) for name, t in times.items()}
    path_images = m * args.batch

    print(
        f"{space.name} space, {args.variant} variant {args.resolution}², width {args.width_mult}, batch {args.batch}, {m} paths, threads {torch.get_num_threads()}, channels_last {channels_last}"
    )
    for name in list(methods)[:4]:
        print(
            f"  {name:<16} {med[name]:7.2f} s   {path_images / med[name]:7.1f} path-images/s   peak +{memory[name]:6.0f} MB   runs {[round(t, 2) for t in times[name]]}"
        )
    ratio = med["fair step"] / med[f"{m} path steps"]
    bound = 1 - (m - 1) * med["shared part"] / med[f"{m} path steps"]
    print(
        f"  shared part (stem + separable forward/backward) {med['shared part']:.3f} s = {100 * m * med['shared part'] / med[f'{m} path steps']:.1f}% of a path step"
    )
    literal = med["fair step"] / med[f"{m} standalone"]
    ips = med[f"{ref_name} x{m}"] / med["fair step"]
    print(
        f"fair step / sum of {m} standalone path steps = {ratio:.3f}  (exact sharing can reach {bound:.3f}: the shared part runs once, not {m} times)"
    )
    print(f"fair step / the same {m} paths as standalone networks (own optimizers) = {literal:.3f}")
    print(f"supernet path-images/s / standalone {ref_name} images/s = {ips:.3f}")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "args": vars(args),
                    "seconds": times,
                    "peak_mb": memory,
                    "fair_ratio": ratio,
                    "fair_ratio_standalone": literal,
                    "ratio_bound": bound,
                    "throughput_ratio": ips,
                },
                indent=2,
            )
        )


# ----------------------------------------------------------------------------- learning efficiency
def recalibrated_accuracy(model: torch.nn.Module, data: Dataset, calib: int, seed: int, channels_last: bool) -> float:
    """Validation accuracy (%) of a standalone network with BN statistics recomputed like the supernet's."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    model.eval()
    with torch.inference_mode():
        if calib:
            for bn in bns:
                bn.reset_running_stats()
                bn.momentum = None
                bn.train()
            images = data.calibration_batch(calib, seed, channels_last)
            for i in range(0, len(images), 250):
                model(images[i : i + 250])
            model.eval()
        correct = total = 0
        for x, y in data.loader("search_val", 250, channels_last=channels_last):
            correct += int((model(x).argmax(1) == y).sum())
            total += len(y)
    return 100.0 * correct / total


def learn(args: argparse.Namespace) -> None:
    import tempfile

    import yaml

    from supernet.config import SupernetConfig
    from supernet.data import load_dataset
    from supernet.evaluate import SubnetEvaluator
    from supernet.optim import Update, build_optimizer, build_scheduler
    from supernet.standalone import standalone_step
    from supernet.train import TrainingSetup, fit, train_supernet, validation_archs

    settings = {k: yaml.safe_load(v) for k, v in (o.split("=", 1) for o in args.overrides)}
    cfg = SupernetConfig(**{"checkpoint_every": 10**6, **settings, "eval_paths": 0})
    space = get_space(args.space, num_classes=10, resolution=args.resolution, width_mult=args.width_mult, variant=args.variant)
    data = load_dataset("embedded", resolution=args.resolution, seed=args.seed)
    result: dict[str, object] = {"space": f"{space.name}/{args.variant}/{args.resolution}/w{args.width_mult}", "settings": settings}
    with tempfile.TemporaryDirectory() as tmp:
        archs = validation_archs(space, args.eval_paths, seed=1234)  # the same paths for every setting
        if not args.no_supernet:
            t = time.perf_counter()
            net = train_supernet(space, data, cfg, Path(tmp) / "supernet", seed=args.seed, progress=False)
            result["supernet_train_s"] = round(time.perf_counter() - t, 1)
            evaluator = SubnetEvaluator(net, data, args.calib, args.val, 250, seed=args.seed, channels_last=cfg.channels_last)
            acc = evaluator.evaluate(archs)
            result["paths_val_acc"] = [round(a, 1) for a in acc]
            result["paths_val_mean"] = round(statistics.mean(acc), 2)
        if args.standalone:
            arch = archs[0] if args.standalone == "random" else args.standalone
            torch.manual_seed(args.seed)
            model = build_model(arch, args.space, 10, args.resolution, args.width_mult, args.variant)
            if cfg.channels_last:
                model = model.to(memory_format=torch.channels_last)
            optimizer = build_optimizer(model, cfg)
            precision = Precision(torch.device("cpu"), False)
            criterion = torch.nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
            run = TrainingSetup(
                loader=data.loader("train", cfg.batch_size, seed=args.seed, channels_last=cfg.channels_last, augment=cfg.augment),
                step_fn=standalone_step(model, criterion, precision),
                update=Update(optimizer, build_scheduler(optimizer, cfg.steps, cfg.warmup_steps), precision, cfg.grad_clip),
                steps=cfg.steps,
                out_dir=Path(tmp) / "standalone",
                checkpoint_every=10**6,
                progress=False,
                desc=f"standalone {args.standalone}",
            )
            t = time.perf_counter()
            fit(model, run)
            result["standalone_train_s"] = round(time.perf_counter() - t, 1)
            result["standalone_val_acc"] = round(recalibrated_accuracy(model, data, args.calib, args.seed, cfg.channels_last), 2)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
