"""Timing blocks and networks behind a small backend interface, with one measurement protocol.

A ``Backend`` turns a ``Job`` (one block, or one whole network, at a fixed input shape) into a ``Runner``
that executes it ``n`` times back to back and returns each run's duration in ms. Backends: onnxruntime
on CPU (default) or CUDA (input and output bound on the GPU, so no host copies are timed), eager PyTorch on
CUDA timed with CUDA events (``lut.gpu.TorchCudaBackend``), and ``FakeBackend`` (synthetic latency from
multiply-adds) for tests. A GPU backend on a machine without one is a one-line ``UserError``.

``measure`` is the protocol: several interleaved rounds (round r times every job in turn, in a fresh
random order, so a drift of the machine hits all jobs alike), each with warm-up runs and back-to-back
timed runs; jobs whose per-round medians disagree by more than ``tolerance`` get extra rounds. An
entry's ``median_ms`` is the median of its per-round medians (``robust_median``).
"""

from __future__ import annotations

import platform
import socket
import tempfile
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from supernet.arch import Arch
from supernet.blocks import build_block
from supernet.errors import UserError
from supernet.export import OPSET, onnx_bytes
from supernet.model import MobileNet, block_cost
from supernet.space import BlockShape

Samples = dict[str, list[list[float]]]  # key -> rounds -> per-run ms


