"""GPU latency: a PyTorch CUDA backend timed with CUDA events, and what a GPU table's header records.

``TorchCudaBackend`` runs a job's module in eager PyTorch on one GPU (float32 or an autocast dtype,
channels-last, inference mode) and times each run with a pair of CUDA events recorded on the stream
around it: the GPU time from the first kernel's start to the last one's end, launch gaps included, which is
what an eager caller waits for. Warm-up runs (``MeasureProtocol.warmup``) absorb cuDNN's algorithm choice
and the allocator's first allocations. The batch is the table's (``lut.tables.<name>.batch``: 1 for latency,
N for throughput).

``gpu_info`` is the part of a header that says which GPU and software measured a table: device name,
compute capability, memory, driver version (``/proc/driver/nvidia/version``), CUDA runtime and cuDNN versions
of the torch build. Both GPU backends (this one and onnxruntime's CUDA execution provider) put it in their
headers, and ``check_same_gpu`` refuses to validate a table on another GPU.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from supernet.errors import UserError

DTYPES = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}
GPU_FIELDS = ("gpu_name", "gpu_capability", "gpu_memory_gb", "driver_version", "cuda_runtime", "cudnn_version")


def require_cuda(what: str) -> torch.device:
    """The current CUDA device, or a one-line ``UserError`` naming ``what`` needed it."""
    if not torch.cuda.is_available():
        build = f"CUDA {torch.version.cuda} build" if torch.version.cuda else "CPU-only build"
        raise UserError(f"{what} needs a CUDA GPU, and this machine has none (torch {torch.__version__}, {build}); use onnxruntime-cpu")
    return torch.device("cuda", torch.cuda.current_device())


def driver_version(proc_file: Path = Path("/proc/driver/nvidia/version")) -> str:
    """The NVIDIA kernel driver's version (e.g. ``570.86.15``), or "unknown"."""
    try:
        text = proc_file.read_text()
    except OSError:
        return "unknown"
    found = re.search(r"Kernel Module(?: for \w+)?\s+([0-9][0-9.]+)", text)
    return found.group(1) if found else "unknown"


def gpu_info(device: torch.device | None = None) -> dict[str, Any]:
    """Header fields naming the GPU and the CUDA software stack (``GPU_FIELDS``)."""
    device = device or require_cuda("reading the GPU's name")
    props = torch.cuda.get_device_properties(device)
    return {
        "gpu_name": props.name,
        "gpu_capability": f"{props.major}.{props.minor}",
        "gpu_memory_gb": round(props.total_memory / 2**30, 1),
        "driver_version": driver_version(),
        "cuda_runtime": str(torch.version.cuda),
        "cudnn_version": str(torch.backends.cudnn.version()),
    }


def check_same_gpu(header: dict[str, Any], here: dict[str, Any]) -> None:
    """A table is validated only on the GPU model it was measured on (when both are known)."""
    if None not in (header.get("gpu_name"), here.get("gpu_name")) and header["gpu_name"] != here["gpu_name"]:
        raise UserError(f"table was measured on {header['gpu_name']}, this machine's GPU is {here['gpu_name']}")


class TorchCudaBackend:
    """Eager PyTorch on a CUDA GPU, each run timed by CUDA events (see the module doc)."""

    def __init__(self, dtype: str = "float32", channels_last: bool = True) -> None:
        if dtype not in DTYPES:
            raise UserError(f"unknown dtype {dtype!r} for torch-cuda: choose one of {', '.join(DTYPES)}")
        self.device = require_cuda("latency backend torch-cuda")
        self.dtype, self.channels_last = dtype, channels_last
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest kernels (during warm-up)

    def info(self) -> dict[str, Any]:
        return {
            "runtime": "torch",
            "runtime_version": torch.__version__,
            "provider": "cuda",
            "threads": 1,
            "opset": 0,  # no ONNX involved
            "clock": "cuda-events",
            "torch_dtype": self.dtype,
            "channels_last": self.channels_last,
            **gpu_info(self.device),
        }

    def load(self, job: Any) -> Any:
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        module = job.module().to(self.device, memory_format=fmt)
        g = torch.Generator().manual_seed(0)
        x = torch.randn(job.input_shape, generator=g).to(self.device).contiguous(memory_format=fmt)
        dtype = DTYPES[self.dtype]

        @torch.inference_mode()
        def run(n: int) -> np.ndarray:
            events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(n)]
            with torch.autocast("cuda", dtype=dtype) if dtype is not None else contextlib.nullcontext():
                for start, end in events:
                    start.record()
                    module(x)
                    end.record()
            torch.cuda.synchronize(self.device)
            return np.array([start.elapsed_time(end) for start, end in events], dtype=np.float64)

        return run

    def close(self) -> None:
        torch.cuda.empty_cache()
