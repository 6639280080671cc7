"""One short run that shows moga's GPU path works on this machine, as ``name: value`` lines.

    bash bench/gpu_check.sh                   # on the GPU box: installs wheels/, runs this; ends within 6 minutes
    python bench/gpu_check.py --device cpu --size tiny   # every item on the CPU, tiny sizes (what the tests run)

Items (each prints its figures and its peak GPU memory, then ``<item>: passed|failed (N s)``, or
``<item>: timed out after N s``):

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

The last line is ``gpu_check: N passed, M failed`` (then ``, K timed out`` and ``, K skipped`` where there are
any). Without CUDA (and no ``--device``) it says so in one line, reports every item as skipped and exits 0.
Exit code 1 if any item failed or timed out; 2 for a bad argument (one line on stderr).

Time limits (``--item-limit [ITEM=]SECONDS``, repeatable; ``--total-limit SECONDS``; ``--items a,b`` runs a
subset). Each item runs in a fresh process (``multiprocessing`` "spawn": its own CUDA context, nothing left over
from the item before, a crash or an out-of-memory kill costs only that item) that sends its figures to this one
through a pipe as soon as each is measured (a trained rate, a validated table). This process prints them, and
once the item has run its limit (process start included) it SIGKILLs the child and prints ``<item>: timed
out after N s``, keeping what had come; then the next item starts. SIGKILL ends the process wherever it is (in a
CUDA kernel, an NCCL rendezvous, onnxruntime's C++), and the driver frees the context of a dead process, so no
CUDA work is left running; the child also asks Linux to kill it if this process dies (``PR_SET_PDEATHSIG``),
and SIGTERM/SIGHUP/Ctrl-C here kill the running item before exiting. Checking the clock inside the loops was
not chosen: it cannot stop a hung kernel, NCCL call or table build, which are what a first run on a new box
risks. An item starts with at most what is left of ``--total-limit``; one left with under 1 s is skipped.

Output file (``--out FILE``, default ``bench_out/gpu_check.txt``; ``-`` for none; ``bench/gpu_check.sh`` passes
``bench_out/gpu_check-<UTC time>.txt``): exactly the lines of stdout, each flushed as it is printed, so a run
cut off at any point leaves what it measured.

Sizing (``--size full``, the defaults of ``ITEM_LIMITS``; no GPU was available when they were set, so they are
estimates; the 6-minute bound does not depend on them, as the limits enforce it):

- Fixed cost per item, measured with ``--device cpu --size tiny`` on 2 shared cores: a process start with
  torch and onnxruntime imported 2.9 s (the whole ``cuda`` item), plus 3 s to load the embedded data set
  (``train``, ``eval``, ``ddp``). On the box add about 1 s of CUDA context creation.
- Tiny CPU timings (wall, the starts included): cuda 2.9 s, train 11.8 s, eval 7.8 s, lut 18.5 s, ddp 10.5 s
  (51 s in all). At tiny sizes the work is a few giga multiply-adds (MACs), so these measure the Python and
  per-operator overhead, which the full size repeats 12.5 times (fair steps) to 19 times (MoGA-A steps);
  on a GPU that overhead (≈10 µs a kernel launch) overlaps the kernels and is not the bound.
- The full size's work, counted from the shapes (``supernet.model.block_cost``): a fair step is 12 paths ×
  256 images × 76 M MACs = 234 G MACs forward, ~0.7 T with the backward pass; ``train`` does 25 of them in
  float32, 25 with AMP and 285 MoGA-A steps (17 T MACs): ~52 T MACs in all. At an assumed 1.5 T MAC/s in float32 and
  2.5 T MAC/s with AMP for these depthwise-heavy networks at 32² (a MobileNetV2-class net trains at ~3 T MAC/s
  on an A100 at 224²; smaller maps use an H100 less well) that is ~26 s, plus cuDNN's autotuning of each new
  shape (~15 s) and the start (~7 s): ~50 s against a limit of 90 s. ``eval``: 41 candidates × 3,000 images
  × 74 M MACs one by one (9 T forward, the trie less) ~6 s, the 224² probe (8 candidates × 512 images) ~1 s,
  autotuning and start ~15 s: ~20 s against 45 s. ``lut``: 123 blocks × 70+ timed runs per table, then 40
  networks × 2 passes × 40 runs at 2-4 ms (launch-bound at batch 1): ~20-25 s per table, ~45 s for the two
  ``torch-cuda`` tables against 145 s; ``onnxruntime-cuda`` (if installed) creates a session per block and
  per network (~0.3 s each, ~100 s for its two tables) and may run into the limit: its tables come after the
  ``torch-cuda`` ones, whose lines are kept. ``ddp``: NCCL set-up and 4 fair steps, ~15 s against 30 s.
- Limits: cuda 20, train 90, eval 45, lut 145, ddp 30 s = ``--total-limit`` 330 s. With the start of this
  process and the wheel install of ``bench/gpu_check.sh`` (5-10 s) a run ends in under 6 minutes.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import signal
import socket
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, NoReturn

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
from supernet.step import supernet_step
from supernet.supernet import Supernet

Lines = dict[str, Any]
Emit = Callable[[Lines], None]  # an item's figures so far, sent on as soon as they are measured


def ignore(lines: Lines) -> None:
    """The default ``emit``: the check's return value carries every line anyway."""


