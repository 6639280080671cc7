"""One short run that shows moga's GPU path works on this machine, as ``name: value`` lines.

    python bench/gpu_check.py                 # on the GPU box (after bench/gpu_check.sh's set-up), < 8 minutes
    python bench/gpu_check.py --device cpu --size tiny   # every item on the CPU, tiny sizes (what the tests run)

Items (each prints its figures and its peak GPU memory, then ``<item>: passed|failed|skipped``):

1. ``cuda``: device name, capability, memory, driver, torch / CUDA runtime / cuDNN / onnxruntime versions.
2. ``train``: fair-step path-images/s with AMP (bf16 where supported, else fp16 + GradScaler) and in float32,
   data on the device (the embedded CIFAR-10 subset, augmented there), and a plain standalone training loop
   of MoGA-A: ratios AMP / fp32 and fair step / MoGA-A (path-images/s). Passes if every loss is finite.
3. ``eval``: candidate evaluations/s of the prefix trie and one by one (BN recalibration per candidate) on a
   bred population; passes if both give the same accuracies (identical on a CPU; on CUDA within 0.1 points,
   one image of 1,000, as nondeterministic kernels may flip a near-tie). Also the peak memory of a 224² evaluation
   against ``supernet.evaluate.working_set``'s estimate.
4. ``lut``: a ``torch-cuda`` (CUDA events) latency table of a small space at batch 1 and batch N, each validated
   on random whole networks (MAPE, share within ±10 %, τ, and τ between two measurement passes); the same with
   onnxruntime's CUDA execution provider if installed (``moga[gpu]``), else that part is skipped. Passes if the
   tables build and validate.
5. ``ddp``: one NCCL process group of one process, two fair steps whose gradients go through the same
   flat all-reduce as a multi-GPU run; passes if the weights equal those of two steps without it (on CUDA
   within 1e-4: cuDNN's backward kernels are not deterministic).

The last line is ``gpu_check: N passed, M failed`` (and how many were skipped). Without CUDA (and no
``--device``) it says so in one line, reports every item as skipped and exits 0. Exit code 1 if any item failed.
"""

from __future__ import annotations

import argparse
import math
import socket
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

if __package__ in (None, ""):  # run as a script from anywhere: the repository root is the parent of bench/
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from supernet import Arch, build_model, get_space
from supernet.data import Dataset, load_dataset
from supernet.distributed import average_over_ranks, dist_backend, prepare_device
from supernet.evaluate import SubnetEvaluator, working_set
from supernet.optim import Precision
from supernet.sampler import FairSampler
from supernet.space import SearchSpace
from supernet.supernet import Supernet
from supernet.train import supernet_step

Lines = dict[str, Any]


@dataclass(frozen=True)
class Sizes:
    """How much each item does: ``full`` fits the GPU box's 8 minutes, ``tiny`` a CPU test's seconds."""

    width: float  # MoGA space width multiplier for training and evaluation (32²)
    variant: str  # cifar: stride-1 stem (32x32 maps, the CIFAR setting); imagenet: ImageNet strides (fast)
    batch: int
    steps: int  # timed training steps (after ``warmup_steps``)
    warmup_steps: int
    population: int
    calib: int
    val: int
    eval224: int  # images of the 224² memory probe
    lut_width: float
    lut_resolution: int
    lut_batch: int  # "batch N" of the throughput table
    lut_nets: int
    lut_runs: int


SIZES = {
    "full": Sizes(1.0, "cifar", 256, 20, 5, 40, 1000, 2000, 256, 0.5, 224, 32, 40, 20),
    "tiny": Sizes(0.25, "imagenet", 4, 1, 1, 4, 16, 20, 2, 0.25, 32, 2, 12, 2),
}