@dataclass(frozen=True)
class Job:
    """One thing to time: a block exactly as it sits in the network, or a whole network (``arch``)."""

    key: str
    shapes: tuple[BlockShape, ...]
    input_shape: tuple[int, ...]
    arch: Arch | None = None

    def module(self, seed: int = 0) -> nn.Module:
        """The module in eval mode, with weights drawn from ``seed`` (a private generator state)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            module = MobileNet(self.arch) if self.arch is not None else build_block(self.shapes[0])
        return module.eval()


def block_job(shape: BlockShape, batch: int = 1) -> Job:
    return Job(shape.key, (shape,), (batch, shape.in_ch, shape.in_hw, shape.in_hw))


def network_job(arch: Arch, batch: int = 1) -> Job:
    space = arch.space
    return Job(str(arch), tuple(space.walk(arch.genes)), (batch, 3, space.resolution, space.resolution), arch)


ORT_PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}
Runner = Callable[[int], np.ndarray]  # n -> duration of each of n back-to-back runs, ms


class Backend(Protocol):
    def info(self) -> dict[str, Any]:
        """Header fields: runtime, runtime_version, provider, threads, opset."""
        ...

    def load(self, job: Job) -> Runner: ...

    def close(self) -> None: ...


# ----------------------------------------------------------------------------- onnxruntime
CLOCKS = {"wall": time.perf_counter_ns, "cpu": time.thread_time_ns}


class OrtBackend:
    """onnxruntime with explicit threads, full graph optimisation and sequential execution.

    Each ``load`` opens a fresh session (so repeated rounds also sample session-level variation); the
    exported ONNX bytes are cached on disk for the backend's lifetime, not in memory (whole networks).

    ``clock="wall"`` (default) times runs with ``perf_counter_ns``: the latency a user sees. ``"cpu"``
    times the calling thread's CPU time instead, which leaves out the time the OS gives to other
    processes: on a shared machine it measures what an idle core would do. With one intra-op thread
    onnxruntime computes on the calling thread, so that is the only setting where it is valid.
    """

    def __init__(self, provider: str = "cpu", threads: int = 1, inter_threads: int = 1, opset: int = OPSET, clock: str = "wall"):
        import onnxruntime as ort

        if clock not in CLOCKS:
            raise UserError(f"unknown clock {clock!r}: choose wall or cpu")
        if clock == "cpu" and (provider != "cpu" or threads != 1):
            raise UserError("clock 'cpu' (thread CPU time) is only valid on the CPU provider with 1 thread")

        if provider not in ORT_PROVIDERS:
            raise UserError(f"unknown onnxruntime provider {provider!r}: choose one of {', '.join(ORT_PROVIDERS)}")
        self.provider = ORT_PROVIDERS[provider]
        if self.provider not in ort.get_available_providers():
            raise UserError(
                f"onnxruntime {ort.__version__} has no {self.provider} (available: {', '.join(ort.get_available_providers())}); "
                "install onnxruntime-gpu with a matching CUDA, or use backend onnxruntime-cpu"
            )
        self.ort = ort
        self.threads, self.inter_threads, self.opset, self.clock = threads, inter_threads, opset, clock
        self._dir = tempfile.TemporaryDirectory(prefix="moga-lut-")
        self._files: dict[str, Path] = {}

    def info(self) -> dict[str, Any]:
        info = {
            "runtime": "onnxruntime",
            "runtime_version": self.ort.__version__,
            "provider": self.provider,
            "threads": self.threads,
            "opset": self.opset,
            "clock": self.clock,
        }
        if self.provider == ORT_PROVIDERS["cuda"] and torch.cuda.is_available():
            from lut.gpu import gpu_info

            info |= gpu_info(torch.device("cuda", torch.cuda.current_device()))
        return info

    def _options(self) -> Any:
        opts = self.ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = self.inter_threads
        opts.graph_optimization_level = self.ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.execution_mode = self.ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3
        return opts

    def load(self, job: Job) -> Runner:
        if job.key not in self._files:
            path = Path(self._dir.name) / f"{len(self._files)}.onnx"
            path.write_bytes(onnx_bytes(job.module(), job.input_shape, self.opset))
            self._files[job.key] = path
        session = self.ort.InferenceSession(str(self._files[job.key]), self._options(), providers=[self.provider])
        feed = {session.get_inputs()[0].name: np.random.default_rng(0).standard_normal(job.input_shape, dtype=np.float32)}
        clock = CLOCKS[self.clock]
        if self.provider == ORT_PROVIDERS["cuda"]:
            return self._cuda_runner(session, feed, clock)

        def run(n: int) -> np.ndarray:
            out = np.empty(n, dtype=np.int64)
            for i in range(n):
                t0 = clock()
                session.run(None, feed)
                out[i] = clock() - t0
            return out / 1e6

        return run

    def _cuda_runner(self, session: Any, feed: dict[str, np.ndarray], clock: Callable[[], int]) -> Runner:
        """Input copied to the GPU once and the output left there (IO binding): a run times the network only.
        ``run_with_iobinding`` returns after the GPU finished (the CUDA provider synchronises), so wall time holds."""
        binding = session.io_binding()
        for name, value in feed.items():
            binding.bind_ortvalue_input(name, self.ort.OrtValue.ortvalue_from_numpy(value, "cuda", 0))
        for out in session.get_outputs():
            binding.bind_output(out.name, "cuda")

        def run(n: int) -> np.ndarray:
            out = np.empty(n, dtype=np.int64)
            for i in range(n):
                t0 = clock()
                session.run_with_iobinding(binding)
                out[i] = clock() - t0
            return out / 1e6

        return run

    def close(self) -> None:
        self._dir.cleanup()


# ----------------------------------------------------------------------------- fake
class FakeBackend:
    """Deterministic synthetic latency for tests: ``overhead + ms_per_mmac * MMACs`` per block.

    A whole network costs ``context`` times the sum of its blocks plus ``net_overhead_ms`` (a known bias
    that calibration must recover). ``noise`` is a relative standard deviation drawn from a generator
    seeded by (seed, key, how often the key was loaded), so results do not depend on job order.
    """

    def __init__(
        self,
        overhead_ms: float = 0.01,
        ms_per_mmac: float = 0.01,
        context: float = 1.1,
        net_overhead_ms: float = 0.05,
        noise: float = 0.0,
        seed: int = 0,
    ):
        self.overhead_ms, self.ms_per_mmac, self.context, self.net_overhead_ms = overhead_ms, ms_per_mmac, context, net_overhead_ms
        self.noise, self.seed = noise, seed
        self.loads: dict[str, int] = {}

    def info(self) -> dict[str, Any]:
        return {"runtime": "fake", "runtime_version": "1", "provider": "fake", "threads": 1, "opset": OPSET}

    def block_ms(self, shape: BlockShape) -> float:
        return 0.0 if shape.is_identity else self.overhead_ms + self.ms_per_mmac * block_cost(shape)[1] / 1e6

    def job_ms(self, job: Job) -> float:
        blocks = sum(self.block_ms(s) for s in job.shapes)
        return self.context * blocks + self.net_overhead_ms if job.arch is not None else blocks

    def load(self, job: Job) -> Runner:
        nth = self.loads.get(job.key, 0)
        self.loads[job.key] = nth + 1
        rng = np.random.default_rng([self.seed, zlib.crc32(job.key.encode()), nth])
        base = self.job_ms(job) * job.input_shape[0]

        def run(n: int) -> np.ndarray:
            return np.maximum(base * (1 + self.noise * rng.standard_normal(n)), 0.0)

        return run

    @property
    def total_loads(self) -> int:
        return sum(self.loads.values())

    def close(self) -> None:
        pass


BACKENDS = ("onnxruntime-cpu", "onnxruntime-cuda", "torch-cuda", "fake")


def make_backend(name: str, threads: int = 1, clock: str = "wall", **fake: Any) -> Backend:
    """One of ``BACKENDS`` (the names of ``TableConfig.backend``)."""
    if name == "onnxruntime-cpu":
        return OrtBackend("cpu", threads, clock=clock)
    if name == "onnxruntime-cuda":
        return OrtBackend("cuda", threads, clock=clock)
    if name == "torch-cuda":
        from lut.gpu import TorchCudaBackend

        if clock != "wall":
            raise UserError("backend torch-cuda times with CUDA events: leave clock at wall")
        return TorchCudaBackend()
    if name == "fake":
        return FakeBackend(**fake)
    raise UserError(f"unknown latency backend {name!r}: choose one of {', '.join(BACKENDS)}")


def backend_for_header(header: dict[str, Any]) -> Backend:
    """A local backend that reproduces a table's measurement context, or a ``UserError`` saying why not."""
    runtime, provider = header.get("runtime"), header.get("provider")
    if runtime == "fake":
        return FakeBackend()
    if runtime == "onnxruntime" and provider in ORT_PROVIDERS.values():
        import onnxruntime as ort

        if header.get("runtime_version") != ort.__version__:
            raise UserError(f"table was measured with onnxruntime {header.get('runtime_version')}, this machine has {ort.__version__}")
        short = {v: k for k, v in ORT_PROVIDERS.items()}[provider]
        backend = OrtBackend(
            short, int(header.get("threads", 1)), opset=int(header.get("opset", OPSET)), clock=str(header.get("clock", "wall"))
        )
        if short == "cuda":
            from lut.gpu import check_same_gpu

            check_same_gpu(header, backend.info())
        return backend
    if runtime == "torch" and provider == "cuda":
        from lut.gpu import TorchCudaBackend, check_same_gpu

        if header.get("runtime_version") != torch.__version__:
            raise UserError(f"table was measured with torch {header.get('runtime_version')}, this machine has {torch.__version__}")
        gpu = TorchCudaBackend(str(header.get("torch_dtype", "float32")), bool(header.get("channels_last", True)))
        check_same_gpu(header, gpu.info())
        return gpu
    raise UserError(
        f"table was measured with {runtime} / {provider} on {header.get('device')!r}, which this machine cannot run; "
        "measure networks there (moga lut export-blocks --nets) and pass their timings with --measured"
    )