@dataclass(frozen=True)
class Sizes:
    """How much each item does: ``full`` the GPU box's check (within ``ITEM_LIMITS``), ``tiny`` a CPU test's seconds."""

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


def check_train(device: torch.device, sizes: Sizes, data: Dataset, emit: Emit = ignore) -> tuple[bool, Lines]:
    space = moga_space(sizes.width, 32, sizes.variant)
    amp_name = Precision(device, True).name if device.type == "cuda" else "bf16"  # CPU: bf16 autocast, a smoke test
    amp: bool | str = True if device.type == "cuda" else "bf16"
    fp32, loss32 = fair_step_rate(space, data, device, False, sizes)
    out: Lines = {"amp_dtype": amp_name, "fair_step_path_images_per_s_fp32": round(fp32)}
    emit(out)
    lines = peak_memory(device, lambda: dict(zip(("fair_amp", "loss_amp"), fair_step_rate(space, data, device, amp, sizes), strict=True)))
    out |= {
        "fair_step_path_images_per_s_amp": round(lines["fair_amp"]),
        "fair_step_peak_gpu_mb_amp": lines["peak_gpu_mb"],
        "ratio_amp_vs_fp32": round(lines["fair_amp"] / fp32, 3),
    }
    emit(out)
    solo, solo_loss = standalone_rate(space, data, device, amp, sizes)
    out |= {"moga_a_images_per_s_amp": round(solo), "ratio_fair_vs_moga_a": round(lines["fair_amp"] / solo, 3)}
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


def check_eval(device: torch.device, sizes: Sizes, data: Dataset, emit: Emit = ignore) -> tuple[bool, Lines]:
    lines = peak_memory(device, lambda: eval_rates(moga_space(sizes.width, 32, sizes.variant), data, device, sizes))
    lines["eval_peak_gpu_mb"] = lines.pop("peak_gpu_mb")
    emit(lines)
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


def check_lut(device: torch.device, sizes: Sizes, out_dir: Path, emit: Emit = ignore) -> tuple[bool, Lines]:
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
            emit(lines)  # each table's figures as soon as it is validated: a cut-off item keeps them
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


def check_ddp(device: torch.device, sizes: Sizes, data: Dataset, emit: Emit = ignore) -> tuple[bool, Lines]:
    lines = peak_memory(device, lambda: ddp_step(device, sizes, data))
    lines["ddp_peak_gpu_mb"] = lines.pop("peak_gpu_mb")
    # equal on a CPU; cuDNN's nondeterministic backward kernels leave float-rounding differences on a GPU
    return lines["ddp_max_weight_diff"] <= (0.0 if device.type == "cpu" else 1e-4), lines


# ----------------------------------------------------------------------------- the run
ITEMS = ("cuda", "train", "eval", "lut", "ddp")
# Wall-clock seconds each item may take, its process's start included (module docstring, "Sizing"): together
# TOTAL_LIMIT, so `bash bench/gpu_check.sh` ends within 6 minutes on the GPU box whatever an item does.
ITEM_LIMITS = {"cuda": 20.0, "train": 90.0, "eval": 45.0, "lut": 145.0, "ddp": 30.0}
TOTAL_LIMIT = 330.0
KILL_WAIT = 10.0  # seconds given to a killed item's process to be gone
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "bench_out" / "gpu_check.txt"  # bench_out/ is gitignored


def check_item(emit: Emit, item: str, device: torch.device, sizes: Sizes) -> tuple[bool, Lines]:
    """``item``'s check, in the process ``run_item`` started for it."""
    prepare_device(device)
    if item == "cuda":
        return True, cuda_info(device)
    if item == "lut":
        with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
            return check_lut(device, sizes, Path(tmp), emit)
    data = load_dataset("embedded", resolution=32, seed=0)
    return {"train": check_train, "eval": check_eval, "ddp": check_ddp}[item](device, sizes, data, emit)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"