# ----------------------------------------------------------------------------- helpers
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory(device: torch.device, fn: Callable[[], Lines]) -> Lines:
    """``fn()``'s lines plus ``peak_gpu_mb`` (the CUDA allocator's high-water mark during it; "n/a" on CPU)."""
    if device.type == "cuda":
        sync(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    lines = fn()
    if device.type == "cuda":
        sync(device)
        lines["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20)
    else:
        lines["peak_gpu_mb"] = "n/a"
    return lines


def moga_space(width: float, resolution: int = 32, variant: str = "cifar", classes: int = 10) -> SearchSpace:
    return get_space("moga", num_classes=classes, resolution=resolution, width_mult=width, variant=variant)


# ----------------------------------------------------------------------------- 1. device
def cuda_info(device: torch.device) -> Lines:
    import onnxruntime as ort

    lines: Lines = {"torch": torch.__version__, "onnxruntime": f"{ort.__version__} ({', '.join(ort.get_available_providers())})"}
    if device.type != "cuda":
        return {"device": str(device), **lines}
    from lut.gpu import gpu_info

    info = gpu_info(device)
    return {"device": info["gpu_name"], **{k: v for k, v in info.items() if k != "gpu_name"}, **lines}


# ----------------------------------------------------------------------------- 2. training throughput
def fair_step_rate(space: SearchSpace, data: Dataset, device: torch.device, amp: bool | str, sizes: Sizes) -> tuple[float, float]:
    """(path-images/s, last loss) of fair steps: loader on ``device`` (data moved once, augmented there),
    the supernet step, unscale + one optimizer update."""
    torch.manual_seed(0)
    net = Supernet(space).to(device).to(memory_format=torch.channels_last).train()
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    precision = Precision(device, amp)
    criterion = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    sampler = FairSampler(space.n_choices, seed=0)
    batches = data.loader("train", sizes.batch, seed=0, channels_last=True, device=device).batches()
    loss, start = math.nan, 0.0
    for i in range(sizes.warmup_steps + sizes.steps):
        if i == sizes.warmup_steps:
            sync(device)
            start = time.perf_counter()
        x, y = next(batches)
        opt.zero_grad(set_to_none=True)
        paths = sampler.sample()
        loss = supernet_step(net, x, y, paths, criterion, precision).loss
        precision.scaler.unscale_(opt)
        precision.scaler.step(opt)
        precision.scaler.update()
    sync(device)
    return sizes.steps * sizes.batch * len(paths) / (time.perf_counter() - start), loss


def standalone_rate(space: SearchSpace, data: Dataset, device: torch.device, amp: bool | str, sizes: Sizes) -> tuple[float, float]:
    """(images/s, last loss) of a plain training loop of MoGA-A in ``space``'s setting."""
    torch.manual_seed(0)
    model = build_model("moga_a", "moga", space.num_classes, space.resolution, space.width_mult, space.variant)
    model = model.to(device).to(memory_format=torch.channels_last).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    precision = Precision(device, amp)
    criterion = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    batches = data.loader("train", sizes.batch, seed=0, channels_last=True, device=device).batches()
    loss, start = torch.tensor(math.nan), 0.0
    steps = sizes.steps * len(space.n_choices)  # about a fair step's work per 12 (m) of these
    for i in range(sizes.warmup_steps + steps):
        if i == sizes.warmup_steps:
            sync(device)
            start = time.perf_counter()
        x, y = next(batches)
        opt.zero_grad(set_to_none=True)
        with precision.autocast():
            loss = criterion(model(x), y)
        precision.backward(loss)
        precision.scaler.step(opt)
        precision.scaler.update()
    sync(device)
    return steps * sizes.batch / (time.perf_counter() - start), float(loss.detach())


def check_train(device: torch.device, sizes: Sizes, data: Dataset) -> tuple[bool, Lines]:
    space = moga_space(sizes.width, 32, sizes.variant)
    amp_name = Precision(device, True).name if device.type == "cuda" else "bf16"  # CPU: bf16 autocast, a smoke test
    amp: bool | str = True if device.type == "cuda" else "bf16"
    fp32, loss32 = fair_step_rate(space, data, device, False, sizes)
    lines = peak_memory(device, lambda: dict(zip(("fair_amp", "loss_amp"), fair_step_rate(space, data, device, amp, sizes), strict=True)))
    solo, solo_loss = standalone_rate(space, data, device, amp, sizes)
    out = {
        "amp_dtype": amp_name,
        "fair_step_path_images_per_s_fp32": round(fp32),
        "fair_step_path_images_per_s_amp": round(lines["fair_amp"]),
        "fair_step_peak_gpu_mb_amp": lines["peak_gpu_mb"],
        "moga_a_images_per_s_amp": round(solo),
        "ratio_amp_vs_fp32": round(lines["fair_amp"] / fp32, 3),
        "ratio_fair_vs_moga_a": round(lines["fair_amp"] / solo, 3),
    }
    return all(math.isfinite(v) for v in (loss32, lines["loss_amp"], solo_loss)), out


# ----------------------------------------------------------------------------- 3. evaluation
def bred_population(space: SearchSpace, n: int, seed: int = 0) -> list[Arch]:
    """Offspring of 4 founders (uniform crossover + 1/L mutation): the prefix sharing a search sees."""
    rng = np.random.default_rng(seed)
    founders = [Arch.random(space, rng).genome for _ in range(4)]
    pop = []
    for _ in range(n):
        a, b = rng.choice(len(founders), 2, replace=False)
        child = np.where(rng.random(space.num_layers) < 0.5, founders[a], founders[b])
        mutate = rng.random(space.num_layers) < 1 / space.num_layers
        child[mutate] = [rng.integers(m) for m in np.array(space.n_choices)[mutate]]
        pop.append(Arch.from_genome(space, child))
    return pop


def eval_rates(space: SearchSpace, data: Dataset, device: torch.device, sizes: Sizes) -> Lines:
    """Candidates/s of the trie and of one-by-one evaluation (each after its stem cache is built), and
    whether they agree exactly."""
    torch.manual_seed(0)
    net = Supernet(space).to(device).eval()
    pop = bred_population(space, sizes.population)
    out: Lines = {}
    acc = {}
    for name, trie in (("trie", True), ("one_by_one", False)):
        ev = SubnetEvaluator(net, data, calib_images=sizes.calib, eval_images=sizes.val, batch_size=500, use_trie=trie)
        ev.evaluate(pop[:1])  # stem features cached, cuDNN warmed up
        ev.cache.clear()
        sync(device)
        start = time.perf_counter()
        acc[name] = ev.evaluate(pop)
        sync(device)
        out[f"eval_{name}_candidates_per_s"] = round(len(pop) / (time.perf_counter() - start), 2)
    out["eval_trie_vs_one_by_one"] = round(out["eval_trie_candidates_per_s"] / out["eval_one_by_one_candidates_per_s"], 3)
    out["eval_identical"] = acc["trie"] == acc["one_by_one"]
    out["eval_max_accuracy_diff"] = max(abs(a - b) for a, b in zip(acc["trie"], acc["one_by_one"], strict=True))
    return out


def eval_memory_224(device: torch.device, sizes: Sizes) -> Lines:
    """Peak memory of a trie evaluation at 224² (ImageNet strides, 1000 classes) vs the working-set estimate."""
    space = moga_space(sizes.width, 224, "imagenet", 1000)
    g = torch.Generator().manual_seed(0)
    n = sizes.eval224
    from supernet.data import Split

    def split(k: int) -> Split:
        return Split(torch.randint(0, 256, (k, 3, 256, 256), generator=g, dtype=torch.uint8), torch.arange(k) % 1000)

    data = Dataset(split(2 * n), split(n), split(1), [str(i) for i in range(1000)], (0.5,) * 3, (0.25,) * 3, 224, "imagenet")
    torch.manual_seed(0)
    net = Supernet(space).to(device).eval()
    weights = sum(p.numel() * p.element_size() for p in net.parameters()) + sum(b.numel() * b.element_size() for b in net.buffers())

    def run() -> Lines:
        SubnetEvaluator(net, data, calib_images=n, batch_size=max(1, n // 2), calib_batch_size=max(1, n // 2)).evaluate(
            bred_population(space, 8)
        )
        return {}

    lines = peak_memory(device, run)
    estimate = working_set(space).total(n, n)
    return {
        "eval224_images": f"{n} calibration + {n} validation",
        "eval224_estimate_mb": round(estimate / 2**20),
        "eval224_supernet_mb": round(weights / 2**20),
        "eval224_peak_gpu_mb": lines["peak_gpu_mb"],
    }


def check_eval(device: torch.device, sizes: Sizes, data: Dataset) -> tuple[bool, Lines]:
    lines = peak_memory(device, lambda: eval_rates(moga_space(sizes.width, 32, sizes.variant), data, device, sizes))
    lines["eval_peak_gpu_mb"] = lines.pop("peak_gpu_mb")
    lines |= eval_memory_224(device, sizes)
    # identical on a CPU (a test); on CUDA a nondeterministic kernel may flip a near-tie: one image in 1,000
    return lines["eval_max_accuracy_diff"] <= (0.0 if device.type == "cpu" else 0.1), lines


# ----------------------------------------------------------------------------- 4. latency tables
def latency_table(backend_name: str, space: SearchSpace, batch: int, sizes: Sizes, out_dir: Path) -> Lines:
    """Build a table of ``space`` with ``backend_name`` and validate it on random whole networks."""
    from lut.build import build_table
    from lut.measure import MeasureProtocol, make_backend
    from lut.validate import validate

    # on a CPU (the --device cpu run): thread CPU time, robust against other load on a shared machine
    backend = make_backend(backend_name, clock="cpu" if backend_name == "onnxruntime-cpu" else "wall")
    try:
        start = time.perf_counter()
        protocol = MeasureProtocol(warmup=10, runs=sizes.lut_runs, rounds=3)
        table, _ = build_table(
            space, backend, out_dir / f"{backend_name}_b{batch}.json", device="gpu-check", batch=batch, protocol=protocol, progress=False
        )
        built = time.perf_counter() - start
        check = MeasureProtocol(warmup=10, runs=max(2, sizes.lut_runs // 2), rounds=3)
        _, report = validate(table, space, backend, sizes.lut_nets, calib=max(2, sizes.lut_nets // 4), protocol=check, progress=False)
    finally:
        backend.close()
    cal, noise = report.held_out["calibrated"], report.held_out["noise"]
    tag = f"lut_{backend_name.replace('-', '_')}_b{batch}"
    return {
        f"{tag}_entries": f"{len(table.entries)} in {built:.0f} s",
        f"{tag}_mape_pct": round(cal["mape"], 2),
        f"{tag}_within_10_pct": round(cal["within_10"], 1),
        f"{tag}_tau": round(cal["tau"], 3),
        f"{tag}_tau_repeat": round(noise["tau"], 3),
        f"{tag}_provider": f"{table.header['runtime']} {table.header['runtime_version']} / {table.header['provider']}",
    }


def check_lut(device: torch.device, sizes: Sizes, out_dir: Path) -> tuple[bool, Lines]:
    import onnxruntime as ort

    space = moga_space(sizes.lut_width, sizes.lut_resolution, "imagenet", 1000)
    backends = ["torch-cuda"] if device.type == "cuda" else ["onnxruntime-cpu"]
    lines: Lines = {}
    if device.type == "cuda":
        if "CUDAExecutionProvider" in ort.get_available_providers():
            backends.append("onnxruntime-cuda")
        else:
            lines["lut_onnxruntime_cuda"] = "skipped (onnxruntime has no CUDAExecutionProvider: pip install moga[gpu])"
    for name in backends:
        for batch in (1, sizes.lut_batch):
            lines |= peak_memory(device, lambda n=name, b=batch: latency_table(n, space, b, sizes, out_dir))
            lines[f"lut_{name.replace('-', '_')}_b{batch}_peak_gpu_mb"] = lines.pop("peak_gpu_mb")
    return all(math.isfinite(v) for k, v in lines.items() if k.endswith("_mape_pct")), lines


# ----------------------------------------------------------------------------- 5. DDP
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ddp_step(device: torch.device, sizes: Sizes, data: Dataset) -> Lines:
    """Two fair steps with gradients averaged over a one-process group (NCCL on CUDA, gloo on CPU) vs two
    steps without: the weights must be equal. Returns the backend, the largest weight difference, seconds."""
    import torch.distributed as tdist

    space = moga_space(sizes.width, 32, sizes.variant)
    x, y = next(iter(data.loader("train", sizes.batch, seed=0, channels_last=True, device=device)))
    paths = FairSampler(space.n_choices, seed=0).sample()
    backend = dist_backend(device)
    tdist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0, world_size=1)
    try:
        weights, start = [], time.perf_counter()
        for reduce in (True, False):
            torch.manual_seed(0)
            net = Supernet(space).to(device).to(memory_format=torch.channels_last).train()
            opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
            for _ in range(2):
                opt.zero_grad(set_to_none=True)
                supernet_step(net, x, y, paths, torch.nn.CrossEntropyLoss(), Precision(device))
                if reduce:
                    average_over_ranks([p.grad for p in net.parameters() if p.grad is not None], 1)
                opt.step()
            weights.append(net.state_dict())
        sync(device)
        seconds = time.perf_counter() - start
    finally:
        tdist.destroy_process_group()
    diff = max(float((weights[0][k].float() - weights[1][k].float()).abs().max()) for k in weights[0])
    return {"ddp_backend": backend, "ddp_max_weight_diff": diff, "ddp_seconds": round(seconds, 2)}


def check_ddp(device: torch.device, sizes: Sizes, data: Dataset) -> tuple[bool, Lines]:
    lines = peak_memory(device, lambda: ddp_step(device, sizes, data))
    lines["ddp_peak_gpu_mb"] = lines.pop("peak_gpu_mb")
    # equal on a CPU; cuDNN's nondeterministic backward kernels leave float-rounding differences on a GPU
    return lines["ddp_max_weight_diff"] <= (0.0 if device.type == "cpu" else 1e-4), lines


# ----------------------------------------------------------------------------- the run
ITEMS = ("cuda", "train", "eval", "lut", "ddp")


def run(device: torch.device | None, sizes: Sizes, out: Callable[[str], None] = print) -> tuple[int, int, int]:
    """Every item on ``device`` (None: no CUDA here, so all are skipped); returns (passed, failed, skipped)."""
    if device is None:
        build = f"CUDA {torch.version.cuda} build" if torch.version.cuda else "CPU-only build"
        out(f"cuda: not available (torch {torch.__version__}, {build}): every CUDA item is skipped")
        for item in ITEMS:
            out(f"{item}: skipped (no CUDA)")
        out(f"gpu_check: 0 passed, 0 failed, {len(ITEMS)} skipped")
        return 0, 0, len(ITEMS)
    prepare_device(device)
    data = load_dataset("embedded", resolution=32, seed=0)
    results = {"passed": 0, "failed": 0}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        checks: dict[str, Callable[[], tuple[bool, Lines]]] = {
            "cuda": lambda: (True, cuda_info(device)),
            "train": lambda: check_train(device, sizes, data),
            "eval": lambda: check_eval(device, sizes, data),
            "lut": lambda: check_lut(device, sizes, Path(tmp)),
            "ddp": lambda: check_ddp(device, sizes, data),
        }
        for item, check in checks.items():
            start = time.perf_counter()
            try:
                ok, lines = check()
            except Exception as exc:  # one broken item must not hide the others' figures
                ok, lines = False, {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}
                traceback.print_exc(file=sys.stderr)
            for key, value in lines.items():
                out(f"{key}: {value}")
            out(f"{item}: {'passed' if ok else 'failed'} ({time.perf_counter() - start:.0f} s)")
            results["passed" if ok else "failed"] += 1
    out(f"total_seconds: {time.perf_counter() - t0:.0f}")
    out(f"gpu_check: {results['passed']} passed, {results['failed']} failed")
    return results["passed"], results["failed"], 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default=None, help="run on this device (default: cuda if available, else skip everything)")
    p.add_argument("--size", choices=sorted(SIZES), default="full", help="full: the GPU box's check; tiny: seconds on a CPU")
    args = p.parse_args(argv)
    device = torch.device(args.device) if args.device else (torch.device("cuda") if torch.cuda.is_available() else None)
    _, failed, _ = run(device, SIZES[args.size])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