def machine_header() -> dict[str, Any]:
    return {"cpu_model": cpu_model(), "hostname": socket.gethostname(), "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


# ----------------------------------------------------------------------------- protocol
@dataclass(frozen=True)
class MeasureProtocol:
    warmup: int
    runs: int
    rounds: int
    tolerance: float = 0.10  # relative spread of per-round medians that triggers extra rounds
    extra_rounds: int = 3
    seed: int = 0  # each round visits the jobs in a fresh random order

    def to_json(self) -> dict[str, Any]:
        return {
            "warmup": self.warmup,
            "runs": self.runs,
            "rounds": self.rounds,
            "tolerance": self.tolerance,
            "extra_rounds": self.extra_rounds,
        }


# block tables (``build_table``; ``lut.tables.<name>.warmup/runs/rounds`` default to it): blocks are short, so 30 runs
BLOCK_PROTOCOL = MeasureProtocol(warmup=10, runs=30, rounds=3)


def round_spread(rounds: list[list[float]]) -> float:
    """(max - min) / median of the per-round medians."""
    meds = [float(np.median(r)) for r in rounds]
    mid = float(np.median(meds))
    return (max(meds) - min(meds)) / mid if mid > 0 else 0.0


def unstable(samples: Samples, protocol: MeasureProtocol) -> list[str]:
    limit = protocol.rounds + protocol.extra_rounds
    return [k for k, r in samples.items() if protocol.rounds <= len(r) < limit and round_spread(r) > protocol.tolerance]


def measure(
    jobs: Sequence[Job],
    backend: Backend,
    protocol: MeasureProtocol,
    samples: Samples | None = None,
    on_progress: Callable[[Samples], None] | None = None,
    progress: bool = True,
    desc: str = "measuring",
) -> Samples:
    """Run the protocol over ``jobs``; returns key -> per-round run times (ms).

    ``samples`` holds rounds already measured (a resumed build): those are not repeated. ``on_progress``
    is called with the samples so far after each job, so a caller can checkpoint them.
    """
    done: Samples = {k: [list(r) for r in v] for k, v in (samples or {}).items()}
    by_key = {j.key: j for j in jobs}
    todo = sum(max(0, protocol.rounds - len(done.get(j.key, []))) for j in jobs)
    bar = tqdm(total=todo, desc=desc, unit="job", disable=not progress, dynamic_ncols=True)

    def one(job: Job) -> None:
        runner = backend.load(job)
        if protocol.warmup:
            runner(protocol.warmup)
        done.setdefault(job.key, []).append([float(t) for t in runner(protocol.runs)])
        bar.update()
        if on_progress is not None:
            on_progress(done)

    rng = np.random.default_rng(protocol.seed)
    try:
        for r in range(protocol.rounds):
            # a fresh order each round: a burst of load on the machine does not hit the same neighbours twice
            for i in rng.permutation(len(jobs)):
                if len(done.get(jobs[i].key, [])) <= r:
                    one(jobs[i])
        while again := unstable({k: done[k] for k in by_key}, protocol):
            bar.total += len(again)
            bar.refresh()
            for key in again:
                one(by_key[key])
    finally:
        bar.close()
    return done


def robust_median(rounds: list[list[float]]) -> float:
    """Median of the per-round medians: one round disturbed by other load on the machine does not move it."""
    return float(np.median([np.median(r) for r in rounds]))


def summarize(rounds: list[list[float]]) -> dict[str, Any]:
    """``median_ms`` = ``robust_median``; mean / std (ms) and count over all timed runs of all rounds."""
    t = np.concatenate([np.asarray(r, dtype=np.float64) for r in rounds])
    return {"median_ms": robust_median(rounds), "mean_ms": float(t.mean()), "std_ms": float(t.std()), "count": int(t.size)}


def measured_with_differences(header: dict[str, Any], backend: str, threads: int, clock: str) -> list[str]:
    """How a table's header differs from the backend, thread count and clock a table is to be measured with
    (``setting have (wants want)``); empty when the table was measured that way."""
    if backend == "fake":
        want: dict[str, Any] = {"runtime": "fake", "provider": "fake"}
    elif backend == "torch-cuda":
        want = {"runtime": "torch", "provider": "cuda"}
    else:
        provider = ORT_PROVIDERS[backend.removeprefix("onnxruntime-")]
        want = {"runtime": "onnxruntime", "provider": provider, "threads": threads, "clock": clock}
    have = {k: header.get(k, "wall" if k == "clock" else None) for k in want}
    return [f"{k} {have[k]} (wants {want[k]})" for k in want if have[k] != want[k]]