def _die_with_parent(parent: int) -> None:
    """Linux: the kernel kills this process when gpu_check.py dies (killed itself, it leaves no CUDA work running)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the parent's own exit path still kills this process
        pass
    if os.getppid() != parent:  # the parent died before that
        os._exit(1)


def _worker(conn: Connection, parent: int, target: Callable[..., tuple[bool, Lines]], args: tuple[Any, ...]) -> None:
    """Runs ``target(emit, *args)``; sends ("lines", {name: value}) as figures come and ("done", ok) at the end."""
    _die_with_parent(parent)
    sent: set[str] = set()

    def emit(lines: Lines) -> None:
        new = {k: v for k, v in lines.items() if k not in sent}
        if new:
            conn.send(("lines", new))
            sent.update(new)

    ok = False
    try:
        ok, lines = target(emit, *args)
        emit(lines)
    except Exception as exc:  # one broken item must not hide the others' figures
        traceback.print_exc(file=sys.stderr)
        emit({"error": _one_line(exc)})
        ok = False
    conn.send(("done", bool(ok)))
    conn.close()


def run_item(item: str, target: Callable[..., tuple[bool, Lines]], args: tuple[Any, ...], limit: float, out: Callable[[str], None]) -> str:
    """``target(emit, *args)`` in a fresh process (spawned: a clean CUDA context, no state shared with other items),
    its lines printed as they come, killed once it has run ``limit`` seconds. Prints and returns the item's
    status: "passed", "failed" or "timed out"."""
    ctx = multiprocessing.get_context("spawn")
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_worker, args=(send, os.getpid(), target, args), name=f"gpu_check-{item}", daemon=True)
    start = time.perf_counter()
    proc.start()
    send.close()  # the child holds the only write end: its death is an EOF here
    status = ""
    try:
        while not status:
            left = limit - (time.perf_counter() - start)
            if left <= 0:
                status = "timed out"
            elif recv.poll(min(left, 1.0)):
                try:
                    kind, payload = recv.recv()
                except EOFError:  # died without a result: killed (out of memory), a crash in C code, ...
                    proc.join(KILL_WAIT)
                    out(f"error: the item's process ended without a result (exit code {proc.exitcode})")
                    status = "failed"
                    continue
                if kind == "lines":
                    for key, value in payload.items():
                        out(f"{key}: {value}")
                else:
                    status = "passed" if payload else "failed"
        if status != "timed out":
            proc.join(KILL_WAIT)  # a finished item's process exits by itself (CUDA teardown)
    finally:  # timed out, exit stalled, or this process interrupted (Ctrl-C, SIGTERM): no CUDA work left behind
        if proc.is_alive():
            proc.kill()
            proc.join(KILL_WAIT)
            if proc.is_alive():
                print(f"gpu_check: {item}'s process {proc.pid} is still alive after SIGKILL", file=sys.stderr)
        recv.close()
    if status == "timed out":
        out(f"{item}: timed out after {limit:g} s")
    else:
        out(f"{item}: {status} ({time.perf_counter() - start:.0f} s)")
    return status


def run(
    device: torch.device | None,
    sizes: Sizes,
    out: Callable[[str], None] = print,
    items: tuple[str, ...] = ITEMS,
    limits: dict[str, float] | None = None,
    total_limit: float = TOTAL_LIMIT,
) -> dict[str, int]:
    """``items`` on ``device`` (None: no CUDA here, so all are skipped), each in its own process under its limit
    (``ITEM_LIMITS`` updated by ``limits``) and all within ``total_limit`` seconds; returns the count of each status."""
    counts = dict.fromkeys(("passed", "failed", "timed out", "skipped"), 0)
    if device is None:
        build = f"CUDA {torch.version.cuda} build" if torch.version.cuda else "CPU-only build"
        out(f"cuda: not available (torch {torch.__version__}, {build}): every CUDA item is skipped")
        for item in items:
            out(f"{item}: skipped (no CUDA)")
        out(f"gpu_check: 0 passed, 0 failed, {len(items)} skipped")
        counts["skipped"] = len(items)
        return counts
    limits = ITEM_LIMITS | (limits or {})
    size = next((name for name, s in SIZES.items() if s == sizes), "custom")
    out(f"settings: device {device}, size {size}, limits (s) {', '.join(f'{i} {limits[i]:g}' for i in items)}, total {total_limit:g}")
    t0 = time.perf_counter()
    for item in items:
        left = total_limit - (time.perf_counter() - t0)
        if left < 1:
            out(f"{item}: skipped (the total limit of {total_limit:g} s is spent)")
            counts["skipped"] += 1
            continue
        counts[run_item(item, check_item, (item, device, sizes), min(limits[item], left), out)] += 1
    out(f"total_seconds: {time.perf_counter() - t0:.0f}")
    tail = "".join(f", {counts[k]} {k}" for k in ("timed out", "skipped") if counts[k])
    out(f"gpu_check: {counts['passed']} passed, {counts['failed']} failed{tail}")
    return counts


# ----------------------------------------------------------------------------- arguments
class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, without argparse's usage block
        self.exit(2, f"gpu_check: error: {message} (see --help)\n")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text!r}: seconds must be a positive number")
    return value


def _item_limit(text: str) -> tuple[str | None, float]:
    """``SECONDS`` (every item) or ``ITEM=SECONDS``."""
    item, sep, seconds = text.rpartition("=")
    if sep and item not in ITEMS:
        raise argparse.ArgumentTypeError(f"unknown item {item!r} in {text!r} (items: {', '.join(ITEMS)})")
    return (item if sep else None), _seconds(seconds)


def _items(text: str) -> tuple[str, ...]:
    items = tuple(i.strip() for i in text.split(",") if i.strip())
    unknown = [i for i in items if i not in ITEMS]
    if unknown or not items:
        raise argparse.ArgumentTypeError(f"unknown item(s) {', '.join(unknown) or repr(text)} (items: {', '.join(ITEMS)})")
    if len(set(items)) < len(items):
        raise argparse.ArgumentTypeError(f"{text!r} names an item twice")
    return items


def _device(text: str) -> torch.device:
    try:
        device = torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a device (cuda, cuda:1, cpu)") from None
    if device.type not in ("cuda", "cpu"):
        raise argparse.ArgumentTypeError(f"{text!r}: the check runs on cuda or cpu")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            build = f"CUDA {torch.version.cuda} build" if torch.version.cuda else "CPU-only build"
            raise argparse.ArgumentTypeError(f"{text!r}: CUDA is not available here (torch {torch.__version__}, {build})")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise argparse.ArgumentTypeError(f"{text!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


def main(argv: list[str] | None = None) -> int:
    p = _Parser(prog="gpu_check", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", type=_device, default=None, help="run on this device (default: cuda if available, else skip everything)")
    p.add_argument("--size", choices=sorted(SIZES), default="full", help="full: the GPU box's check; tiny: seconds on a CPU")
    p.add_argument("--items", type=_items, default=ITEMS, help=f"comma-separated items to run, in this order (default: {','.join(ITEMS)})")
    p.add_argument(
        "--item-limit",
        type=_item_limit,
        action="append",
        default=[],
        metavar="[ITEM=]SECONDS",
        help=f"wall-clock limit of every item, or of ITEM (repeatable); default {', '.join(f'{k} {v:g}' for k, v in ITEM_LIMITS.items())}",
    )
    p.add_argument("--total-limit", type=_seconds, default=TOTAL_LIMIT, help=f"seconds for all items together (default {TOTAL_LIMIT:g})")
    p.add_argument(
        "--out",
        default=str(DEFAULT_OUT),
        help="also write the lines to this file, each as it comes (default bench_out/gpu_check.txt; '-': no file)",
    )
    args = p.parse_args(argv)
    limits: dict[str, float] = {}
    for item, seconds in args.item_limit:
        limits |= dict.fromkeys(ITEMS, seconds) if item is None else {item: seconds}
    file = None
    if args.out != "-":
        try:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            file = open(args.out, "w", encoding="utf-8")  # noqa: SIM115 (closed below, after the run)
        except OSError as exc:
            p.error(f"--out {args.out}: cannot write there ({exc.strerror or exc})")
        print(f"gpu_check: writing the lines to {args.out} as well", file=sys.stderr)

    def out(line: str) -> None:
        print(line, flush=True)
        if file is not None:
            file.write(line + "\n")
            file.flush()  # a run cut off later still leaves what it measured

    def stop(signum: int, _frame: Any) -> None:  # SIGTERM / SIGHUP: unwind, so the running item's process is killed
        sys.exit(128 + signum)

    handlers = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGHUP)}
    device = args.device if args.device else (torch.device("cuda") if torch.cuda.is_available() else None)
    try:
        counts = run(device, SIZES[args.size], out, args.items, limits, args.total_limit)
    finally:
        for sig, handler in handlers.items():  # main() called from Python (a test) leaves the caller's handlers
            signal.signal(sig, handler)
        if file is not None:
            file.close()
    return 1 if counts["failed"] or counts["timed out"] else 0


if __name__ == "__main__":
    sys.exit(main())
